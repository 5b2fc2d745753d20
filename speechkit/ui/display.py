"""What notebooks show: tables, plots and playable audio (built here so notebooks stay thin)."""

from __future__ import annotations

import base64
import html
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from speechkit.core.results import Metric, format_value
from speechkit.core.text import normaliser_for
from speechkit.data.audio import load_utterance, wav_bytes
from speechkit.data.manifest import Utterance, read_manifest
from speechkit.engine.training import TrainLog, read_log
from speechkit.metrics.scoring import aligned_units, entity_error_rate


def audio_tag(audio: np.ndarray) -> str:
    """An HTML <audio> element with the waveform embedded, so it plays in JupyterLab, saved notebooks and Voila."""
    data = base64.b64encode(wav_bytes(audio)).decode("ascii")
    return f'<audio controls preload="none" src="data:audio/wav;base64,{data}"></audio>'


def utterance_table(utterances: Sequence[Utterance], root: str | Path, columns: Sequence[str] = ()) -> str:
    """HTML table of utterances with their audio, transcript and chosen extra columns (taken from `meta` or fields)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("id", "audio", "transcript", *columns))
    rows = []
    for utterance in utterances:
        extra = [utterance.meta.get(c, getattr(utterance, c, "")) for c in columns]
        cells = [html.escape(utterance.id), audio_tag(load_utterance(utterance, root)),
                 html.escape(utterance.text or "(unlabeled)"), *(html.escape(str(e)) for e in extra)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def samples_by(utterances: Sequence[Utterance], key, per_group: int = 1) -> list[Utterance]:
    """The first `per_group` utterances of each distinct value of key(utterance), in order of appearance."""
    chosen: dict[object, list[Utterance]] = {}
    for utterance in utterances:
        group = chosen.setdefault(key(utterance), [])
        if len(group) < per_group:
            group.append(utterance)
    return [u for group in chosen.values() for u in group]


def metrics_table(metrics: Sequence[Metric]) -> str:
    rows = "".join(f"<tr><td>{html.escape(m.name)}</td><td>{html.escape(format_value(m))}</td></tr>"
                   for m in metrics)
    return f"<table><thead><tr><th>metric</th><th>value [95% CI]</th></tr></thead><tbody>{rows}</tbody></table>"


def plot_benchmark(root: str | Path) -> plt.Figure:
    """Durations per group, hours per manifest, and the speaker timeline of the first test conversation."""
    root = Path(root)
    groups = {"source": "source_train", "medical": "medical_test", "finance": "finance_test",
              "multilingual": "multilingual_train", "conversation turns": "conversation_turns_train"}
    manifests = {name: read_manifest(root / f"{name}.jsonl", check_audio=False)
                 for name in sorted(p.stem for p in root.glob("*.jsonl")
                                    if p.stem != "text_corpus" and not p.stem.startswith("conversations_")
                                    and not p.stem.endswith("_reference"))}
    figure, (durations, hours, timeline) = plt.subplots(1, 3, figsize=(16, 4))
    for label, name in groups.items():
        values = [u.duration for u in manifests.get(name, [])]
        if values:
            durations.hist(values, bins=30, alpha=0.5, label=label)
    durations.set(title="utterance durations", xlabel="seconds", ylabel="utterances")
    durations.legend(fontsize=8)
    names = list(manifests)
    hours.barh(names, [sum(u.duration for u in manifests[n]) / 3600 for n in names])
    hours.set(title="audio per manifest", xlabel="hours")
    hours.tick_params(axis="y", labelsize=7)
    turns = manifests.get("conversation_turns_test", [])
    first = [t for t in turns if turns and t.conversation == turns[0].conversation]
    speakers = sorted({t.speaker for t in first})
    for turn in first:
        timeline.barh(speakers.index(turn.speaker), turn.duration, left=turn.offset, alpha=0.7)
    timeline.set(title=f"who speaks when: {first[0].conversation}" if first else "no conversation",
                 xlabel="seconds", yticks=range(len(speakers)), yticklabels=speakers)
    figure.tight_layout()
    return figure


def plot_training(log) -> plt.Figure:
    """Loss curve (with its named parts) and learning rate of a `training.TrainLog` or of its CSV file."""
    if not isinstance(log, TrainLog):
        log = read_log(log)
    figure, (losses, rates) = plt.subplots(1, 2, figsize=(12, 3.5))
    losses.plot(log.step, log.loss, label="loss")
    for name in (log.parts[0] if log.parts else {}):
        losses.plot(log.step, [p[name] for p in log.parts], label=name, alpha=0.6)
    losses.set(xlabel="step", ylabel="loss", title="training loss", yscale="log")
    losses.legend()
    rates.plot(log.step, log.learning_rate)
    rates.set(xlabel="step", ylabel="learning rate", title="schedule")
    figure.tight_layout()
    return figure


def highlight_entities(utterance: Utterance) -> str:
    """The transcript as HTML with each entity span marked (its type as the tooltip)."""
    text, pieces, at = utterance.text or "", [], 0
    for span in sorted(utterance.entities, key=lambda span: span.start):
        pieces += [html.escape(text[at:span.start]),
                   f'<mark title="{html.escape(span.label)}">{html.escape(text[span.start:span.end])}</mark>']
        at = span.end
    return "".join(pieces) + html.escape(text[at:])


def entity_errors(utterance: Utterance, hypothesis: str) -> str:
    """"entity words: k of n wrong" for one hypothesis of a transcript with entities ("" without them)."""
    if not utterance.entities or not utterance.text:
        return ""
    counts = entity_error_rate([utterance.text], [utterance.entities], [hypothesis],
                               normaliser_for(utterance.language), resamples=1).counts  # one utterance: no interval
    return f"entity words: {counts.errors} of {counts.reference_length} wrong"


def highlight_errors(reference: str, hypothesis: str, language: str) -> str:
    """The hypothesis as HTML (normalised as scored): substitutions in red with the reference word struck through
    beside them, insertions underlined in orange, deleted reference words struck through in grey."""
    pieces = []
    for operation, ref, hyp in aligned_units(reference, hypothesis, normaliser_for(language)):
        ref, hyp = html.escape(ref), html.escape(hyp)
        if operation == "equal":
            pieces.append(hyp)
        elif operation == "substitute":
            pieces.append(f'<span style="color:#c00" title="reference: {ref}">{hyp}</span> <s style="color:#888">'
                          f"{ref}</s>")
        elif operation == "insert":
            pieces.append(f'<u style="color:#d60">{hyp}</u>')
        else:
            pieces.append(f'<s style="color:#888">{ref}</s>')
    return " ".join(pieces) or "<i>(empty)</i>"


def plot_rewards(log, title: str = "rewards during RL") -> plt.Figure:
    """Each reward's mean over the rollouts per logged step (the `reward <name>` parts a `grpo.GRPOStep` logs), and
    beside it the KL to the reference model where the loop logged it (`beta` > 0)."""
    if not isinstance(log, TrainLog):
        log = read_log(log)
    parts = log.parts[0] if log.parts else {}
    figure, axes = plt.subplots(1, 2 if "kl" in parts else 1, figsize=(11 if "kl" in parts else 7, 3.5),
                                squeeze=False)
    for name in [k for k in parts if k.startswith("reward ")]:
        axes[0, 0].plot(log.step, [p[name] for p in log.parts], label=name.removeprefix("reward "))
    axes[0, 0].set(xlabel="step", ylabel="mean over the rollouts", title=title)
    axes[0, 0].legend(fontsize=8)
    if "kl" in parts:
        axes[0, 1].plot(log.step, [p["kl"] for p in log.parts])
        axes[0, 1].set(xlabel="step", ylabel="KL per token", title="distance from the reference model")
    figure.tight_layout()
    return figure


VERDICT_COLOURS = {"reproduced": "#2a7", "not reproduced": "#c33", "inconclusive": "#888", "not measured": "#ccc"}


def plot_claims(results) -> plt.Figure:
    """One row per claim (`claims.Verdict`): the measured system-minus-baseline difference with its 95% interval,
    coloured by verdict, and the paper's difference as a diamond where the paper gives one. Points for absolute
    claims, percent for relative ones (marked "rel.")."""
    figure, axes = plt.subplots(figsize=(10, 0.45 * len(results) + 1.2))
    for y, v in enumerate(reversed(results)):
        colour = VERDICT_COLOURS[v.verdict]
        if v.value is not None:
            axes.errorbar(100 * v.value, y, xerr=[[100 * (v.value - v.low)], [100 * (v.high - v.value)]], fmt="o",
                          color=colour, capsize=3)
        if v.claim.paper_difference is not None:
            axes.plot(100 * v.claim.paper_difference, y, "D", color="k", fillstyle="none", markersize=7)
    labels = [textwrap.shorten(v.claim.statement, 70, placeholder=" ...")
              + (" (rel.)" if v.claim.unit == "relative" else "") for v in reversed(results)]
    axes.set_yticks(range(len(results)), labels, fontsize=8)
    axes.axvline(0, color="k", linewidth=0.8)
    axes.plot([], [], "D", color="k", fillstyle="none", label="paper")
    for verdict, colour in VERDICT_COLOURS.items():
        axes.plot([], [], "o", color=colour, label=f"measured: {verdict}")
    axes.set(xlabel="system - baseline (WER points, or % relative); left of 0 = system better",
             title="paper claims: measured vs paper")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return figure


def plot_rates(rates: dict, title: str, paper: dict[str, float] | None = None) -> plt.Figure:
    """Bars of error rates (`scoring.ErrorRate` by label) with their 95% intervals, and the paper's figure for a label
    as a diamond beside its bar where the paper gives one (its own system and data: a reference point, not a target)."""
    figure, axes = plt.subplots(figsize=(max(4.5, 1.3 * len(rates)), 3.5))
    labels = list(rates)
    values = [100 * rates[k].rate for k in labels]
    errors = [[100 * (rates[k].rate - rates[k].interval.low) for k in labels],
              [100 * (rates[k].interval.high - rates[k].rate) for k in labels]]
    axes.bar(range(len(labels)), values, yerr=errors, capsize=4, color="#69c", label="measured")
    marked = [(i, 100 * paper[k]) for i, k in enumerate(labels) if paper and k in paper]
    if marked:
        axes.plot(*zip(*marked), "D", color="k", fillstyle="none", markersize=8, label="paper")
    axes.set_xticks(range(len(labels)), labels)
    axes.set(ylabel="WER (%)", title=title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure
