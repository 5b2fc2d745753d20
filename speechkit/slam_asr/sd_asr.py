"""Speaker-attributed ASR on diarized conversations (Seewo's Track 2, Table 5): each conversation is diarized
(`diarization`), each speaker turn transcribed by Whisper and by the speech LLM, and the result scored with tcpWER
(collar 5 s, the MLC-SLM baseline's) and cpWER through meeteval, with bootstrap intervals over conversations.

The study varies the longest turn handed to the ASR (the paper: 8 s against 60 s, longer than Whisper's window)
beside oracle segmentation (the reference turns and speakers: the upper bound), and, on the diarized turns, the
conversational context of Seewo 4.1: each turn's prompt carries the previous turns' own hypotheses, none, or the
reference's previous turns (oracle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from speechkit.core.claims import points
from speechkit.core.results import Metric
from speechkit.core.text import normaliser_for
from speechkit.data.audio import load_audio
from speechkit.data.manifest import MAX_DURATION, SAMPLE_RATE, Utterance, read_conversations
from speechkit.engine.decoding import DecodingConfig, decode
from speechkit.engine.evaluation import Transcriber, transcribe_all
from speechkit.engine.recipes import saved_speech_llm_transcriber
from speechkit.metrics.scoring import (ErrorCounts, ErrorRate, bootstrap_interval, paired_difference,
                                       speaker_attributed_wer)
from speechkit.models.speech_llm import Example, SpeechLLM
from speechkit.slam_asr.diarization import (Diarization, DiarizationConfig, DiarizationScore, SpeakerCount,
                                            SpeakerTurn, choose_threshold, cluster, embed_speech, read_reference,
                                            score_diarization, speaker_count_accuracy)
from speechkit.slam_asr.diarization_claims import LONGER, SHORTER, SYSTEM, TCPWER, segment_length_row
from speechkit.slam_asr.studies import CONTEXT_STAGE, context_text

ORACLE = "oracle"
CONTEXT_MODES = ("none", "own", "oracle")


@dataclass(frozen=True)
class SDASRConfig:
    """Every parameter of the diarization + ASR study (the notebook's parameters cell, less the runner's)."""
    eval_split: str = "test"                 # conversations scored
    tune_split: str = "dev"                  # conversations the agglomerative threshold is chosen on (never test)
    conversation_limit: int = 0              # conversations per split (0: all)
    segment_limits: tuple[float, ...] = (8.0, 30.0, 60.0)   # longest turn handed to the ASR, seconds
    clustering: str = "agglomerative"
    thresholds: tuple[float, ...] = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5)   # agglomerative: candidates tried on tune_split
    windows_per_second: float = 1.3
    max_speakers: int = 6
    merge_gap_seconds: float = 0.5
    der_collar: float = 0.5                  # pyannote's collar (0.25 s either side of each reference boundary)
    tcp_collar: float = 5.0                  # tcpWER's collar, the MLC-SLM baseline's
    whisper: str = "pkg:whisper-tiny.en"
    speech_llm: str = "published:stage3"     # the kit's pretrained stage 3, a stage of this run, or a path
    context_llm: str = "14_context"          # the model fine-tuned with context prompts ("": no context study)
    context_conversations: int = 0           # the context study on the first conversations scored (0: all)
    turns_back: int = 2
    max_batch: int = 8
    max_new_tokens: int = 100

    def __post_init__(self):
        object.__setattr__(self, "segment_limits", tuple(float(s) for s in self.segment_limits))
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        if not self.segment_limits or min(self.segment_limits) <= 0:
            raise ValueError(f"segment_limits must be positive seconds, not {self.segment_limits}")
        if self.eval_split == self.tune_split:
            raise ValueError("the threshold is chosen on other conversations than the scored ones")
        if min(self.turns_back, self.conversation_limit, self.context_conversations) < 0 or self.max_batch < 1:
            raise ValueError("turns_back, conversation_limit and context_conversations must be >= 0, max_batch >= 1")
        self.diarization(self.segment_limits[0])  # checks the diarization settings too

    def diarization(self, max_segment_seconds: float, threshold: float = 0.3) -> DiarizationConfig:
        return DiarizationConfig(max_segment_seconds, self.windows_per_second, self.clustering, self.max_speakers,
                                 threshold, self.merge_gap_seconds)


def segmentation_name(limit: float | str) -> str:
    return limit if isinstance(limit, str) else f"{limit:g} s"


@dataclass(frozen=True)
class Recordings:
    """A split's conversations: their audio (16 kHz) by session and their reference turns (SegLST)."""
    audio: dict[str, np.ndarray]
    reference: list[dict]

    @property
    def sessions(self) -> list[str]:
        return list(self.audio)

    def first(self, count: int) -> Recordings:
        """The first `count` conversations (all of them if `count` is 0)."""
        kept = self.sessions[:count] if count else self.sessions
        return Recordings({s: self.audio[s] for s in kept}, [r for r in self.reference if r["session_id"] in kept])


