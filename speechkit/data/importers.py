"""Corpus importers: real corpora, in the layout their publishers ship, into the kit's validated manifests.

    python -m speechkit import NAME DIR --out OUT        (NAME: a key of `IMPORTERS`)

Each importer reads one published layout (as lhotse's recipes and the MLC-SLM baseline read them) and writes utterance
manifests into OUT: one per split (per subset for LibriSpeech, per language and split for Common Voice). Recordings
longer than the model's window (AMI meetings, earnings calls, MLC-SLM conversations) become conversations, written as
the embedded benchmark writes its own: `conversations_<split>.jsonl`, the turns in `conversation_turns_<split>.jsonl`
(each at most `MAX_DURATION` long, with `conversation`, `turn` and `offset`), and the turns as SegLST and RTTM
references for cpWER/tcpWER and DER. `ImportResult` says what was written and what was left out, and why.

Audio that soundfile reads sample-exactly (WAV, FLAC) stays where it lies, referenced by a path relative to OUT;
other formats (the MP3 of Common Voice and Earnings) are decoded once into 16 kHz mono FLAC under OUT/audio/, since
seeking in MP3 is neither exact nor fast; a rerun keeps what it converted. A folder not in the expected layout raises
`LayoutError`, naming the path looked for and what is there.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import itertools
import json
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from speechkit.core.fileio import write_json, write_text
from speechkit.core.vocab import LANGUAGES
from speechkit.data.audio import AudioError, load_audio, peak_normalise, write_audio
from speechkit.data.benchmark import to_rttm, to_seglst
from speechkit.data.manifest import (
    MAX_DURATION,
    MIN_DURATION,
    Conversation,
    EntitySpan,
    Utterance,
    read_manifest,
    write_manifest,
)

IN_PLACE = (".wav", ".flac")  # read sample-exactly by soundfile: referenced where they lie
WINDOW = MAX_DURATION - 0.1   # the longest turn cut from a recording; the margin absorbs rounding to milliseconds
SENTENCE_END = re.compile(r"[.?!]$")


class LayoutError(ValueError):
    """A folder is not in the layout an importer expects; the message names the path looked for and what is there."""


@dataclass(frozen=True)
class ImportResult:
    """What an importer wrote: manifest files (relative to `out`), counts, hours of utterance audio, and the
    segments (or recordings) it left out, by reason."""
    corpus: str
    out: Path
    manifests: tuple[str, ...]
    utterances: int
    conversations: int
    hours: float
    skipped: dict[str, int]

    def __str__(self) -> str:
        summary = (f"{self.corpus}: {self.utterances} utterances ({self.hours:.2f} h), {self.conversations} "
                   f"conversations, {len(self.manifests)} files in {self.out}")
        left_out = "; ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
        return f"{summary}; left out: {left_out}" if left_out else summary


@dataclass(frozen=True)
class _Word:
    """A token of a timed transcript, the punctuation around it, its times when known, and the entities (id, label)
    it is part of."""
    token: str
    start: float | None = None
    end: float | None = None
    before: str = ""
    after: str = ""
    entities: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Turn:
    """One speaker's stretch of a recording, read from `audio` (a headset, or the recording itself)."""
    speaker: str
    start: float
    end: float
    text: str
    audio: str
    entities: tuple[EntitySpan, ...] = ()


@dataclass
class _Collected:
    """An importer's output before it is written: utterance manifests by name, conversations by split with all their
    turns (the references keep turns a model cannot take), and what was left out, by reason."""
    corpus: str
    source: Path
    out: Path
    manifests: dict[str, list[Utterance]] = field(default_factory=dict)
    conversations: dict[str, list[Conversation]] = field(default_factory=dict)
    references: dict[str, list[Utterance]] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)

    def audio(self, path: Path) -> tuple[str, float] | None:
        """`_audio(path)`, or None (counted) when the file is missing or unreadable."""
        try:
            return _audio(path, self.out)
        except (AudioError, RuntimeError):  # soundfile raises LibsndfileError or RuntimeError, by the fault
            self.skipped["audio files missing or unreadable"] += 1
            return None

    def add(self, manifest: str, utterance: Utterance) -> None:
        """Keep `utterance` in `manifest` when a model can take it; otherwise count why not."""
        text = (utterance.text or "").strip()
        reason = ("without transcript" if not text else
                  f"longer than {MAX_DURATION:g} s" if utterance.duration > MAX_DURATION else
                  f"shorter than {MIN_DURATION:g} s" if utterance.duration < MIN_DURATION else None)
        if reason:
            self.skipped[reason] += 1
        else:
            self.manifests.setdefault(manifest, []).append(utterance)

    def add_conversation(self, recording: Conversation, domain: str, turns: list[_Turn]) -> None:
        """A recording with its turns in time order: all of them into the references, usable ones into the manifest."""
        if not turns:
            self.skipped["recordings without a transcribed turn"] += 1
            return
        ordered = sorted(turns, key=lambda turn: (turn.start, turn.speaker))
        recording = dataclasses.replace(recording, speakers=tuple(sorted({turn.speaker for turn in ordered})))
        utterances = [Utterance(id=f"{recording.id}-{index:04d}", audio=turn.audio, language=recording.language,
                                duration=round(turn.end - turn.start, 3), speaker=turn.speaker, domain=domain,
                                split=recording.split, text=turn.text, offset=round(turn.start, 3),
                                entities=turn.entities, conversation=recording.id, turn=index, meta=recording.meta)
                      for index, turn in enumerate(ordered)]
        self.conversations.setdefault(recording.split, []).append(recording)
        self.references.setdefault(recording.split, []).extend(
            utterance for utterance in utterances if utterance.text.strip() and utterance.duration > 0)
        for utterance in utterances:
            self.add(f"conversation_turns_{recording.split}", utterance)

    def write(self) -> ImportResult:
        """Every manifest and reference, each manifest read back (without audio) so that a malformed record fails the
        import rather than a training."""
        utterances = [utterance for manifest in self.manifests.values() for utterance in manifest]
        if not utterances:
            raise LayoutError(f"no {self.corpus} utterance found under {self.source}"
                              + "".join(f"; {count} {reason}" for reason, count in sorted(self.skipped.items())))
        written = []
        for name, manifest in sorted(self.manifests.items()):
            write_manifest(self.out / f"{name}.jsonl", manifest)
            read_manifest(self.out / f"{name}.jsonl", check_audio=False)
            written.append(f"{name}.jsonl")
        for split, recordings in sorted(self.conversations.items()):
            write_manifest(self.out / f"conversations_{split}.jsonl", recordings)
            write_json(self.out / f"conversations_{split}.seglst.json", to_seglst(self.references[split]))
            write_text(self.out / f"conversations_{split}.rttm", to_rttm(self.references[split]))
            written += [f"conversations_{split}{suffix}" for suffix in (".jsonl", ".seglst.json", ".rttm")]
        return ImportResult(self.corpus, self.out, tuple(written), len(utterances),
                            sum(map(len, self.conversations.values())),
                            round(sum(utterance.duration for utterance in utterances) / 3600, 3), dict(self.skipped))


# -- shared helpers ---------------------------------------------------------------------------------------------

def _found(folder: Path) -> str:
    """What a folder holds, for error messages: its first entries, folders marked with a slash."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    names = sorted(f"{path.name}/" if path.is_dir() else path.name for path in folder.iterdir())
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f"{folder} holds {shown or 'nothing'}"


def _first(candidates: list[Path], what: str, where: Path) -> Path:
    """The first of `candidates` that exists, else a LayoutError naming them and what `where` holds."""
    for path in candidates:
        if path.exists():
            return path
    raise LayoutError(f"expected {what} at {' or '.join(map(str, candidates))}; {_found(where)}")


def _rows(path: Path, delimiter: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """A delimited table's rows (no quoting: transcripts contain quote marks); LayoutError when a needed column is
    missing."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        missing = [column for column in columns if column not in (reader.fieldnames or ())]
        if missing:
            raise LayoutError(f"{path}: expected the columns {', '.join(columns)} in its header; "
                              f"found {', '.join(reader.fieldnames or ()) or 'no header'}")
        return list(reader)


