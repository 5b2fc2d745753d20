"""Evaluating any transcriber on benchmark manifests: error rates per (manifest, language), hypotheses, RTFx."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from speechkit.core.claims import group_name
from speechkit.core.fileio import write_jsonl
from speechkit.core.results import Metric, name_list
from speechkit.core.text import normaliser_for
from speechkit.data.audio import load_utterance
from speechkit.data.features import length_batches
from speechkit.data.manifest import Utterance, read_manifest
from speechkit.data.textgen import TARGET_DOMAINS
from speechkit.metrics.scoring import ErrorRate, entity_error_rate, error_rate, paired_difference, rtfx

# A transcriber takes a batch of utterances with their audio and returns one transcript per utterance.
Transcriber = Callable[[Sequence[Utterance], Sequence[np.ndarray]], list[str]]


@dataclass(frozen=True)
class SystemResult:
    manifest: str
    language: str
    wer: ErrorRate                     # CER for the character languages
    entity_wer: ErrorRate | None       # where the references have entity spans
    ids: tuple[str, ...]
    references: tuple[str, ...]
    hypotheses: tuple[str, ...]
    audio_seconds: float
    decode_seconds: float

    @property
    def rtfx(self) -> float:
        return rtfx(self.audio_seconds, self.decode_seconds)


def transcribe_all(transcribe: Transcriber, utterances: Sequence[Utterance], audio: Callable[[Utterance], np.ndarray],
                   batch_seconds: float = 120.0, max_batch: int = 32, progress: bool = False,
                   desc: str = "transcribing") -> list[str]:
    """Every utterance's transcript, decoded in length-sorted batches (`audio(u)` reads one), in utterance order."""
    hypotheses = [""] * len(utterances)
    batches = length_batches([u.duration for u in utterances], batch_seconds, max_batch, rng=None)
    for indices in tqdm(batches, desc=desc, unit="batch", disable=not progress):
        batch = [utterances[i] for i in indices]
        for i, text in zip(indices, transcribe(batch, [audio(u) for u in batch]), strict=True):
            hypotheses[i] = text
    return hypotheses


def evaluate(transcribe: Transcriber, data_dir: str | Path, manifests: Sequence[str], batch_seconds: float = 120.0,
             max_batch: int = 32, limit: int = 0) -> list[SystemResult]:
    """Transcribe each manifest in length-sorted batches (its first `limit` utterances if `limit`) and score it."""
    data_dir = Path(data_dir)
    results = []
    for name in name_list(manifests, "manifests"):
        utterances = read_manifest(data_dir / f"{name}.jsonl")
        utterances = utterances[:limit] if limit else utterances
        started = time.perf_counter()
        hypotheses = transcribe_all(transcribe, utterances, lambda u: load_utterance(u, data_dir), batch_seconds,
                                    max_batch)
        results += score(name, utterances, hypotheses, time.perf_counter() - started)
    return results


def score(manifest: str, utterances: Sequence[Utterance], hypotheses: Sequence[str],
          seconds: float = 0.0) -> list[SystemResult]:
    """Score one system's transcripts of a manifest's utterances, one result per language (`seconds`: the time it
    took, shared out by audio duration)."""
    results = []
    total_audio = sum(u.duration for u in utterances)
    for language in sorted({u.language for u in utterances}):
        chosen = [i for i, u in enumerate(utterances) if u.language == language]
        refs = [utterances[i].text for i in chosen]
        hyps = [hypotheses[i] for i in chosen]
        entities = [utterances[i].entities for i in chosen]
        normaliser = normaliser_for(language)
        audio = sum(utterances[i].duration for i in chosen)
        results.append(SystemResult(
            manifest, language, error_rate(refs, hyps, normaliser),
            entity_error_rate(refs, entities, hyps, normaliser) if any(entities) else None,
            tuple(utterances[i].id for i in chosen), tuple(refs), tuple(hyps), audio,
            seconds * audio / total_audio))
    return results


def result_metrics(results: Sequence[SystemResult], prefix: str = "", claim: str | None = None) -> list[Metric]:
    """WER (CER for ja/ko) and entity WER with 95% intervals, one row per (manifest, language)."""
    metrics = []
    for r in results:
        kind = "CER" if r.wer.unit == "character" else "WER"
        metrics.append(Metric(f"{prefix}{kind} {group_name(r.manifest, r.language)}", r.wer.rate,
                              r.wer.interval.low, r.wer.interval.high, unit="rate", claim=claim))
        if r.entity_wer is not None:
            metrics.append(Metric(f"{prefix}entity WER {group_name(r.manifest, r.language)}", r.entity_wer.rate,
                                  r.entity_wer.interval.low, r.entity_wer.interval.high, unit="rate"))
    return metrics