def load_recordings(data_dir: str | Path, split: str, limit: int = 0) -> Recordings:
    data_dir = Path(data_dir)
    conversations = read_conversations(data_dir / f"conversations_{split}.jsonl")
    conversations = conversations[:limit] if limit else conversations
    reference = read_reference(data_dir / f"conversations_{split}.seglst.json")
    audio = {c.id: load_audio(data_dir / c.audio) for c in conversations}
    return Recordings(audio, [s for s in reference if s["session_id"] in audio])


def oracle_turns(recordings: Recordings) -> dict[str, list[SpeakerTurn]]:
    turns: dict[str, list[SpeakerTurn]] = {session: [] for session in recordings.sessions}
    for s in sorted(recordings.reference, key=lambda s: s["start_time"]):
        turns[s["session_id"]].append(SpeakerTurn(s["session_id"], s["speaker"], s["start_time"], s["end_time"]))
    return turns


def turn_audio(audio: np.ndarray, turn: SpeakerTurn) -> np.ndarray:
    """The turn's audio as the model hears it: a model with a 30-s window hears the first 30 s of a longer turn (as
    Whisper's feature extractor cuts it), which is what the paper's 60-s setting costs."""
    start = round(turn.start * SAMPLE_RATE)
    return audio[start:min(round(turn.end * SAMPLE_RATE), start + round(MAX_DURATION * SAMPLE_RATE))]


def transcribe_turns(transcriber: Transcriber, recordings: Recordings, turns: dict[str, list[SpeakerTurn]],
                     max_batch: int = 8, known: dict[tuple[str, float, float], str] | None = None) -> list[dict]:
    """Every turn transcribed (length-sorted batches): the hypothesis as SegLST. A turn whose audio (session, start,
    end) is in `known` is not decoded again - segmentations under different limits share most turns - and the new
    ones are added to it."""
    known = {} if known is None else known
    flat = [turn for session in recordings.sessions for turn in turns[session]]
    new = list(dict.fromkeys((t.session, t.start, t.end) for t in flat if (t.session, t.start, t.end) not in known))
    utterances = [Utterance(f"{session}-{i:04d}", session, round(min(end - start, MAX_DURATION), 3), "en", "", "", "",
                            offset=start) for i, (session, start, end) in enumerate(new)]
    bounds = {u.id: SpeakerTurn(session, "", start, end)
              for u, (session, start, end) in zip(utterances, new, strict=True)}
    texts = transcribe_all(transcriber, utterances, lambda u: turn_audio(recordings.audio[u.audio], bounds[u.id]),
                           max_batch=max_batch)
    known.update(zip(new, texts, strict=True))
    return [t.seglst(known[t.session, t.start, t.end]) for t in flat]


