"""Scoring, one module for the whole kit: WER/CER, entity WER, bootstrap intervals, tcpWER/cpWER, DER, RTFx.

Corpus rates are always ratios of summed counts (errors over reference units), never means of per-utterance rates.
Alignments come from jiwer; multi-speaker WERs from meeteval; DER from pyannote.metrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np

from speechkit.core.text import words
from speechkit.data.manifest import EntitySpan


@dataclass(frozen=True)
class ErrorCounts:
    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def reference_length(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors over reference units; an empty reference scores 0 if the hypothesis is empty too, else inf."""
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_length

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.hits + other.hits, self.substitutions + other.substitutions,
                           self.deletions + other.deletions, self.insertions + other.insertions)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float = 0.95


@dataclass(frozen=True)
class ErrorRate:
    """A corpus error rate (WER, CER or entity WER) with its counts, per-utterance counts and bootstrap interval."""
    rate: float
    counts: ErrorCounts
    per_utterance: tuple[ErrorCounts, ...]
    interval: Interval
    unit: str                          # "word" or "character"

    def errors(self) -> np.ndarray:
        return np.array([c.errors for c in self.per_utterance], dtype=np.float64)

    def lengths(self) -> np.ndarray:
        return np.array([c.reference_length for c in self.per_utterance], dtype=np.float64)


@dataclass(frozen=True)
class Difference:
    """System B's rate minus system A's on the same utterances, with a paired bootstrap interval."""
    difference: float
    interval: Interval
    relative: float                    # difference / rate of A
    p_value: float                     # two-sided: how often resampling puts the difference on the other side of 0


def _units(text: str | None, normaliser: str) -> str:
    return " ".join(words(text or "", normaliser))


def _counts_from_alignment(chunks) -> ErrorCounts:
    hits = subs = dels = ins = 0
    for chunk in chunks:
        ref = chunk.ref_end_idx - chunk.ref_start_idx
        if chunk.type == "equal":
            hits += ref
        elif chunk.type == "substitute":
            subs += ref
        elif chunk.type == "delete":
            dels += ref
        else:
            ins += chunk.hyp_end_idx - chunk.hyp_start_idx
    return ErrorCounts(hits, subs, dels, ins)


def _align(references: list[str], hypotheses: list[str]) -> list[list]:
    """jiwer alignments of unit strings; pairs where both sides are empty get an empty alignment."""
    chunks: list[list] = [[] for _ in references]
    scored = [i for i, (r, h) in enumerate(zip(references, hypotheses, strict=True)) if r or h]
    if scored:
        output = jiwer.process_words([references[i] for i in scored], [hypotheses[i] for i in scored])
        for i, alignment in zip(scored, output.alignments, strict=True):
            chunks[i] = alignment
    return chunks


def utterance_errors(reference: str, hypothesis: str | None, normaliser: str) -> ErrorCounts:
    """Hits, substitutions, deletions and insertions of one utterance (no interval: cheap enough per row)."""
    return _counts_from_alignment(_align([_units(reference, normaliser)], [_units(hypothesis, normaliser)])[0])


def aligned_units(reference: str, hypothesis: str, normaliser: str) -> list[tuple[str, str, str]]:
    """The alignment as (operation, reference units, hypothesis units) pieces: equal, substitute, delete, insert."""
    ref, hyp = _units(reference, normaliser), _units(hypothesis, normaliser)
    ref_units, hyp_units = ref.split(), hyp.split()
    return [(c.type, " ".join(ref_units[c.ref_start_idx:c.ref_end_idx]),
             " ".join(hyp_units[c.hyp_start_idx:c.hyp_end_idx])) for c in _align([ref], [hyp])[0]]