def _audio(path: Path, out: Path) -> tuple[str, float]:
    """The path manifests in `out` give a recording, and its duration in seconds: WAV and FLAC where they lie, other
    formats decoded once into 16 kHz mono FLAC at out/audio/<name>.flac."""
    if path.suffix.lower() in IN_PLACE:
        return Path(os.path.relpath(path.resolve(), out.resolve())).as_posix(), sf.info(str(path)).duration
    converted = Path("audio") / f"{path.stem}.flac"
    if not (out / converted).is_file():
        write_audio(out / converted, load_audio(path))
    return converted.as_posix(), sf.info(str(out / converted)).duration


def _seconds(value: str | None) -> float | None:
    return float(value) if value and value.strip() else None


def _domain(language: str) -> str:
    """As in the embedded benchmark: English is the general domain, other languages are domains of their own."""
    return "general" if language == "en" else language


def _text(words: Iterable[_Word]) -> tuple[str, tuple[EntitySpan, ...]]:
    """Words joined into text, with each entity's span over its words in it (punctuation outside)."""
    text, spans = "", {}
    for word in words:
        text += (" " if text else "") + word.before
        start = len(text)
        text += word.token
        for entity, label in word.entities:
            spans[entity] = (spans[entity][0] if entity in spans else start, len(text), label)
        text += word.after
    return text, tuple(EntitySpan(start, end, label) for start, end, label in spans.values())


def _span(words: list[_Word]) -> tuple[float, float] | None:
    """First start and last end among the words that have times."""
    starts = [word.start for word in words if word.start is not None]
    ends = [word.end for word in words if word.end is not None]
    return (min(starts), max(ends)) if starts and ends else None


def _length(words: list[_Word]) -> float:
    span = _span(words)
    return span[1] - span[0] if span else 0.0


def _pack(words: list[_Word]) -> list[list[_Word]]:
    """One speaker's consecutive words in pieces of at most `WINDOW` seconds, cut at sentence ends where a sentence
    fits, else between words."""
    sentences = [[]]
    for word in words:
        sentences[-1].append(word)
        if SENTENCE_END.search(word.token + word.after):
            sentences.append([])
    pieces = [[]]
    for sentence in sentences:
        units = [sentence] if _length(sentence) <= WINDOW else [[word] for word in sentence]
        for unit in units:
            if pieces[-1] and _length(pieces[-1] + unit) > WINDOW:
                pieces.append([])
            pieces[-1] += unit
    return [piece for piece in pieces if piece]


def _timed_turns(words: list[_Word], speaker: str, audio: str, audio_seconds: float,
                 collected: _Collected) -> list[_Turn]:
    """One speaker's words as turns cut by `_pack`, timed by their words (a piece without times is counted)."""
    turns = []
    for piece in _pack(words):
        span = _span(piece)
        if span is None:
            collected.skipped["pieces of transcript without word times"] += 1
            continue
        text, entities = _text(piece)
        turns.append(_Turn(speaker, span[0], min(span[1], audio_seconds), text, audio, entities))
    return turns


# -- LibriSpeech --------------------------------------------------------------------------------------------------

LIBRISPEECH_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
                       "test-clean", "test-other")


def import_librispeech(source: Path, out: Path, progress: bool = True) -> ImportResult:
    """LibriSpeech as OpenSLR ships it: [LibriSpeech/]<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    beside <utterance id>.flac. One manifest per subset (`dev_clean.jsonl`, ...), the text as published (upper case,
    no punctuation)."""
    root = source / "LibriSpeech" if (source / "LibriSpeech").is_dir() else source
    subsets = [subset for subset in LIBRISPEECH_SUBSETS if (root / subset).is_dir()]
    if not subsets:
        raise LayoutError(f"expected a subset folder ({', '.join(LIBRISPEECH_SUBSETS)}) in {root}; {_found(root)}")
    collected = _Collected("librispeech", source, out)
    for subset in subsets:
        chapters = sorted((root / subset).glob("*/*/*.trans.txt"))
        if not chapters:
            raise LayoutError(f"expected {root / subset}/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt; "
                              f"{_found(root / subset)}")
        for transcript in tqdm(chapters, desc=f"librispeech {subset}", unit="chapter", disable=not progress):
            for line in transcript.read_text(encoding="utf-8").splitlines():
                utterance_id, _, text = line.partition(" ")
                placed = collected.audio(transcript.with_name(f"{utterance_id}.flac"))
                if placed:
                    collected.add(subset.replace("-", "_"), Utterance(
                        id=utterance_id, audio=placed[0], duration=placed[1], language="en",
                        speaker=utterance_id.split("-")[0], domain="general", split=subset.split("-")[0],
                        text=text.strip(), meta={"corpus": "librispeech"}))
    return collected.write()


# -- Common Voice -------------------------------------------------------------------------------------------------

COMMON_VOICE_SPLITS = ("train", "dev", "test")


def import_common_voice(source: Path, out: Path, progress: bool = True) -> ImportResult:
    """Common Voice as Mozilla ships it: a language folder (named by its code) with clips/*.mp3 beside train.tsv,
    dev.tsv and test.tsv (tab-separated, with `client_id`, `path` and `sentence` columns), or a release folder
    (cv-corpus-*) of language folders, of which those in the kit's languages are imported. The clips are converted
    to 16 kHz mono FLAC; one manifest per language and split (`fr_train.jsonl`, ...); speakers are client ids."""
    folders = [source] if (source / "clips").is_dir() else sorted(
        path for path in source.iterdir() if (path / "clips").is_dir())
    if not folders:
        raise LayoutError(f"expected {source}/clips/ beside train.tsv, dev.tsv, test.tsv (one language) or "
                          f"{source}/<language>/clips/ (a release); {_found(source)}")
    known = [folder for folder in folders if folder.name in LANGUAGES]
    if not known:
        raise LayoutError(f"expected a language folder named by one of the kit's languages ({', '.join(LANGUAGES)}); "
                          f"found {', '.join(str(folder) for folder in folders)}")
    collected = _Collected("common-voice", source, out)
    for folder in folders:
        if folder not in known:
            collected.skipped[f"language folders without a tokenizer tag ({folder.name})"] += 1
    for folder in known:
        tables = [(split, folder / f"{split}.tsv") for split in COMMON_VOICE_SPLITS
                  if (folder / f"{split}.tsv").is_file()]
        if not tables:
            raise LayoutError(f"expected {folder}/train.tsv, dev.tsv or test.tsv; {_found(folder)}")
        for split, table in tables:
            rows = _rows(table, "\t", ("client_id", "path", "sentence"))
            for row in tqdm(rows, desc=f"common voice {folder.name} {split}", unit="clip", disable=not progress):
                placed = collected.audio(folder / "clips" / row["path"])
                if placed:
                    collected.add(f"{folder.name}_{split}", Utterance(
                        id=Path(row["path"]).stem, audio=placed[0], duration=placed[1], language=folder.name,
                        speaker=row["client_id"], domain=_domain(folder.name), split=split,
                        text=row["sentence"].strip(), meta={"corpus": "common-voice"}))
    return collected.write()


# -- SPGISpeech ---------------------------------------------------------------------------------------------------

SPGISPEECH_PARTS = {"train": "train", "val": "dev", "test": "test"}