def transcribe_with_context(model: SpeechLLM, recordings: Recordings, turns: dict[str, list[SpeakerTurn]],
                            mode: str, turns_back: int, decoding: DecodingConfig, max_batch: int = 8) -> list[dict]:
    """The speech LLM on each conversation's turns in time order, each prompt carrying the `turns_back` previous
    turns: none, the model's own hypotheses of the previous diarized turns ("own", end to end), or the reference's
    turns that ended before this one began ("oracle", the upper bound). Conversations are batched turn by turn."""
    if mode not in CONTEXT_MODES:
        raise ValueError(f"mode must be one of {', '.join(CONTEXT_MODES)}, not {mode!r}")
    said = oracle_turns(recordings)
    words = {(s["session_id"], s["start_time"]): s["words"] for s in recordings.reference}
    hypotheses: dict[str, list[str]] = {session: [] for session in recordings.sessions}
    for index in range(max((len(t) for t in turns.values()), default=0)):
        batch = [session for session in recordings.sessions if len(turns[session]) > index]
        examples = []
        for session in batch:
            turn = turns[session][index]
            if mode == "own":
                previous = hypotheses[session][max(0, index - turns_back):index]
            elif mode == ORACLE:
                ended = [words[session, t.start] for t in said[session] if t.end <= turn.start]
                previous = ended[len(ended) - turns_back:] if turns_back else []
            else:
                previous = []
            examples.append(Example(turn_audio(recordings.audio[session], turn), "en",
                                    context=context_text(previous)))
        for start in range(0, len(batch), max_batch):
            chunk = batch[start:start + max_batch]
            for session, nbest in zip(chunk, decode(model, examples[start:start + max_batch], CONTEXT_STAGE,
                                                    decoding), strict=True):
                hypotheses[session].append(nbest[0].text)
    return [t.seglst(text) for session in recordings.sessions
            for t, text in zip(turns[session], hypotheses[session], strict=True)]


def attributed_error_rate(reference: list[dict], hypothesis: list[dict], collar: float | None) -> ErrorRate:
    """tcpWER (collar in seconds) or cpWER (None) per conversation (meeteval), pooled, with a bootstrap interval
    over conversations: an `ErrorRate` whose units are conversations, so `paired_difference` compares systems."""
    sessions = list(dict.fromkeys(s["session_id"] for s in reference))
    per_session = []
    for session in sessions:
        rate = speaker_attributed_wer([s for s in reference if s["session_id"] == session],
                                      [s for s in hypothesis if s["session_id"] == session], normaliser_for("en"),
                                      collar)
        per_session.append(ErrorCounts(rate.length - rate.substitutions - rate.deletions, rate.substitutions,
                                       rate.deletions, rate.insertions))
    total = sum(per_session, ErrorCounts())
    errors = np.array([c.errors for c in per_session], float)
    lengths = np.array([c.reference_length for c in per_session], float)
    return ErrorRate(total.rate, total, tuple(per_session), bootstrap_interval(errors, lengths), "word")


@dataclass(frozen=True)
class SegmentationResult:
    """One segmentation (a maximum turn length, or the oracle's) scored for diarization and for each ASR."""
    name: str
    turns: dict[str, list[SpeakerTurn]]
    der: DiarizationScore | None          # None for the oracle (its DER is 0 by construction)
    der_collar: DiarizationScore | None
    speaker_count: SpeakerCount | None
    tcpwer: dict[str, ErrorRate] = field(default_factory=dict)   # by system
    cpwer: dict[str, ErrorRate] = field(default_factory=dict)
    hypotheses: dict[str, list[dict]] = field(default_factory=dict)


def diarize_recordings(recordings: Recordings, config: DiarizationConfig) -> list[Diarization]:
    return [cluster(embed_speech(audio, session, config), config) for session, audio in recordings.audio.items()]


def tune_threshold(config: SDASRConfig, data_dir: str | Path) -> tuple[float, dict[float, float]]:
    """The agglomerative threshold with the lowest DER on the tuning split (dev), never on the scored one."""
    tune = load_recordings(data_dir, config.tune_split, config.conversation_limit)
    diarization = config.diarization(config.segment_limits[0])
    speeches = [embed_speech(audio, session, diarization) for session, audio in tune.audio.items()]
    return choose_threshold(speeches, tune.reference, diarization, config.thresholds)