def error_rate(references: Sequence[str], hypotheses: Sequence[str | None], normaliser: str,
               resamples: int = 1000, seed: int = 0) -> ErrorRate:
    """Corpus WER (or CER with the `characters` normaliser) with a 95% bootstrap interval over utterances.

    A missing hypothesis (None) counts as an empty one: every reference unit deleted.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [_units(r, normaliser) for r in references]
    hyps = [_units(h, normaliser) for h in hypotheses]
    per_utterance = tuple(_counts_from_alignment(chunks) for chunks in _align(refs, hyps))
    return _rate(per_utterance, "character" if normaliser == "characters" else "word", resamples, seed)


def _rate(per_utterance: tuple[ErrorCounts, ...], unit: str, resamples: int, seed: int) -> ErrorRate:
    total = sum(per_utterance, ErrorCounts())
    errors = np.array([c.errors for c in per_utterance], dtype=np.float64)
    lengths = np.array([c.reference_length for c in per_utterance], dtype=np.float64)
    return ErrorRate(total.rate, total, per_utterance, bootstrap_interval(errors, lengths, resamples, seed), unit)


def entity_error_rate(references: Sequence[str], entities: Sequence[Sequence[EntitySpan]],
                      hypotheses: Sequence[str | None], normaliser: str, resamples: int = 1000,
                      seed: int = 0) -> ErrorRate:
    """Entity WER: errors on the reference's entity words over the number of reference entity words.

    The reference is normalised piece by piece (text between spans, each span) so that every normalised word knows
    whether it belongs to an entity. One alignment of the whole utterance (the same as for WER) is then read:
    a substituted or deleted entity word is an error; an inserted word is an error when it falls strictly inside a
    span (between two words of the same entity). Hits on entity words count towards the denominator only.
    `counts` reports hits/substitutions/deletions/insertions restricted to entity words in this sense.
    """
    if not len(references) == len(entities) == len(hypotheses):
        raise ValueError("references, entities and hypotheses must have the same length")
    tagged = [_tagged_units(r, spans, normaliser) for r, spans in zip(references, entities, strict=True)]
    refs = [" ".join(units) for units, _ in tagged]
    hyps = [_units(h, normaliser) for h in hypotheses]
    per_utterance = []
    for (_, tags), chunks in zip(tagged, _align(refs, hyps), strict=True):
        hits = subs = dels = ins = 0
        for chunk in chunks:
            span_tags = tags[chunk.ref_start_idx:chunk.ref_end_idx]
            in_entity = sum(tag >= 0 for tag in span_tags)
            if chunk.type == "equal":
                hits += in_entity
            elif chunk.type == "substitute":
                subs += in_entity
            elif chunk.type == "delete":
                dels += in_entity
            else:
                at = chunk.ref_start_idx
                if 0 < at < len(tags) and tags[at - 1] == tags[at] >= 0:
                    ins += chunk.hyp_end_idx - chunk.hyp_start_idx
        per_utterance.append(ErrorCounts(hits, subs, dels, ins))
    return _rate(tuple(per_utterance), "character" if normaliser == "characters" else "word", resamples, seed)


def _tagged_units(text: str, spans: Sequence[EntitySpan], normaliser: str) -> tuple[list[str], list[int]]:
    """Normalised units of `text` and, for each, the index of the entity span it came from (-1 outside any)."""
    units: list[str] = []
    tags: list[int] = []
    cursor = 0
    for index, span in sorted(enumerate(spans), key=lambda item: item[1].start):
        if span.start < cursor:
            raise ValueError(f"overlapping entity spans in {text!r}")
        outside = words(text[cursor:span.start], normaliser)
        inside = words(text[span.start:span.end], normaliser)
        units += outside + inside
        tags += [-1] * len(outside) + [index] * len(inside)
        cursor = span.end
    tail = words(text[cursor:], normaliser)
    return units + tail, tags + [-1] * len(tail)


# -- confidence intervals ------------------------------------------------------------------------------------------

def bootstrap_interval(errors: np.ndarray, lengths: np.ndarray, resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> Interval:
    """Percentile bootstrap over utterances of the ratio sum(errors) / sum(lengths)."""
    if len(errors) == 0:
        return Interval(float("nan"), float("nan"), level)
    index = np.random.default_rng(seed).integers(len(errors), size=(resamples, len(errors)))
    rates = _safe_ratio(errors[index].sum(axis=1), lengths[index].sum(axis=1))
    alpha = (1 - level) / 2
    return Interval(float(np.quantile(rates, alpha)), float(np.quantile(rates, 1 - alpha)), level)


def paired_difference(a: ErrorRate, b: ErrorRate, resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> Difference:
    """Rate of B minus rate of A on the same utterances (negative: B is better), paired bootstrap interval."""
    if len(a.per_utterance) != len(b.per_utterance) or not np.array_equal(a.lengths(), b.lengths()):
        raise ValueError("paired comparison needs both systems scored on the same references")
    errors_a, errors_b, lengths = a.errors(), b.errors(), a.lengths()
    index = np.random.default_rng(seed).integers(len(lengths), size=(resamples, len(lengths)))
    total = lengths[index].sum(axis=1)
    differences = _safe_ratio(errors_b[index].sum(axis=1), total) - _safe_ratio(errors_a[index].sum(axis=1), total)
    alpha = (1 - level) / 2
    observed = b.rate - a.rate
    other_side = np.mean(differences >= 0) if observed < 0 else np.mean(differences <= 0)
    return Difference(observed, Interval(float(np.quantile(differences, alpha)),
                                         float(np.quantile(differences, 1 - alpha)), level),
                      observed / a.rate if a.rate else float("nan"), float(min(1.0, 2 * other_side)))


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0)


# -- multi-speaker ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpeakerAttributedRate:
    """cpWER or tcpWER over a set of sessions (meeteval's counts)."""
    rate: float
    errors: int
    length: int
    substitutions: int
    deletions: int
    insertions: int
    missed_speakers: int
    false_alarm_speakers: int


def _seglst(segments: list[dict], normaliser: str):
    from meeteval.io import SegLST  # imported lazily: meeteval loads slowly
    return SegLST([{**s, "words": _units(s["words"], normaliser)} for s in segments])


def speaker_attributed_wer(reference: list[dict], hypothesis: list[dict], normaliser: str,
                           collar: float | None = None) -> SpeakerAttributedRate:
    """cpWER (collar None) or tcpWER (collar in seconds; the MLC-SLM baseline uses 5) through meeteval.

    Segments are SegLST dicts (session_id, speaker, start_time, end_time, words), as `benchmark.to_seglst` writes.
    """
    import meeteval
    # meeteval refuses a session the hypothesis lacks (a conversation where the VAD heard nobody): scored here, every
    # reference word deleted and every speaker missed
    heard = {s["session_id"] for s in hypothesis}
    unheard = [s for s in reference if s["session_id"] not in heard]
    unheard_words = sum(len(words(s["words"] or "", normaliser)) for s in unheard)
    counts = Counter(errors=unheard_words, length=unheard_words, deletions=unheard_words,
                     missed_speakers=len({(s["session_id"], s["speaker"]) for s in unheard}))
    if heard:
        ref = _seglst([s for s in reference if s["session_id"] in heard], normaliser)
        hyp = _seglst(hypothesis, normaliser)
        per_session = (meeteval.wer.cpwer(ref, hyp) if collar is None
                       else meeteval.wer.tcpwer(ref, hyp, collar=collar))
        total = meeteval.wer.combine_error_rates(per_session)
        counts.update(errors=total.errors, length=total.length, substitutions=total.substitutions,
                      deletions=total.deletions, insertions=total.insertions,
                      missed_speakers=total.missed_speaker, false_alarm_speakers=total.falarm_speaker)
    rate = counts["errors"] / counts["length"] if counts["length"] else float("inf") if counts["errors"] else 0.0
    return SpeakerAttributedRate(rate, counts["errors"], counts["length"], counts["substitutions"], counts["deletions"],
                                 counts["insertions"], counts["missed_speakers"], counts["false_alarm_speakers"])


@dataclass(frozen=True)
class DiarizationError:
    rate: float
    missed: float          # seconds of speech not attributed
    false_alarm: float     # seconds attributed where nobody spoke
    confusion: float       # seconds attributed to the wrong speaker
    total: float           # seconds of reference speech


def diarization_error_rate(reference: list[dict], hypothesis: list[dict], collar: float = 0.0) -> DiarizationError:
    """DER through pyannote.metrics (overlap scored). Segments need session_id, speaker, start_time, end_time."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotations(segments):
        by_session: dict[str, Annotation] = {}
        for s in segments:
            annotation = by_session.setdefault(s["session_id"], Annotation(uri=s["session_id"]))
            annotation[Segment(s["start_time"], s["end_time"]), len(annotation)] = s["speaker"]
        return by_session

    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    refs, hyps = annotations(reference), annotations(hypothesis)
    for session, ref in refs.items():
        hyp = hyps.get(session, Annotation(uri=session))
        end = max(segment.end for annotation in (ref, hyp) for segment in annotation.get_timeline())
        metric(ref, hyp, uem=Timeline([Segment(0, end)]), detailed=True)  # scored region: the whole session
    totals = {key: metric[key] for key in ("missed detection", "false alarm", "confusion", "total")}
    return DiarizationError(abs(metric), totals["missed detection"], totals["false alarm"], totals["confusion"],
                            totals["total"])


def rtfx(audio_seconds: float, processing_seconds: float) -> float:
    """Inverse real-time factor, as the OpenASR leaderboard reports it: seconds of audio per second of compute."""
    if processing_seconds <= 0:
        raise ValueError("processing time must be positive")
    return audio_seconds / processing_seconds
