"""Manifests: JSONL files, one record per line, validated on load (formats documented in data_manifests/README.md).

Three record kinds share the loader:
- `Utterance`: one segment of audio with its transcript, language, speaker, domain, split, context and entity spans;
  conversation turns are utterances with `conversation` and `turn` set and an `offset` into the conversation's audio.
- `Conversation`: one multi-speaker recording (its turns live in the utterance manifest of the same split).
- `NBest`: one system's ranked hypotheses for one utterance.
Every problem is reported with file, line, field and reason; all problems of a file are collected before raising.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile as sf

from speechkit.core.fileio import write_jsonl
from speechkit.core.vocab import LANGUAGES

SAMPLE_RATE = 16_000
UNLABELED_SPLITS = ("pool",)  # audio whose transcript a method may not see
MAX_DURATION = 30.0   # Whisper's window: its feature extractor silently cuts longer audio
MIN_DURATION = 0.05   # 800 samples at 16 kHz: shorter audio breaks the log-mel's STFT (n_fft 400) or says nothing
FRAME_SECONDS = 0.01  # one 10 ms feature frame: bounds written with 2 decimals may overrun the file by less


@dataclass(frozen=True)
class EntitySpan:
    """A named entity in `Utterance.text`: characters [start, end), its type (drug, org, person, ...)."""
    start: int
    end: int
    label: str


@dataclass(frozen=True)
class Context:
    """What is known about an utterance before it is heard: the domain's description and relevant entity names."""
    description: str
    entities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: str                      # path relative to the manifest root
    duration: float                 # seconds
    language: str                   # ISO 639-1 code
    speaker: str
    domain: str
    split: str
    text: str | None = None         # None only in unlabeled splits
    offset: float = 0.0             # seconds into `audio`
    context: Context | None = None
    entities: tuple[EntitySpan, ...] = ()
    conversation: str | None = None
    turn: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # free-form: voice, augmentation amounts, source corpus

    def entity_texts(self) -> list[str]:
        return [self.text[span.start:span.end] for span in self.entities] if self.text else []


@dataclass(frozen=True)
class Conversation:
    id: str
    audio: str
    duration: float
    language: str
    speakers: tuple[str, ...]
    split: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hypothesis:
    text: str
    score: float                    # higher is better (log-probability for the kit's models)


@dataclass(frozen=True)
class NBest:
    id: str                         # the utterance id
    system: str
    hypotheses: tuple[Hypothesis, ...]


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: field '{self.field}': {self.reason}"


class ManifestError(ValueError):
    """Raised with every problem found in a manifest; `problems` keeps them as records."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s) in manifest:\n  {shown}{more}")


# -- (de)serialisation ------------------------------------------------------------------------------------------

def to_record(item: Any) -> dict:
    """A dataclass as a JSON-ready dict, without fields left at their empty defaults."""
    record = dataclasses.asdict(item)
    return {k: v for k, v in record.items() if v not in (None, (), [], {}) or k == "text"}


def write_manifest(path: str | Path, items: list) -> None:
    write_jsonl(path, (to_record(item) for item in items))


T = TypeVar("T")


def _build(cls: type[T], record: dict, problems: list[Problem], where: tuple[str, int], prefix: str = "") -> T | None:
    """Construct dataclass `cls` from `record`, type-checking each field; None (with problems noted) if invalid."""
    if not isinstance(record, dict):
        problems.append(Problem(*where, prefix.rstrip(".") or "<record>", "expected a JSON object"))
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    ok = True
    for name in record.keys() - fields.keys():
        problems.append(Problem(*where, prefix + name, "unknown field"))
        ok = False
    values = {}
    for name, spec in fields.items():
        if name not in record:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                problems.append(Problem(*where, prefix + name, "missing"))
                ok = False
            continue
        value = _convert(spec.type, record[name], problems, where, prefix + name)
        if value is _INVALID:
            ok = False
        else:
            values[name] = value
    return cls(**values) if ok else None


_INVALID = object()
_NESTED = {"Context": Context, "EntitySpan": EntitySpan, "Hypothesis": Hypothesis}


def _convert(type_name: str, value: Any, problems: list[Problem], where: tuple[str, int], name: str) -> Any:
    """Check `value` against a field's annotation (a string, thanks to `from __future__ import annotations`)."""
    optional = type_name.endswith("| None")
    base = type_name.removesuffix(" | None")
    if value is None:
        if optional:
            return None
        problems.append(Problem(*where, name, "must not be null"))
        return _INVALID
    if base.startswith("tuple["):
        inner = base[len("tuple["):-len(", ...]")]
        if not isinstance(value, list):
            problems.append(Problem(*where, name, "expected a list"))
            return _INVALID
        items = [_convert(inner, item, problems, where, f"{name}[{i}]") for i, item in enumerate(value)]
        return _INVALID if any(item is _INVALID for item in items) else tuple(items)
    if base in _NESTED:
        built = _build(_NESTED[base], value, problems, where, name + ".")
        return _INVALID if built is None else built
    expected = {"str": str, "int": int, "float": (int, float), "dict[str, Any]": dict}[base]
    if isinstance(value, bool) or not isinstance(value, expected):
        problems.append(Problem(*where, name, f"expected {base}, got {type(value).__name__}"))
        return _INVALID
    return float(value) if base == "float" else value