def segmentation_study(config: SDASRConfig, recordings: Recordings, transcribers: dict[str, Transcriber],
                       threshold: float) -> list[SegmentationResult]:
    """Each maximum turn length, then oracle segmentation: diarization scored, each system's transcripts scored."""
    results, known = [], {system: {} for system in transcribers}
    for limit in (*config.segment_limits, ORACLE):
        if limit == ORACLE:
            turns, scores = oracle_turns(recordings), (None, None, None)
        else:
            diarizations = diarize_recordings(recordings, config.diarization(limit, threshold))
            turns = {d.session: list(d.turns) for d in diarizations}
            scores = (score_diarization(recordings.reference, diarizations),
                      score_diarization(recordings.reference, diarizations, config.der_collar),
                      speaker_count_accuracy(recordings.reference, diarizations))
        result = SegmentationResult(segmentation_name(limit), turns, *scores)
        for system, transcriber in transcribers.items():
            hypothesis = transcribe_turns(transcriber, recordings, turns, config.max_batch, known[system])
            result.hypotheses[system] = hypothesis
            result.tcpwer[system] = attributed_error_rate(recordings.reference, hypothesis, config.tcp_collar)
            result.cpwer[system] = attributed_error_rate(recordings.reference, hypothesis, None)
        results.append(result)
    return results


def study_metrics(results: Sequence[SegmentationResult], split: str) -> list[Metric]:
    """Rows per segmentation: DER (without and with its collar), speaker-count accuracy, tcpWER and cpWER per
    system, each with its 95% interval over conversations."""
    metrics = []
    for r in results:
        if r.der is not None:
            metrics += [Metric(f"DER {r.name} segments conversations_{split}", r.der.der.rate, r.der.interval.low,
                               r.der.interval.high, unit="rate"),
                        Metric(f"DER collar {r.der_collar.collar:g} s {r.name} segments conversations_{split}",
                               r.der_collar.der.rate, r.der_collar.interval.low, r.der_collar.interval.high,
                               unit="rate"),
                        Metric(f"speaker-count accuracy {r.name} segments conversations_{split}",
                               r.speaker_count.accuracy, r.speaker_count.interval.low,
                               r.speaker_count.interval.high, unit="rate")]
        for system in r.tcpwer:
            for kind, rate in (("tcpWER", r.tcpwer[system]), ("cpWER", r.cpwer[system])):
                metrics.append(Metric(f"{system} {kind} {r.name} segments conversations_{split}", rate.rate,
                                      rate.interval.low, rate.interval.high, unit="rate"))
    return metrics


def segment_length_claim(results: Sequence[SegmentationResult], split: str) -> list[Metric]:
    """Table 5's row: the speech LLM's tcpWER with the shorter maximum segment minus with the longer one, on the same
    conversations (paired bootstrap); none when the study lacks either limit."""
    by_name = {r.name: r for r in results}
    if SHORTER not in by_name or LONGER not in by_name:
        return []
    d = paired_difference(by_name[LONGER].tcpwer[SYSTEM], by_name[SHORTER].tcpwer[SYSTEM])
    return [Metric(segment_length_row(split), d.difference, d.interval.low, d.interval.high, unit="rate",
                   claim=points(TCPWER[LONGER], TCPWER[SHORTER]))]


def context_study(model: SpeechLLM, recordings: Recordings, turns: dict[str, list[SpeakerTurn]],
                  config: SDASRConfig) -> dict[str, ErrorRate]:
    """tcpWER of the speech LLM on the diarized turns under each context mode (on the first
    `config.context_conversations` conversations if set)."""
    recordings = recordings.first(config.context_conversations)
    decoding = DecodingConfig(max_new_tokens=config.max_new_tokens)
    return {mode: attributed_error_rate(recordings.reference,
                                        transcribe_with_context(model, recordings, turns, mode, config.turns_back,
                                                                decoding, config.max_batch), config.tcp_collar)
            for mode in CONTEXT_MODES}


