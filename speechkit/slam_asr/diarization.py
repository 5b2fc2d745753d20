"""Speaker diarization from shipped offline components (Seewo's Track 2, its Section 5): silero-vad speech regions
(`engine.longform`'s VAD) -> resemblyzer embeddings of its 1.6-s sliding windows -> clustering with the number of
speakers estimated (spectral clustering with the eigengap rule, or agglomerative clustering with a distance threshold
chosen on dev conversations) -> speaker turns, written as SegLST or RTTM and scored with DER and speaker-count accuracy.

A speaker turn is also the unit the ASR transcribes (`sd_asr`): neighbouring turns of one speaker are merged while
the merged turn stays within `max_segment_seconds` (the paper's study: 8 s vs 60 s, longer than Whisper's window).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from speechkit.data.audio import AudioError, load_audio
from speechkit.data.manifest import MAX_DURATION, SAMPLE_RATE
from speechkit.engine.longform import speech_regions
from speechkit.metrics.scoring import DiarizationError, Interval, bootstrap_interval, diarization_error_rate

CLUSTERINGS = ("spectral", "agglomerative")
SEGLST_KEYS = ("session_id", "speaker", "start_time", "end_time")


class ReferenceFormatError(ValueError):
    """A SegLST or RTTM reference that does not parse; the message names the file and the entry."""


@dataclass(frozen=True)
class DiarizationConfig:
    max_segment_seconds: float = 8.0    # longest turn handed to the ASR; longer than 30 s exceeds Whisper's window
    windows_per_second: float = 1.3     # resemblyzer's 1.6-s windows per second of speech (hop about 0.77 s)
    # "agglomerative" (distance threshold) or "spectral" (eigengap): on conversations of a few short turns the eigengap
    # miscounted (2 voices as 1 on a 4-turn test conversation), a threshold chosen on dev did not
    clustering: str = "agglomerative"
    max_speakers: int = 6
    distance_threshold: float = 0.3     # agglomerative: cosine distance; choose it on dev (`choose_threshold`)
    merge_gap_seconds: float = 0.5      # a speaker's turns closer than this become one segment (within the limit)
    vad_threshold: float = 0.5
    min_silence_seconds: float = 0.3

    def __post_init__(self):
        if self.clustering not in CLUSTERINGS:
            raise ValueError(f"clustering must be one of {', '.join(CLUSTERINGS)}, not {self.clustering!r}")
        if self.max_segment_seconds <= 0 or self.max_speakers < 1 or self.merge_gap_seconds < 0:
            raise ValueError("max_segment_seconds must be > 0, max_speakers >= 1, merge_gap_seconds >= 0")
        if not 0.625 <= self.windows_per_second <= 10:  # resemblyzer's windows must cover the speech
            raise ValueError(f"windows_per_second must be in [0.625, 10], not {self.windows_per_second}")
        if not 0 < self.distance_threshold < 2:
            raise ValueError(f"distance_threshold is a cosine distance in (0, 2), not {self.distance_threshold}")


@dataclass(frozen=True)
class SpeakerTurn:
    session: str
    speaker: str
    start: float    # seconds from the recording's start
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def seglst(self, words: str = "") -> dict:
        return {"session_id": self.session, "speaker": self.speaker, "start_time": self.start,
                "end_time": self.end, "words": words}


@dataclass(frozen=True)
class Diarization:
    session: str
    turns: tuple[SpeakerTurn, ...]      # in time order, at most `max_segment_seconds` each
    speakers: int                       # the estimated number of speakers

    def seglst(self) -> list[dict]:
        return [turn.seglst() for turn in self.turns]


@functools.cache
def voice_encoder():
    from resemblyzer import VoiceEncoder  # imported lazily: loading its model costs seconds
    return VoiceEncoder("cpu", verbose=False)


def window_embeddings(audio: np.ndarray, regions: Sequence[tuple[float, float]], windows_per_second: float
                      ) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """L2-normalised resemblyzer embeddings of sliding windows over each speech region, and each window's span
    (clipped to its region)."""
    from resemblyzer.audio import normalize_volume
    embeddings, spans = [], []
    for start, end in regions:
        speech = audio[round(start * SAMPLE_RATE):round(end * SAMPLE_RATE)]
        speech = normalize_volume(speech, -30, increase_only=True)  # the level resemblyzer was trained at
        _, partials, slices = voice_encoder().embed_utterance(speech, return_partials=True, rate=windows_per_second)
        embeddings.append(partials)
        spans += [(start + s.start / SAMPLE_RATE, min(end, start + s.stop / SAMPLE_RATE)) for s in slices]
    if not embeddings:
        return np.zeros((0, 256), np.float32), []
    stacked = np.concatenate(embeddings)
    return stacked / np.linalg.norm(stacked, axis=1, keepdims=True), spans


def spectral_labels(embeddings: np.ndarray, max_speakers: int) -> np.ndarray:
    """Spectral clustering with the speaker count from the largest eigengap of the normalised Laplacian.

    The cosine affinity is pruned row by row to its strongest links, with the share chosen per recording as in
    Park et al.'s NME-SC (the share that makes the eigengap largest relative to it): a block-like affinity gives a
    clear gap where a dense one gives none. A share that cuts the graph apart is passed over: its eigengap would
    count the pieces (a few turns each), not the speakers.
    """
    from scipy.sparse.csgraph import connected_components, laplacian
    from sklearn.cluster import SpectralClustering

    n = len(embeddings)
    if n < 3:
        return np.zeros(n, int)
    similarity = np.clip(embeddings @ embeddings.T, 0, None)
    best = None
    for share in np.linspace(0.05, 0.5, 10):
        keep = max(2, int(round(share * n)))
        pruned = np.where(similarity >= -np.sort(-similarity, axis=1)[:, keep - 1:keep], similarity, 0.0)
        affinity = (pruned + pruned.T) / 2
        if connected_components(affinity > 0, directed=False)[0] > 1:
            continue
        eigenvalues = np.linalg.eigvalsh(laplacian(affinity, normed=True))[:min(max_speakers, n - 1) + 1]
        gaps = np.diff(eigenvalues)
        count = int(np.argmax(gaps)) + 1
        score = share / max(gaps[count - 1], 1e-9)
        if best is None or score < best[0]:
            best = (score, count, affinity)
    if best is None or best[1] == 1:
        return np.zeros(n, int)
    _, count, affinity = best
    return SpectralClustering(count, affinity="precomputed", random_state=0).fit_predict(affinity)


def agglomerative_labels(embeddings: np.ndarray, distance_threshold: float, max_speakers: int) -> np.ndarray:
    """Average-linkage clustering on cosine distance, cut at `distance_threshold` (at most `max_speakers`)."""
    from sklearn.cluster import AgglomerativeClustering

    if len(embeddings) < 2:
        return np.zeros(len(embeddings), int)
    labels = AgglomerativeClustering(None, metric="cosine", linkage="average",
                                     distance_threshold=distance_threshold).fit_predict(embeddings)
    if labels.max() + 1 > max_speakers:
        labels = AgglomerativeClustering(max_speakers, metric="cosine", linkage="average").fit_predict(embeddings)
    return labels


def _window_turns(session: str, spans: Sequence[tuple[float, float]], labels: np.ndarray,
                  regions: Sequence[tuple[float, float]]) -> list[SpeakerTurn]:
    """Each region cut where the windows' speaker changes (halfway between the two windows' centres)."""
    turns = []
    index = 0
    for start, end in regions:
        inside = []
        while index < len(spans) and spans[index][0] < end:
            inside.append(index)
            index += 1
        cursor = start
        for k, i in enumerate(inside):
            last = k == len(inside) - 1
            if not last and labels[inside[k + 1]] == labels[i]:
                continue
            cut = end if last else round((sum(spans[i]) + sum(spans[inside[k + 1]])) / 4, 3)
            turns.append(SpeakerTurn(session, f"spk{labels[i]}", round(cursor, 3), cut))
            cursor = cut
    return turns


def merge_turns(turns: Sequence[SpeakerTurn], max_seconds: float, max_gap: float) -> list[SpeakerTurn]:
    """Neighbouring turns of one speaker joined while the gap is at most `max_gap` and the result at most
    `max_seconds`; a longer turn is cut into equal pieces within the limit."""
    merged: list[SpeakerTurn] = []
    for turn in turns:
        last = merged[-1] if merged else None
        if (last is not None and last.speaker == turn.speaker and turn.start - last.end <= max_gap
                and turn.end - last.start <= max_seconds):
            merged[-1] = SpeakerTurn(turn.session, turn.speaker, last.start, turn.end)
        else:
            merged.append(turn)
    pieces = []
    for turn in merged:
        count = int(np.ceil(turn.duration / max_seconds - 1e-9))
        step = turn.duration / count
        pieces += [SpeakerTurn(turn.session, turn.speaker, round(turn.start + k * step, 3),
                               round(turn.start + (k + 1) * step, 3)) for k in range(count)]
    return pieces


@dataclass(frozen=True)
class EmbeddedSpeech:
    """A recording's speech regions and its windows' embeddings: computed once, clustered under any setting."""
    session: str
    regions: tuple[tuple[float, float], ...]
    embeddings: np.ndarray
    spans: tuple[tuple[float, float], ...]


def embed_speech(audio: np.ndarray, session: str, config: DiarizationConfig) -> EmbeddedSpeech:
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{session}: NaN or infinite samples")
    # the VAD cuts regions no longer than the model's window; turns are merged up to the configured limit after
    regions = speech_regions(audio, min(config.max_segment_seconds, MAX_DURATION), config.vad_threshold,
                             config.min_silence_seconds)
    embeddings, spans = window_embeddings(audio, regions, config.windows_per_second)
    return EmbeddedSpeech(session, tuple(regions), embeddings, tuple(spans))


def cluster(speech: EmbeddedSpeech, config: DiarizationConfig) -> Diarization:
    """Speaker turns from the embedded windows, clustered as `config` says."""
    if config.clustering == "spectral":
        labels = spectral_labels(speech.embeddings, config.max_speakers)
    else:
        labels = agglomerative_labels(speech.embeddings, config.distance_threshold, config.max_speakers)
    # speakers named in order of first appearance: spk0 speaks first
    order = {label: k for k, label in enumerate(dict.fromkeys(labels.tolist()))}
    labels = np.array([order[label] for label in labels.tolist()], int)
    turns = merge_turns(_window_turns(speech.session, speech.spans, labels, speech.regions),
                        config.max_segment_seconds, config.merge_gap_seconds)
    return Diarization(speech.session, tuple(turns), len(order))


def diarize_audio(audio: np.ndarray, session: str, config: DiarizationConfig) -> Diarization:
    """Speaker turns of 16-kHz `audio`; silence alone gives none."""
    return cluster(embed_speech(audio, session, config), config)


def diarize(path: str | Path, config: DiarizationConfig, session: str | None = None) -> Diarization:
    """Diarize a recording (any format, sample rate and channel count `load_audio` reads)."""
    return diarize_audio(load_audio(path), session or Path(path).stem, config)


# -- references ------------------------------------------------------------------------------------------------------

def read_reference(path: str | Path) -> list[dict]:
    """A SegLST (`.json`) or RTTM (`.rttm`) reference as SegLST dicts (RTTM has no words: ""), checked entry by
    entry; a file that does not parse raises `ReferenceFormatError` naming the file and the entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no reference at {path}")
    if path.suffix == ".rttm":
        return _read_rttm(path)
    if path.suffix == ".json":
        return _read_seglst(path)
    raise ReferenceFormatError(f"{path}: unknown reference format; use .json (SegLST) or .rttm")