def _read_records(path: Path, problems: list[Problem]) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    records = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        where = (str(path), number)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problems.append(Problem(*where, "<line>", f"not valid UTF-8 ({error.reason} at byte {error.start})"))
            continue
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            problems.append(Problem(*where, "<line>", f"not valid JSON ({error.msg})"))
    return records


# -- loading with validation -----------------------------------------------------------------------------------

def read_manifest(path: str | Path, root: str | Path | None = None, check_audio: bool = True,
                  max_duration: float | None = MAX_DURATION, strict_format: bool = False,
                  check_samples: bool = False) -> list[Utterance]:
    """Load and validate an utterance manifest.

    `root` (default: the manifest's folder) resolves audio paths. With `check_audio`, each audio file's header is read:
    it must exist and be readable, and [offset, offset + duration] must lie inside it (up to one frame, which loading
    clamps). Audio at another sample rate or with several channels is accepted and resampled/downmixed by
    `speechkit.data.audio.load_audio`, unless `strict_format` asks for exactly 16 kHz mono. `max_duration` is the
    model's input limit in seconds (default Whisper's 30 s; None for none). `check_samples` also reads every segment:
    NaN or infinite samples are problems, samples beyond [-1, 1] one warning per manifest.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    problems: list[Problem] = []
    items = _read_items(path, Utterance, problems)
    _check_unique(path, [(number, utterance.id) for number, utterance in items], problems)
    headers: dict[str, sf._SoundFileInfo | str] = {}
    clipped: list[tuple[int, str]] = []
    for number, utterance in items:
        where = (str(path), number)
        _check_text(utterance, problems, where)
        _check_labels(utterance.id, utterance.language, problems, where)
        if not _check_times(utterance, max_duration, problems, where) or not check_audio:
            continue
        info = _check_audio(utterance, root, headers, strict_format, problems, where)
        if check_samples and info is not None and _check_samples(utterance, root, info, problems, where):
            clipped.append((number, utterance.audio))
    if clipped:
        warnings.warn(f"{path}: {len(clipped)} utterance(s) have samples beyond [-1, 1], which clip when written as "
                      f"PCM (first: line {clipped[0][0]}, {clipped[0][1]})", stacklevel=2)
    if problems:
        raise ManifestError(problems)
    return [utterance for _, utterance in items]


def _check_labels(id_: str, language: str, problems: list[Problem], where: tuple[str, int]) -> None:
    if not id_.strip():
        problems.append(Problem(*where, "id", "empty id"))
    if language not in LANGUAGES:  # the tokenizers have a tag only for these
        problems.append(Problem(*where, "language", f"unknown language {language!r}; known: {', '.join(LANGUAGES)}"))


def _check_times(utterance: Utterance, max_duration: float | None, problems: list[Problem],
                 where: tuple[str, int]) -> bool:
    """Offset and duration are finite and in bounds; False when the audio cannot be checked against them."""
    count = len(problems)
    for name in ("offset", "duration"):
        if not math.isfinite(getattr(utterance, name)):
            problems.append(Problem(*where, name, f"must be a finite number, got {getattr(utterance, name)}"))
    if len(problems) > count:
        return False
    if utterance.duration <= 0 or utterance.offset < 0:
        problems.append(Problem(*where, "duration", "duration must be > 0 and offset >= 0"))
    elif utterance.duration < MIN_DURATION:
        problems.append(Problem(*where, "duration", f"{utterance.duration} s is shorter than the minimum of "
                                                    f"{MIN_DURATION} s ({round(MIN_DURATION * SAMPLE_RATE)} samples)"))
    if max_duration is not None and utterance.duration > max_duration:
        problems.append(Problem(*where, "duration",
                                f"{utterance.duration:.2f} s is longer than the model's limit of {max_duration} s"))
    return len(problems) == count


def _check_text(utterance: Utterance, problems: list[Problem], where: tuple[str, int]) -> None:
    if utterance.text is None:
        if utterance.split not in UNLABELED_SPLITS:
            problems.append(Problem(*where, "text", f"missing in labeled split {utterance.split!r}"))
        if utterance.entities:
            problems.append(Problem(*where, "entities", "entity spans need a transcript"))
        return
    if not utterance.text.strip():
        problems.append(Problem(*where, "text", "empty transcript"))
    for i, span in enumerate(utterance.entities):
        if not 0 <= span.start < span.end <= len(utterance.text):
            problems.append(Problem(*where, f"entities[{i}]",
                                    f"span [{span.start}, {span.end}) outside the text (length {len(utterance.text)})"))


def _check_audio(utterance: Utterance, root: Path, headers: dict, strict_format: bool, problems: list[Problem],
                 where: tuple[str, int]) -> sf._SoundFileInfo | None:
    """Header checks; returns the header, or None when the file cannot be read."""
    if utterance.audio not in headers:  # conversation turns share one file: read its header once
        try:
            headers[utterance.audio] = sf.info(str(root / utterance.audio))
        except Exception as error:  # soundfile raises LibsndfileError or RuntimeError depending on the fault
            exists = (root / utterance.audio).is_file()
            headers[utterance.audio] = f"unreadable audio ({error})" if exists else f"audio file not found under {root}"
    info = headers[utterance.audio]
    if isinstance(info, str):
        problems.append(Problem(*where, "audio", info))
        return None
    if strict_format and (info.samplerate != SAMPLE_RATE or info.channels != 1):
        problems.append(Problem(*where, "audio", f"{info.samplerate} Hz x {info.channels} channel(s); "
                                                 f"expected {SAMPLE_RATE} Hz mono"))
    if utterance.offset + utterance.duration > info.duration + FRAME_SECONDS:
        problems.append(Problem(*where, "duration", f"segment ends at {utterance.offset + utterance.duration:.2f} s "
                                                    f"but the audio lasts {info.duration:.2f} s"))
    return info


def _check_samples(utterance: Utterance, root: Path, info: sf._SoundFileInfo, problems: list[Problem],
                   where: tuple[str, int]) -> bool:
    """Reads the segment: NaN/Inf samples are problems; returns whether any sample lies beyond [-1, 1]."""
    start = round(utterance.offset * info.samplerate)
    stop = min(start + round(utterance.duration * info.samplerate), info.frames)
    try:
        audio, _ = sf.read(str(root / utterance.audio), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as error:  # a header that reads fine can still hide a truncated or corrupt body
        problems.append(Problem(*where, "audio", f"unreadable audio ({error})"))
        return False
    finite = np.isfinite(audio)
    if not finite.all():
        problems.append(Problem(*where, "audio", f"{int((~finite).sum())} NaN or infinite samples"))
    return bool(np.abs(audio[finite]).max(initial=0.0) > 1.0)


def read_conversations(path: str | Path) -> list[Conversation]:
    path = Path(path)
    problems: list[Problem] = []
    items = _read_items(path, Conversation, problems)
    _check_unique(path, [(number, item.id) for number, item in items], problems)
    for number, conversation in items:
        _check_labels(conversation.id, conversation.language, problems, (str(path), number))
    if problems:
        raise ManifestError(problems)
    return [item for _, item in items]


def read_nbest(path: str | Path) -> list[NBest]:
    """Load N-best lists; hypotheses must be non-empty and ranked by non-increasing score."""
    path = Path(path)
    problems: list[Problem] = []
    items = _read_items(path, NBest, problems)
    _check_unique(path, [(number, (item.id, item.system)) for number, item in items], problems)
    for number, nbest in items:
        scores = [h.score for h in nbest.hypotheses]
        if not scores:
            problems.append(Problem(str(path), number, "hypotheses", "empty N-best list"))
        if any(a < b for a, b in itertools.pairwise(scores)):
            problems.append(Problem(str(path), number, "hypotheses", "not sorted by decreasing score"))
    if problems:
        raise ManifestError(problems)
    return [item for _, item in items]


def check_manifest(path: str | Path, strict_format: bool = False) -> list[Problem]:
    """Every problem of a manifest of any kind; for utterances every segment's samples are read too. What
    `python -m speechkit validate` and the runner report (clipping only warns, once per manifest)."""
    path = Path(path)
    if not path.is_file():
        return [Problem(str(path), 0, "<file>", "manifest not found")]
    try:
        _reader(path, strict_format)(path)
    except ManifestError as error:
        return sorted(error.problems, key=lambda problem: problem.line)  # stable: a line's problems keep their order
    return []


def _reader(path: Path, strict_format: bool) -> Callable[[Path], list]:
    """The loader for a manifest's record kind, told by the first record: N-best lists and conversations have a
    field utterances lack."""
    for raw in path.read_bytes().splitlines():
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(record, dict) and "hypotheses" in record:
            return read_nbest
        if isinstance(record, dict) and "speakers" in record:
            return read_conversations
        break
    return partial(read_manifest, strict_format=strict_format, check_samples=True)


def _read_items(path: Path, cls: type[T], problems: list[Problem]) -> list[tuple[int, T]]:
    items = []
    for number, record in _read_records(path, problems):
        item = _build(cls, record, problems, (str(path), number))
        if item is not None:
            items.append((number, item))
    return items


def _check_unique(path: Path, keys: list[tuple[int, Any]], problems: list[Problem]) -> None:
    first: dict[Any, int] = {}
    for number, key in keys:
        if key in first:
            problems.append(Problem(str(path), number, "id", f"duplicate {key!r} (first on line {first[key]})"))
        first.setdefault(key, number)