def import_spgispeech(source: Path, out: Path, progress: bool = True) -> ImportResult:
    """SPGISpeech as Kensho ships it: <part>.csv (`wav_filename|wav_filesize|transcript`) for the parts train, val
    (and test where present), the 5-15 s slices at <part>/<call>/<n>.wav (or spgispeech/<part>/...). Splits train,
    dev (val) and test; the text as published: cased, punctuated, numbers as digits. The corpus labels no speakers:
    a call's id stands for them."""
    parts = {part: split for part, split in SPGISPEECH_PARTS.items() if (source / f"{part}.csv").is_file()}
    if not parts:
        raise LayoutError(f"expected {source}/train.csv or {source}/val.csv; {_found(source)}")
    collected = _Collected("spgispeech", source, out)
    for part, split in parts.items():
        slices = _first([source / part, source / "spgispeech" / part], f"the {part} slices", source)
        rows = _rows(source / f"{part}.csv", "|", ("wav_filename", "transcript"))
        for row in tqdm(rows, desc=f"spgispeech {part}", unit="slice", disable=not progress):
            name = row["wav_filename"]
            placed = collected.audio(slices / name)
            if placed:
                collected.add(split, Utterance(
                    id=name.removesuffix(".wav").replace("/", "_"), audio=placed[0], duration=placed[1], language="en",
                    speaker=name.split("/")[0], domain="finance", split=split, text=row["transcript"].strip(),
                    meta={"corpus": "spgispeech"}))
    return collected.write()


# -- AMI ----------------------------------------------------------------------------------------------------------

# AMI's full-corpus-ASR partition (groups.inf.ed.ac.uk/ami/corpus/datasets.shtml) by meeting series; the rest trains.
AMI_SPLITS = {**dict.fromkeys(("ES2011", "IS1008", "TS3004", "IB4001", "IB4002", "IB4003", "IB4004", "IB4010",
                               "IB4011"), "dev"),
              **dict.fromkeys(("ES2004", "IS1009", "TS3003", "EN2002"), "test")}
NITE_ID = "{http://nite.sourceforge.net/}id"


def import_ami(source: Path, out: Path, progress: bool = True) -> ImportResult:
    """AMI with its individual headset microphones (IHM), as the AMI site ships it: amicorpus/<meeting>/audio/
    <meeting>.Headset-<channel>.wav (lhotse downloads to wav_db/) and the manual annotations
    (ami_public_manual_1.6.2.zip) unzipped into annotations/ or DIR itself: corpusResources/meetings.xml,
    words/<meeting>.<agent>.words.xml, segments/<meeting>.<agent>.segments.xml. Splits follow the full-corpus-ASR
    partition. A meeting is a conversation whose audio is <meeting>.Mix-Headset.wav (the headsets summed into
    OUT/audio/ where it is missing); each transcribed segment is a turn read from its speaker's headset, cut between
    words where it is longer than the window. Speakers are AMI's global names (MEE006, ...)."""
    meetings_xml = _first([source / "annotations" / "corpusResources" / "meetings.xml",
                           source / "corpusResources" / "meetings.xml"], "the AMI annotations", source)
    annotations = meetings_xml.parent.parent
    audio_root = _first([source / "amicorpus", source / "wav_db"], "the meetings' audio", source)
    agents = {meeting.get("observation"): {speaker.get("nxt_agent"): (speaker.get("channel"),
                                                                      speaker.get("global_name"))
                                           for speaker in meeting}
              for meeting in ET.parse(meetings_xml).getroot()}
    meetings = sorted(path.name for path in audio_root.iterdir() if path.name in agents)
    if not meetings:
        raise LayoutError(f"expected {audio_root}/<meeting>/audio/<meeting>.Headset-<channel>.wav for a meeting of "
                          f"{meetings_xml}; {_found(audio_root)}")
    collected = _Collected("ami", source, out)
    for meeting in tqdm(meetings, desc="ami", unit="meeting", disable=not progress):
        _import_ami_meeting(meeting, agents[meeting], audio_root / meeting / "audio", annotations, collected)
    return collected.write()


def _import_ami_meeting(meeting: str, agents: dict[str, tuple[str, str]], audio_dir: Path, annotations: Path,
                        collected: _Collected) -> None:
    """One meeting as a conversation: each agent's segments, with their words, read from the agent's headset."""
    turns, headsets = [], []
    for agent, (channel, speaker) in sorted(agents.items()):
        segments = annotations / "segments" / f"{meeting}.{agent}.segments.xml"
        placed = collected.audio(audio_dir / f"{meeting}.Headset-{channel}.wav") if segments.is_file() else None
        if placed is None:  # an agent who said nothing, or a headset not downloaded
            continue
        headsets.append(audio_dir / f"{meeting}.Headset-{channel}.wav")
        words_xml = _first([annotations / "words" / f"{meeting}.{agent}.words.xml"], f"the words of {segments.name}",
                           annotations / "words")
        elements = list(ET.parse(words_xml).getroot())
        position = {element.get(NITE_ID): index for index, element in enumerate(elements)}
        for segment in ET.parse(segments).getroot().iter("segment"):
            href = next((child.get("href") for child in segment if child.get("href")), "")
            ids = re.findall(r"id\(([^)]+)\)", href)  # "<file>#id(<first word>)..id(<last word>)"
            words = _ami_words(elements[position[ids[0]]:position[ids[-1]] + 1]) if ids else []
            start, end = float(segment.get("transcriber_start")), min(float(segment.get("transcriber_end")), placed[1])
            if words and end - start <= WINDOW:
                turns.append(_Turn(speaker, start, end, _text(words)[0], placed[0]))
            elif words:
                turns += _timed_turns(words, speaker, placed[0], placed[1], collected)
    if turns:
        audio, seconds = _ami_mix(meeting, audio_dir, headsets, collected.out)
        collected.add_conversation(Conversation(meeting, audio, seconds, "en", (), AMI_SPLITS.get(meeting[:6], "train"),
                                                {"corpus": "ami"}), "general", turns)


def _ami_words(elements: list[ET.Element]) -> list[_Word]:
    """The words among a words file's elements (not vocal sounds, gaps or disfluency marks), as written; a
    punctuation mark joins the word before it."""
    words = []
    for element in elements:
        token = (element.text or "").strip()
        if element.tag != "w" or not token:
            continue
        if element.get("punc") == "true":
            if words:
                words[-1] = dataclasses.replace(words[-1], after=words[-1].after + token)
        else:
            words.append(_Word(token, _seconds(element.get("starttime")), _seconds(element.get("endtime"))))
    return words


def _ami_mix(meeting: str, audio_dir: Path, headsets: list[Path], out: Path) -> tuple[str, float]:
    """The meeting's headset mix: AMI's own file where present, else the headsets summed into out/audio/."""
    mix = audio_dir / f"{meeting}.Mix-Headset.wav"
    if mix.is_file():
        return _audio(mix, out)
    target = out / "audio" / f"{meeting}.Mix-Headset.flac"
    if not target.is_file():
        signals = [load_audio(headset) for headset in headsets]
        total = np.zeros(max(map(len, signals)), np.float32)
        for signal in signals:
            total[:len(signal)] += signal
        write_audio(target, peak_normalise(total))
    return target.relative_to(out).as_posix(), sf.info(str(target)).duration


# -- Earnings-21 and -22 ------------------------------------------------------------------------------------------

NOT_ENTITIES = ("CONTRACTION", "FALLBACK")  # Rev's tags for contracted and unusual spellings, not named entities