def _read_seglst(path: Path) -> list[dict]:
    try:
        segments = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReferenceFormatError(f"{path}: not JSON: {error}") from error
    if not isinstance(segments, list):
        raise ReferenceFormatError(f"{path}: SegLST is a JSON list of segments, not {type(segments).__name__}")
    for index, segment in enumerate(segments):
        where = f"{path}: segment {index}"
        if not isinstance(segment, dict) or not set(SEGLST_KEYS) <= set(segment):
            raise ReferenceFormatError(f"{where}: needs {', '.join(SEGLST_KEYS)}")
        _check_times(where, segment["start_time"], segment["end_time"])
    return [{"words": "", **segment} for segment in segments]


def _read_rttm(path: Path) -> list[dict]:
    segments = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith(";"):
            continue
        fields = line.split()
        where = f"{path}:{number}"
        if len(fields) < 9 or fields[0] != "SPEAKER":
            raise ReferenceFormatError(f"{where}: an RTTM line is 'SPEAKER file channel onset duration <NA> <NA> "
                                       f"speaker <NA> <NA>', not {line!r}")
        try:
            onset, duration = float(fields[3]), float(fields[4])
        except ValueError as error:
            raise ReferenceFormatError(f"{where}: onset and duration must be numbers: {line!r}") from error
        _check_times(where, onset, onset + duration)
        segments.append({"session_id": fields[1], "speaker": fields[7], "start_time": onset,
                         "end_time": round(onset + duration, 4), "words": ""})
    return segments


