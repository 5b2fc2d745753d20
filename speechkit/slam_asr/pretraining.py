"""Pretraining the kit's own speech LLM (the `pretrain` profile): a recipe chosen by a measured proxy, then the long
run whose stage checkpoints every later method starts from, as the papers start from pretrained checkpoints.

The proxy trains each recipe variant for the same short step budget on the same batches and records a curve of dev
loss (every `eval_every` steps) and greedy dev WER (at the start, every `wer_every` steps and at the end), so the
variants can be compared by their curves before the long run is spent on one. A variant is a set of overrides of
`StageSetup` (model and stage options) and `TrainConfig` fields; unknown names are an error. Each variant's curve is
written as CSV beside its checkpoint at every evaluation; a variant whose curve reached its last step is not
retrained, and an interrupted one resumes from its training state. Variants can train side by side in `workers`
processes of one thread each (on a 2-core CPU, two at a time take half the wall time of one after the other).
"""

from __future__ import annotations

import csv
import dataclasses
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from speechkit.core.fileio import atomic_open
from speechkit.core.results import Metric
from speechkit.data.audio import load_utterance
from speechkit.data.manifest import read_manifest
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.encoder_cache import EncoderCache
from speechkit.engine.recipes import CHECKPOINT, examples
from speechkit.engine.training import TrainConfig
from speechkit.models.speech_llm import Example, SpeechLLM
from speechkit.slam_asr.stages import ENCODER_CACHE, StageSetup, build, evaluate_speech_llm, train_stage

CURVE_FILE = "proxy_curve.csv"


@dataclass(frozen=True)
class CurvePoint:
    step: int
    dev_loss: float
    dev_wer: float | None = None       # greedy decoding, at the steps `wer_every` chooses


@dataclass(frozen=True)
class ProxyConfig:
    variants: dict[str, dict]           # name -> overrides of StageSetup / TrainConfig fields ({} is the base recipe)
    eval_every: int = 25                # dev loss every N steps (and at step 0 and the end)
    wer_every: int = 0                  # greedy dev WER (and dev loss) every N steps (0: at step 0 and the end only)
    eval_manifest: str = "source_dev"
    eval_utterances: int = 32           # the first N utterances of `eval_manifest`
    max_new_tokens: int = 64

    def __post_init__(self):
        if not self.variants:
            raise ValueError("the proxy needs at least one variant")
        known = {f.name for f in fields(StageSetup)} | {f.name for f in fields(TrainConfig)}
        for name, overrides in self.variants.items():
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ValueError(f"variant {name!r}: {unknown} are not options of StageSetup or TrainConfig")
        if self.eval_every < 1 or self.wer_every < 0 or self.eval_utterances < 1:
            raise ValueError(f"eval_every and eval_utterances must be >= 1, wer_every >= 0: {self}")


def variant_configs(setup: StageSetup, train_config: TrainConfig,
                    overrides: dict) -> tuple[StageSetup, TrainConfig]:
    """The base configurations with a variant's overrides, each name applied where it belongs."""
    setup_names = {f.name for f in fields(StageSetup)}
    return (dataclasses.replace(setup, **{k: v for k, v in overrides.items() if k in setup_names}),
            dataclasses.replace(train_config, **{k: v for k, v in overrides.items() if k not in setup_names}))


def write_curve(path: str | Path, curve: Sequence[CurvePoint]) -> None:
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["step", "dev_loss", "dev_wer"])
        for point in curve:
            writer.writerow([point.step, point.dev_loss, "" if point.dev_wer is None else point.dev_wer])


def read_curve(path: str | Path) -> list[CurvePoint]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as handle:
        return [CurvePoint(int(r["step"]), float(r["dev_loss"]), float(r["dev_wer"]) if r["dev_wer"] else None)
                for r in csv.DictReader(handle)]


@torch.no_grad()
def dev_loss(model: SpeechLLM, setup: StageSetup, items: Sequence[Example], batch: int = 16) -> float:
    """Mean per-token loss of the dev examples (the stage's own loss, prompt excluded), in eval mode."""
    training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        loss, _ = model.loss(chunk, dataclasses.replace(setup.spec, ctc_weight=0.0))
        total, count = total + loss.item() * len(chunk), count + len(chunk)
    model.train(training)
    return total / count