def context_metrics(rates: dict[str, ErrorRate], segmentation: str) -> list[Metric]:
    """The context study's rows: tcpWER under each mode, and each mode's change against no context (paired)."""
    rows = [Metric(f"{SYSTEM} tcpWER {segmentation} segments, context: {mode}", r.rate, r.interval.low,
                   r.interval.high, unit="rate") for mode, r in rates.items()]
    for mode in CONTEXT_MODES[1:]:
        d = paired_difference(rates["none"], rates[mode])
        rows.append(Metric(f"tcpWER change, context {mode} minus none", d.difference, d.interval.low,
                           d.interval.high, unit="rate"))
    return rows


def plot_timeline(reference: list[dict], diarization: Sequence[SpeakerTurn], title: str) -> plt.Figure:
    """Reference speakers (top rows) and hypothesis speakers (bottom rows) of one conversation over time."""
    figure, axis = plt.subplots(figsize=(10, 2.5))
    rows = [("ref " + s, [(t["start_time"], t["end_time"] - t["start_time"]) for t in reference
                          if t["speaker"] == s]) for s in sorted({t["speaker"] for t in reference})]
    rows += [("hyp " + s, [(t.start, t.duration) for t in diarization if t.speaker == s])
             for s in sorted({t.speaker for t in diarization})]
    colours = plt.get_cmap("tab10")
    for y, (name, spans) in enumerate(rows):
        axis.broken_barh(spans, (y - 0.4, 0.8), color=colours(y % 10) if name.startswith("ref") else "grey")
    axis.set_yticks(range(len(rows)), [name for name, _ in rows])
    axis.invert_yaxis()
    axis.set_xlabel("seconds")
    axis.set_title(title)
    figure.tight_layout()
    return figure


def plot_segment_lengths(results: Sequence[SegmentationResult], paper: dict[str, float] | None = None
                         ) -> plt.Figure:
    """tcpWER per system and DER against the maximum segment length (oracle segmentation as a line); `paper`: the
    paper's tcpWER by segmentation name ("8 s")."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    limited = [r for r in results if r.der is not None]
    oracle = next((r for r in results if r.der is None), None)
    x = np.arange(len(limited))
    for system in limited[0].tcpwer if limited else ():
        rates = [r.tcpwer[system] for r in limited]
        axis.errorbar(x, [100 * r.rate for r in rates],
                      yerr=[[100 * (r.rate - r.interval.low) for r in rates],
                            [100 * (r.interval.high - r.rate) for r in rates]], marker="o", capsize=3,
                      label=f"{system} tcpWER")
        if oracle is not None:
            axis.axhline(100 * oracle.tcpwer[system].rate, linestyle=":", color=axis.lines[-1].get_color(),
                         label=f"{system} tcpWER, oracle segmentation")
    axis.plot(x, [100 * r.der.der.rate for r in limited], marker="s", color="black", label="DER")
    names = [r.name for r in limited]
    marked = {name: value for name, value in (paper or {}).items() if name in names}
    if marked:
        axis.scatter([names.index(name) for name in marked], [100 * v for v in marked.values()], marker="*", s=120,
                     color="red", label="paper tcpWER (its data and model)")
    axis.set_xticks(x, [r.name for r in limited])
    axis.set_xlabel("maximum segment length")
    axis.set_ylabel("%")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def speech_llm_transcriber_of(checkpoint: str, max_new_tokens: int) -> Transcriber:
    """A saved speech LLM of stages 1-3 (a folder) as a transcriber, decoding as its last stage trained it."""
    return saved_speech_llm_transcriber(checkpoint, DecodingConfig(max_new_tokens=max_new_tokens))