def _check_times(where: str, start, end) -> None:
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and np.isfinite(t) for t in (start, end)):
        raise ReferenceFormatError(f"{where}: start and end must be finite numbers, not {start!r}, {end!r}")
    if not 0 <= start <= end:
        raise ReferenceFormatError(f"{where}: needs 0 <= start <= end, not {start} and {end}")


# -- scoring ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiarizationScore:
    """DER over sessions (pyannote.metrics, overlap scored) with a bootstrap interval over sessions."""
    der: DiarizationError
    interval: Interval
    collar: float                        # seconds removed around each reference boundary (pyannote's: in total)
    per_session: tuple[DiarizationError, ...]


def score_diarization(reference: list[dict], diarizations: Sequence[Diarization], collar: float = 0.0
                      ) -> DiarizationScore:
    """DER of the diarized sessions against the reference's segments of the same sessions."""
    per_session = tuple(diarization_error_rate([s for s in reference if s["session_id"] == d.session],
                                               d.seglst(), collar) for d in diarizations)
    if not per_session:
        raise ValueError("no diarized sessions to score")
    errors = np.array([e.missed + e.false_alarm + e.confusion for e in per_session])
    totals = np.array([e.total for e in per_session])
    total = DiarizationError(float(errors.sum() / totals.sum()), sum(e.missed for e in per_session),
                             sum(e.false_alarm for e in per_session), sum(e.confusion for e in per_session),
                             float(totals.sum()))
    return DiarizationScore(total, bootstrap_interval(errors, totals), collar, per_session)