def difference_name(name: str, manifest: str, language: str, kind: str = "WER", prefix: str = "",
                    relative: bool = False) -> str:
    """The row `difference_metrics` writes for one (manifest, language): what a claim reads it by."""
    return f"{prefix}{kind}{' relative change,' if relative else ''} {name} {group_name(manifest, language)}"


def difference_metrics(baseline: Sequence[SystemResult], system: Sequence[SystemResult], name: str,
                       prefix: str = "", relative: bool = False, claim: str | None = None) -> list[Metric]:
    """Paired differences, system minus baseline, of WER and (where scored) entity WER on every (manifest, language)
    both were scored on: rows `{prefix}{kind} {name} {manifest} [{language}]`, and with `relative` also
    `{prefix}{kind} relative change, {name} ...` (difference and interval over the baseline's rate; `claim` is
    attached to these rows); `difference_name` gives each row's name."""
    by_key = {(r.manifest, r.language): r for r in baseline}
    metrics = []
    for b in system:
        a = by_key.get((b.manifest, b.language))
        if a is None:
            continue
        for kind, x, y in [("WER", a.wer, b.wer), ("entity WER", a.entity_wer, b.entity_wer)]:
            if x is None or y is None:
                continue
            d = paired_difference(x, y)
            metrics.append(Metric(difference_name(name, b.manifest, b.language, kind, prefix), d.difference,
                                  d.interval.low, d.interval.high, unit="rate"))
            if relative and x.rate:
                metrics.append(Metric(difference_name(name, b.manifest, b.language, kind, prefix, relative=True),
                                      d.relative, d.interval.low / x.rate, d.interval.high / x.rate, unit="rate",
                                      claim=claim))
    return metrics


# The papers' operating point, what the real Whisper's calibration is read against.
OPERATING_POINT = {"source": "source domain: 4-15% WER",
                   "target": "target domains: 8-30% WER, entity WER at least twice the domain's WER"}


def calibration_metrics(results: Sequence[SystemResult]) -> list[Metric]:
    """The real Whisper's WER (CER) and entity WER per test set, and the ratio entity WER / WER on target sets."""
    metrics = []
    for r in results:
        group = r.manifest.split("_")[0]
        claim = OPERATING_POINT["target" if group in TARGET_DOMAINS else "source"] if group != "multilingual" else None
        metrics += result_metrics([r], prefix="calibration Whisper ", claim=claim)
        if r.entity_wer is not None and r.wer.rate > 0:
            metrics.append(Metric(f"calibration Whisper entity WER / WER {r.manifest} [{r.language}]",
                                  round(r.entity_wer.rate / r.wer.rate, 2), unit="x", claim=claim))
    return metrics


def hypotheses_by_id(results: Sequence[SystemResult]) -> dict[str, str]:
    """One system's transcripts, by utterance id (e.g. for `speechkit.ui.widgets.AudioBrowser`)."""
    return {i: hypothesis for r in results for i, hypothesis in zip(r.ids, r.hypotheses, strict=True)}


def save_hypotheses(path: str | Path, results: Sequence[SystemResult]) -> None:
    """One JSONL row per utterance: id, manifest, language, reference, hypothesis."""
    write_jsonl(path, ({"id": i, "manifest": r.manifest, "language": r.language, "reference": ref, "hypothesis": hyp}
                       for r in results for i, ref, hyp in zip(r.ids, r.references, r.hypotheses, strict=True)))


def plot_error_rates(systems: dict[str, Sequence[SystemResult]], title: str = "error rate") -> plt.Figure:
    """Grouped bars: one group per (manifest, language), one bar per system, 95% intervals as error bars."""
    keys = list(dict.fromkeys(f"{r.manifest} [{r.language}]" for rs in systems.values() for r in rs))
    figure, axes = plt.subplots(figsize=(max(6, 1.2 * len(keys) * len(systems) ** 0.5), 4))
    width = 0.8 / max(1, len(systems))
    for s, (name, results) in enumerate(systems.items()):
        by_key = {f"{r.manifest} [{r.language}]": r for r in results}
        xs = [k + s * width for k, key in enumerate(keys) if key in by_key]
        rates = [100 * by_key[key].wer.rate for key in keys if key in by_key]
        low = [100 * (by_key[key].wer.rate - by_key[key].wer.interval.low) for key in keys if key in by_key]
        high = [100 * (by_key[key].wer.interval.high - by_key[key].wer.rate) for key in keys if key in by_key]
        axes.bar(xs, rates, width, yerr=[low, high], capsize=3, label=name)
    axes.set_xticks([k + width * (len(systems) - 1) / 2 for k in range(len(keys))], keys, rotation=30, ha="right")
    axes.set(ylabel="WER / CER (%)", title=title)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    figure.tight_layout()
    return figure