def run_variant(setup: StageSetup, train_config: TrainConfig, proxy: ProxyConfig, data_dir: str | Path,
                folder: str | Path, progress: bool = True) -> list[CurvePoint]:
    """Train one variant for `train_config.max_steps` steps from a new model, evaluating as `proxy` says; returns
    its curve (also in `folder/proxy_curve.csv`)."""
    folder, data_dir = Path(folder), Path(data_dir)
    curve_file = folder / CURVE_FILE
    points = {p.step: p for p in read_curve(curve_file)}
    if train_config.max_steps in points:
        return sorted(points.values(), key=lambda p: p.step)  # finished by an earlier run
    model = build(setup, folder)
    model.start_stage(setup.spec)
    utterances = read_manifest(data_dir / f"{proxy.eval_manifest}.jsonl")[:proxy.eval_utterances]
    audios = [load_utterance(u, data_dir) for u in utterances]
    dev = examples(utterances, audios, with_targets=True)
    if setup.encoder_cache and model.encoder_frozen:
        frames = EncoderCache(data_dir / ENCODER_CACHE, model).frames(model, utterances, audios)
        dev = [dataclasses.replace(e, frames=f) for e, f in zip(dev, frames, strict=True)]
    decoding = DecodingConfig(max_new_tokens=proxy.max_new_tokens)
    eval_setup = dataclasses.replace(setup, eval_limit=proxy.eval_utterances)

    def evaluate(step: int, final: bool = False) -> None:
        scored = final or step == 0 or bool(proxy.wer_every and step % proxy.wer_every == 0)
        if step in points or not (scored or step % proxy.eval_every == 0):
            return
        wer = None
        if scored:
            training = model.training
            [result] = evaluate_speech_llm(model, eval_setup, data_dir, [proxy.eval_manifest], decoding)
            model.train(training)
            wer = result.wer.rate
        points[step] = CurvePoint(step, dev_loss(model, setup, dev), wer)
        write_curve(curve_file, sorted(points.values(), key=lambda p: p.step))

    log = train_stage(model, setup, train_config, data_dir, folder / CHECKPOINT, progress, on_step=evaluate)
    evaluate(log.steps, final=True)
    return sorted(points.values(), key=lambda p: p.step)


def _variant_job(args) -> list[CurvePoint]:
    setup, train_config, proxy, data_dir, folder = args
    torch.set_num_threads(1)  # one thread per process: oversubscribed cores made training 10-35x slower
    return run_variant(setup, train_config, proxy, data_dir, folder, progress=False)


def run_variants(setup: StageSetup, train_config: TrainConfig, proxy: ProxyConfig, data_dir: str | Path,
                 folder: str | Path, workers: int = 1) -> dict[str, list[CurvePoint]]:
    """Every variant's curve (variant i in `folder/variant_i`), trained in `workers` processes (1: in this one)."""
    jobs = [(*variant_configs(setup, train_config, overrides), proxy, Path(data_dir), Path(folder) / f"variant_{i}")
            for i, overrides in enumerate(proxy.variants.values())]
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if workers == 1:
        curves = [run_variant(*job) for job in jobs]
    else:  # spawn, not fork: the kernel holds threads and a loaded tokenizer that fork would copy badly
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            curves = pool.map(_variant_job, jobs, chunksize=1)
    return dict(zip(proxy.variants, curves, strict=True))


def proxy_metrics(curves: dict[str, Sequence[CurvePoint]]) -> list[Metric]:
    """Each variant's last dev loss and dev WER (the numbers the curves end on)."""
    metrics = []
    for name, curve in curves.items():
        last = curve[-1]
        metrics.append(Metric(f"{name}: dev loss at step {last.step}", round(last.dev_loss, 4), unit="nats"))
        if last.dev_wer is not None:
            metrics.append(Metric(f"{name}: dev WER at step {last.step}", last.dev_wer, unit="rate"))
    return metrics


def plot_proxy(curves: dict[str, Sequence[CurvePoint]], title: str = "recipe proxy") -> plt.Figure:
    """Dev loss and greedy dev WER against training steps, one line per variant."""
    figure, (loss_axis, wer_axis) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, curve in curves.items():
        loss_axis.plot([p.step for p in curve], [p.dev_loss for p in curve], marker=".", label=name)
        scored = [p for p in curve if p.dev_wer is not None]
        wer_axis.plot([p.step for p in scored], [100 * p.dev_wer for p in scored], marker="o", label=name)
    loss_axis.set(xlabel="training step", ylabel="dev loss (nats/token)", title=f"{title}: dev loss")
    wer_axis.set(xlabel="training step", ylabel="greedy dev WER (%)", title=f"{title}: dev WER")
    wer_axis.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    loss_axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