@dataclass(frozen=True)
class SpeakerCount:
    accuracy: float                      # share of sessions whose estimated count is the reference's
    interval: Interval
    estimated: tuple[int, ...]
    reference: tuple[int, ...]


def speaker_count_accuracy(reference: list[dict], diarizations: Sequence[Diarization]) -> SpeakerCount:
    truth = tuple(len({s["speaker"] for s in reference if s["session_id"] == d.session}) for d in diarizations)
    estimated = tuple(d.speakers for d in diarizations)
    right = np.array([a == b for a, b in zip(truth, estimated, strict=True)], float)
    return SpeakerCount(float(right.mean()), bootstrap_interval(right, np.ones_like(right)), estimated, truth)


def choose_threshold(speeches: Sequence[EmbeddedSpeech], reference: list[dict], config: DiarizationConfig,
                     thresholds: Sequence[float]) -> tuple[float, dict[float, float]]:
    """The agglomerative distance threshold with the lowest DER on these (dev) recordings, and each one's DER."""
    ders = {}
    for threshold in thresholds:
        chosen = replace(config, clustering="agglomerative", distance_threshold=threshold)
        ders[threshold] = score_diarization(reference, [cluster(s, chosen) for s in speeches]).der.rate
    return min(ders, key=ders.get), ders


def to_rttm(diarizations: Sequence[Diarization]) -> str:
    return "".join(f"SPEAKER {t.session} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
                   for d in diarizations for t in d.turns)