def import_earnings(source: Path, out: Path, progress: bool = True, corpus: str = "earnings22") -> ImportResult:
    """Earnings-21 and -22 as Rev ships them (github.com/revdotcom/speech-datasets): media/<call>.mp3 and the token
    references, transcripts/force_aligned_nlp_references/<call>.aligned.nlp (Earnings-22: tokens with times) or
    transcripts/nlp_references/<call>.nlp, with the entity classes in their `tags` column or, through `wer_tags`, in
    transcripts/wer_tags/<call>.wer_tag.json (Earnings-21). Every call is a test conversation, converted to 16 kHz
    mono FLAC; its turns are speaker runs cut at sentence ends to fit the window, the entities spans of their text
    (labels lower-cased; Rev's CONTRACTION and FALLBACK tags are not entities). Cutting needs token times: a call
    whose reference has none (Earnings-21's as published) is left out, and an import without any fails."""
    media = _first([source / "media"], "the calls' audio (<call>.mp3)", source)
    references = _first([source / "transcripts" / "force_aligned_nlp_references",
                         source / "transcripts" / "nlp_references"], "the token references", source / "transcripts")
    collected = _Collected(corpus, source, out)
    calls = sorted(media.glob("*.mp3"))
    if not calls:
        raise LayoutError(f"expected {media}/<call>.mp3; {_found(media)}")
    for call in tqdm(calls, desc=corpus, unit="call", disable=not progress):
        nlp = next((path for path in (references / f"{call.stem}.aligned.nlp", references / f"{call.stem}.nlp")
                    if path.is_file()), None)
        if nlp is None:
            collected.skipped["calls without a reference"] += 1
            continue
        words = _earnings_words(nlp, source / "transcripts" / "wer_tags" / f"{call.stem}.wer_tag.json")
        if _span([word for _, word in words]) is None:
            collected.skipped["calls whose reference has no token times"] += 1
            continue
        placed = collected.audio(call)
        if placed is None:
            continue
        turns = [turn for speaker, run in itertools.groupby(words, key=lambda pair: pair[0])
                 for turn in _timed_turns([word for _, word in run], f"{call.stem}-{speaker}", *placed, collected)]
        collected.add_conversation(Conversation(call.stem, placed[0], placed[1], "en", (), "test", {"corpus": corpus}),
                                   "finance", turns)
    if not collected.conversations and collected.skipped["calls whose reference has no token times"]:
        raise LayoutError(f"the references in {references} have no token times (their ts and endTs columns are empty); "
                          f"cutting a call into turns of at most {MAX_DURATION:g} s needs them: expected "
                          f"{source}/transcripts/force_aligned_nlp_references/<call>.aligned.nlp")
    return collected.write()


def _earnings_words(nlp: Path, wer_tags: Path) -> list[tuple[str, _Word]]:
    """(speaker, word) for each token of an .nlp reference, with its entities from `wer_tags` (ids whose classes the
    sidecar file names) or else from `tags` (`id:CLASS`)."""
    rows = _rows(nlp, "|", ("token", "speaker", "ts", "endTs", "punctuation"))
    classes = json.loads(wer_tags.read_text()) if rows and "wer_tags" in rows[0] and wer_tags.is_file() else None
    words = []
    for row in rows:
        if classes is not None:
            tagged = [(entity, classes[entity]["entity_type"])
                      for entity in ast.literal_eval(row["wer_tags"] or "[]") if entity in classes]
        else:
            tagged = [tuple(tag.split(":", 1)) for tag in ast.literal_eval(row.get("tags") or "[]")]
        words.append((row["speaker"], _Word(
            row["token"], _seconds(row["ts"]), _seconds(row["endTs"]), row.get("prepunctuation") or "",
            row["punctuation"] or "", tuple((entity, label.lower()) for entity, label in tagged
                                            if label not in NOT_ENTITIES))))
    return words


# -- MLC-SLM ------------------------------------------------------------------------------------------------------

MLC_SLM_LANGUAGES = {"English": "en", "French": "fr", "German": "de", "Italian": "it", "Japanese": "ja",
                     "Korean": "ko", "Portuguese": "pt", "Russian": "ru", "Spanish": "es", "Thai": "th",
                     "Vietnamese": "vi"}
MLC_SLM_SPLITS = {"Training": "train", "Development": "dev", "Evaluation": "test"}


def import_mlc_slm(source: Path, out: Path, progress: bool = True) -> ImportResult:
    """The Interspeech 2025 MLC-SLM challenge data as Nexdata ships it: MLC-SLM_Workshop-Training_Set_<n>/,
    MLC-SLM_Workshop-Development_Set/ (and an evaluation set where it has transcripts), each holding
    data/<Language>/[<accent>/...]<conversation>.wav beside <conversation>.txt, whose lines are
    `start<TAB>end<TAB>speaker<TAB>text`. Each recording is a conversation, its segments the turns; a segment longer
    than the window stays in the references but not in the turns manifest (the corpus has no word times to cut it)."""
    sets = sorted(path for path in source.glob("MLC-SLM_Workshop-*") if (path / "data").is_dir())
    if not sets:
        raise LayoutError(f"expected {source}/MLC-SLM_Workshop-Training_Set_1/data/ or "
                          f"{source}/MLC-SLM_Workshop-Development_Set/data/; {_found(source)}")
    collected = _Collected("mlc-slm", source, out)
    for folder in sets:
        split = next((split for word, split in MLC_SLM_SPLITS.items() if word in folder.name), None)
        if split is None:
            raise LayoutError(f"{folder}: expected a Training, Development or Evaluation set")
        transcripts = sorted(path for path in (folder / "data").rglob("*.txt") if path.with_suffix(".wav").is_file())
        for transcript in tqdm(transcripts, desc=f"mlc-slm {split}", unit="conversation", disable=not progress):
            relative = transcript.relative_to(folder / "data").with_suffix("")
            language = MLC_SLM_LANGUAGES.get(relative.parts[0])
            if language is None or len(relative.parts) < 2:
                raise LayoutError(f"{transcript}: expected data/<Language>/.../<conversation>.txt, <Language> one of "
                                  f"{', '.join(MLC_SLM_LANGUAGES)}")
            placed = collected.audio(transcript.with_suffix(".wav"))
            if placed:
                recording = "-".join(relative.parts)
                turns = [_Turn(f"{recording}-{speaker}", start, min(end, placed[1]), text, placed[0])
                         for start, end, speaker, text in _mlc_slm_segments(transcript)]
                collected.add_conversation(Conversation(recording, placed[0], placed[1], language, (), split,
                                                        {"corpus": "mlc-slm"}), _domain(language), turns)
    return collected.write()


def _mlc_slm_segments(transcript: Path) -> list[tuple[float, float, str, str]]:
    segments = []
    for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t", 3)
        if not line.strip():
            continue
        if len(fields) != 4:
            raise LayoutError(f"{transcript}:{number}: expected start<TAB>end<TAB>speaker<TAB>text; found {line!r}")
        segments.append((float(fields[0]), float(fields[1]), fields[2], fields[3].strip()))
    return segments


IMPORTERS: dict[str, Callable[..., ImportResult]] = {
    "librispeech": import_librispeech, "common-voice": import_common_voice, "ami": import_ami,
    "earnings21": partial(import_earnings, corpus="earnings21"),
    "earnings22": partial(import_earnings, corpus="earnings22"),
    "spgispeech": import_spgispeech, "mlc-slm": import_mlc_slm}


def import_corpus(name: str, source: str | Path, out: str | Path, progress: bool = True) -> ImportResult:
    """Import corpus `name` (a key of `IMPORTERS`) from folder `source` into manifests in `out`."""
    if name not in IMPORTERS:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(IMPORTERS)}")
    source = Path(source)
    if not source.is_dir():
        raise LayoutError(f"{source} is not a folder")
    return IMPORTERS[name](source, Path(out), progress=progress)
