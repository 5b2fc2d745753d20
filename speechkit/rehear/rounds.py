"""One ReHear round (seed 000), the steps notebook 20 runs in order:

1. `prepare_refiners`: round 1 trains the audio-aware refiner and its text-only ablation on labeled source data;
   later rounds take round 1's;
2. `label_pool`: each system's current ASR transcribes the unlabeled pool, the refiners rewrite its hypotheses, the
   filter keeps the labels it trusts (the pool's references are read only to measure them);
3. `adapt_asrs`: each system's ASR is fine-tuned on its labels plus the replayed source data, saved and scored.

A round's folder holds what round k + 1 continues: `refiners/<system>` (round 1) and `asr/<system>`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
from transformers import PreTrainedTokenizerFast

from speechkit.core.results import Metric, name_list
from speechkit.data.manifest import Utterance, read_manifest
from speechkit.engine.adaptation import DECODER, Labeled, finetune, pool_label_error, read_pool, transcribe_pool
from speechkit.engine.evaluation import SystemResult, difference_metrics, evaluate, result_metrics, save_hypotheses
from speechkit.engine.recipes import resolve_checkpoint
from speechkit.engine.training import TrainConfig, training_metrics
from speechkit.models import asr as whisper
from speechkit.models.freezing import freeze_except
from speechkit.models.speech_llm import STAGES, SpeechLLM
from speechkit.rehear.claims import rehear_minus, round_prefix
from speechkit.rehear.refinement import FILTERS, Refinement, refine, train_refiner

SYSTEMS = ("supervised", "pseudo-labels", "text-only refiner", "ReHear", "oracle")
# later rounds continue the systems whose labels change (supervised and oracle would only train more)
LATER_ROUND_SYSTEMS = ("pseudo-labels", "text-only refiner", "ReHear")
REFINERS = {"ReHear": True, "text-only refiner": False}  # the refining systems, and whether their refiner hears
BASELINES = ("pseudo-labels", "text-only refiner", "supervised")  # what ReHear's ASR is compared with
REFINER_STAGE = STAGES[3]  # the refiner keeps stage 3's format: LoRA, tagged output
REFINERS_DIR, ASR_DIR, CHECKPOINTS_DIR = "refiners", "asr", "checkpoints"
TRAINED_IN = "trained_in.txt"  # in a later round's refiners/: the stage folder that trained them (round 1's)


@dataclass(frozen=True)
class ReHearConfig:
    """A ReHear round's options (seed 000): the round, the models, the data, the filter on refined labels, and the
    refiners' and the ASRs' training."""
    round: int = 1                        # the pseudo-label round
    previous_round: str = ""              # round k > 1: the stage of round k - 1, whose ASRs and refiners continue
    asr: str = "pkg:whisper-tiny.en"      # round 1's ASR: a packaged model, a path, or a hub id
    refiner: str = "published:stage3"     # round 1's refiners start from this speech LLM (published, a stage, a path)
    domain: str = "medical"               # the target domain: its <domain>_pool, _pool_reference and test manifests
    filter: str = "agreement"             # which refined labels are kept: one of FILTERS (see `refine`)
    max_change: float = 0.5               # agreement: at most this WER between hypothesis and refinement
    min_score: float = -1.0               # confidence: at least this mean log-probability per token
    pool_limit: int = 0                   # pool utterances used (0: all)
    eval_limit: int = 0                   # utterances per scored manifest (0: all)
    eval_splits: tuple[str, ...] = ("test",)  # the domain's labeled splits each system is scored on
    source_manifest: str = "source_train"  # labeled source data: the refiners' training data and the ASRs' replay
    source_limit: int = 16                # source utterances used for both (0: all)
    refiner_learning_rate: float = 0.0005
    refiner_steps: int = 2                # refiner training steps (round 1; later rounds keep its refiners)
    asr_train: tuple[str, ...] = DECODER  # regexes of the ASR parameters that adapt
    learning_rate: float = 1e-5           # the ASRs'
    warmup_steps: int = 2                 # the refiners' and the ASRs'
    max_steps: int = 2                    # ASR fine-tuning steps, the same for every system
    max_batch: int = 8                    # utterances per ASR fine-tuning batch
    checkpoint_minutes: float = 10.0      # training state saved this often (a stopped round resumes)
    seed: int = 0                         # the order of the training batches

    def __post_init__(self):
        if self.filter not in FILTERS:
            raise ValueError(f"unknown filter {self.filter!r}; choose one of {', '.join(FILTERS)}")
        if self.round < 1:
            raise ValueError(f"round must be 1 or more, got {self.round}")
        if (self.round > 1) != bool(self.previous_round):
            raise ValueError(f"round {self.round} with previous_round {self.previous_round!r}: round 1 starts from "
                             "the pretrained models (no previous_round), round k > 1 names the stage of round k - 1")
        if self.max_change < 0 or self.source_limit < 0 or self.refiner_steps < 1 or self.refiner_learning_rate <= 0:
            raise ValueError(f"max_change >= 0, source_limit >= 0, refiner_steps >= 1 and refiner_learning_rate > 0 "
                             f"needed: {self}")
        for name in ("eval_splits", "asr_train"):  # notebooks give lists; frozen, so set the tuples
            object.__setattr__(self, name, name_list(getattr(self, name), name))

    @property
    def systems(self) -> tuple[str, ...]:
        return SYSTEMS if self.round == 1 else LATER_ROUND_SYSTEMS

    @property
    def test_manifests(self) -> list[str]:
        return [f"{self.domain}_{split}" for split in self.eval_splits]

    @property
    def refiner_training(self) -> TrainConfig:
        return TrainConfig(learning_rate=self.refiner_learning_rate, warmup_steps=self.warmup_steps,
                           max_steps=self.refiner_steps, log_every=max(1, self.refiner_steps // 10),
                           checkpoint_minutes=self.checkpoint_minutes, seed=self.seed)

    @property
    def asr_training(self) -> TrainConfig:
        return TrainConfig(learning_rate=self.learning_rate, warmup_steps=self.warmup_steps,
                           max_steps=self.max_steps, log_every=max(1, self.max_steps // 10),
                           checkpoint_minutes=self.checkpoint_minutes, seed=self.seed)


def folder_name(system: str) -> str:
    return system.replace(" ", "_")


def previous_stage(config: ReHearConfig, output_dir: Path) -> Path | None:
    """The folder of round k - 1 (beside this round's), None in round 1."""
    return output_dir.parent / config.previous_round if config.previous_round else None


def starting_asr(config: ReHearConfig, system: str,
                 output_dir: Path) -> tuple[whisper.WhisperASR, PreTrainedTokenizerFast]:
    """Round 1: the pretrained ASR; round k: the system's ASR after round k - 1."""
    previous = previous_stage(config, output_dir)
    return whisper.load_asr(config.asr if previous is None else str(previous / ASR_DIR / folder_name(system)))


def source_utterances(config: ReHearConfig, data_dir: Path) -> list[Utterance]:
    return read_manifest(data_dir / f"{config.source_manifest}.jsonl")[:config.source_limit or None]


@dataclass(frozen=True)
class Refiners:
    models: dict[str, SpeechLLM]  # by refining system (REFINERS)
    metrics: list[Metric]         # round 1: each refiner's training steps and minutes


def refiners_folder(stage_dir: Path) -> Path:
    """The refiners a round used: saved in its own folder (round 1), or where its `TRAINED_IN` points (round k)."""
    pointer = stage_dir / REFINERS_DIR / TRAINED_IN
    trained_in = stage_dir.parent / pointer.read_text().strip() if pointer.is_file() else stage_dir
    return trained_in / REFINERS_DIR


def prepare_refiners(config: ReHearConfig, data_dir: Path, output_dir: Path) -> Refiners:
    """Round 1: both refiners trained from `config.refiner` on the source data and the pretrained ASR's hypotheses
    of it (saved in `refiners/`); round k: round k - 1's."""
    previous = previous_stage(config, output_dir)
    if previous is not None:
        trained = refiners_folder(previous)
        (output_dir / REFINERS_DIR).mkdir(parents=True, exist_ok=True)
        (output_dir / REFINERS_DIR / TRAINED_IN).write_text(trained.parent.name)  # round k + 1 finds them through it
        return Refiners({name: SpeechLLM.load(trained / folder_name(name)) for name in REFINERS}, [])
    source = source_utterances(config, data_dir)
    hypotheses = [nbest[0].text for nbest in transcribe_pool(*whisper.load_asr(config.asr), source, data_dir,
                                                               desc="source 1-best")]
    models, metrics = {}, []
    for name, audio_aware in REFINERS.items():
        model = SpeechLLM.load(resolve_checkpoint(config.refiner, output_dir))
        model.start_stage(REFINER_STAGE)
        log = train_refiner(model, REFINER_STAGE, source, hypotheses, data_dir, config.refiner_training,
                            output_dir / REFINERS_DIR / folder_name(name), audio_aware=audio_aware)
        metrics += training_metrics(log, f"{name} refiner ")
        models[name] = model
    return Refiners(models, metrics)


@dataclass(frozen=True)
class PoolLabels:
    labels: dict[str, list[Labeled]]            # by system: what its ASR is fine-tuned on besides the source replay
    refinements: dict[str, list[Refinement]]    # by refining system: every pool utterance's, kept or not
    metrics: list[Metric]                       # labels kept, and their WER against the pool's references


def label_pool(config: ReHearConfig, refiners: Refiners, data_dir: Path, output_dir: Path) -> PoolLabels:
    """Each system's labels of the pool: none (supervised), the gold transcripts (oracle), its current ASR's
    hypotheses (pseudo-labels), or their refinements that the filter keeps (the two refiners)."""
    pool = read_pool(data_dir, f"{config.domain}_pool", config.pool_limit)
    references = f"{config.domain}_pool_reference"
    labels, refinements, hypotheses, metrics = {}, {}, {}, []
    for system in config.systems:
        if system == "supervised":
            labels[system] = []
            continue
        if system == "oracle":
            gold = {u.id: u.text for u in read_manifest(data_dir / f"{references}.jsonl")}
            labels[system] = [Labeled(u, gold[u.id]) for u in pool]
        else:
            start = "pretrained" if config.round == 1 else system  # round 1: every system starts from the same ASR
            if start not in hypotheses:
                hypotheses[start] = [nbest[0].text for nbest in transcribe_pool(
                    *starting_asr(config, system, output_dir), pool, data_dir, desc=f"{start}: pool")]
            if system == "pseudo-labels":
                labels[system] = [Labeled(u, h) for u, h in zip(pool, hypotheses[start], strict=True) if h]
            else:
                refinements[system] = refine(refiners.models[system], REFINER_STAGE, pool, hypotheses[start],
                                             data_dir, config.filter, config.max_change, config.min_score,
                                             audio_aware=REFINERS[system])
                labels[system] = [Labeled(u, r.refined) for u, r in zip(pool, refinements[system], strict=True)
                                  if r.kept]
        metrics.append(Metric(f"{system} pool labels kept", len(labels[system]), unit="count"))
        error = pool_label_error(data_dir, references, {d.utterance.id: d.label for d in labels[system]})
        if error is not None:  # None: the filter kept no label
            metrics.append(Metric(f"{system} pool label WER", error.rate, error.interval.low, error.interval.high,
                                  unit="rate"))
    return PoolLabels(labels, refinements, metrics)


@dataclass(frozen=True)
class RoundResult:
    results: dict[str, list[SystemResult]]  # by system: its adapted ASR's scores on the test manifests
    metrics: list[Metric]                   # per system training and scores, then ReHear minus each baseline


def adapt_asrs(config: ReHearConfig, pool_labels: PoolLabels, data_dir: Path, output_dir: Path) -> RoundResult:
    """Every system's ASR fine-tuned on the same budget from its starting point (`checkpoints/<system>`), saved for
    the next round (`asr/<system>`) and scored (`<system>_hypotheses.jsonl`); ReHear's paired differences."""
    replay = [Labeled(u, u.text) for u in source_utterances(config, data_dir)]
    prefix = round_prefix(config.round)
    results, metrics = {}, []
    for system in config.systems:
        model, tokenizer = starting_asr(config, system, output_dir)
        freeze_except(model, config.asr_train)
        log = finetune(model, tokenizer, pool_labels.labels[system] + replay, data_dir, config.asr_training,
                       output_dir / CHECKPOINTS_DIR / folder_name(system), max_batch=config.max_batch)
        model.save_pretrained(output_dir / ASR_DIR / folder_name(system))
        tokenizer.save_pretrained(output_dir / ASR_DIR / folder_name(system))
        metrics += training_metrics(log, f"{system} ")
        results[system] = evaluate(whisper.transcriber(model, tokenizer), data_dir, config.test_manifests,
                                   limit=config.eval_limit)
        save_hypotheses(output_dir / f"{folder_name(system)}_hypotheses.jsonl", results[system])
        metrics += result_metrics(results[system], prefix=f"{prefix}{system} ")
    for baseline in [s for s in BASELINES if s in config.systems]:
        metrics += difference_metrics(results[baseline], results["ReHear"], rehear_minus(baseline), prefix)
    return RoundResult(results, metrics)


def round_history(stage_dir: Path, round: int, previous_round: str,
                  current: dict[str, float]) -> dict[int, dict[str, float]]:
    """Round -> {metric name: value} for this round (`current`, not yet saved) and every round before it, followed
    back through each stage's `previous_round` parameter (its params.json) beside `stage_dir`."""
    history = {round: current}
    folder = stage_dir.parent / previous_round if previous_round else None
    while folder is not None:
        params_file, metrics_file = folder / "params.json", folder / "metrics.json"
        if not (params_file.is_file() and metrics_file.is_file()):
            raise FileNotFoundError(f"{folder}: a previous round without params.json and metrics.json; run it first")
        params = json.loads(params_file.read_text())["parameters"]
        history[params.get("round", 1)] = {r["name"]: r["value"] for r in json.loads(metrics_file.read_text())}
        folder = stage_dir.parent / params["previous_round"] if params.get("previous_round") else None
    return dict(sorted(history.items()))


def plot_rounds(history: dict[int, dict[str, float]], metric: str, systems: Sequence[str] = SYSTEMS,
                title: str = "WER by round") -> plt.Figure:
    """One line per system over rounds (`round_history`): the rows `{round_prefix(k)}{system} {metric}`."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for system in systems:
        name = {k: f"{round_prefix(k)}{system} {metric}" for k in history}
        points = [(k, 100 * rows[name[k]]) for k, rows in history.items() if name[k] in rows]
        if points:
            axes.plot(*zip(*points), marker="o", label=system)
    axes.set(xlabel="round", ylabel=f"{metric} (%)", title=title, xticks=sorted(history))
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure
