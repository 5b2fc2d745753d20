"""Seewo's stage 4 as notebook 15 runs it: CoT targets from the stage-3 model's own first pass of the training
utterances, then two fine-tunings from stage 3 on them - the standard loss and prompt-loss weighting (PLW) - each
scored on the dev sets beside stage 3 and diagnosed ("think right, transcript wrong")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from speechkit.core.fileio import write_jsonl
from speechkit.core.results import Metric, name_list
from speechkit.data.manifest import Utterance, read_manifest
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.evaluation import SystemResult, evaluate, result_metrics, save_hypotheses
from speechkit.engine.recipes import CHECKPOINT, export_nbest, resolve_checkpoint, speech_llm_transcriber
from speechkit.engine.training import TrainConfig, TrainLog, training_metrics
from speechkit.metrics.scoring import paired_difference
from speechkit.models.speech_llm import STAGES, SpeechLLM
from speechkit.slam_asr.claims import COT_HYPOTHESES
from speechkit.slam_asr.cot import COT_TRAINING, CoTDiagnosis, CoTTranscriber, PromptLossSchedule, diagnose, train_cot

FIRST_PASS = "first_pass.jsonl"  # stage 3's N-best of the training utterances
# each run's checkpoint folder: the PLW model is the stage's checkpoint (RLVR starts from it)
RUNS = {"CoT": Path("checkpoints") / "standard", "CoT + PLW": Path(CHECKPOINT)}


@dataclass(frozen=True)
class CoTSFTConfig:
    """Stage 4's options: the starting model, the training data, each run's budget and the PLW schedule, the dev
    sets it is scored on."""
    init: str = "published:stage3"        # the stage-3 speech LLM: the kit's published one, a stage of the run, a path
    train_manifest: str = "source_train"  # CoT targets are built from the model's hypotheses of these
    train_limit: int = 8                  # training utterances used (0: all)
    max_batch: int = 16
    learning_rate: float = 5e-4
    warmup_steps: int = 2
    max_steps: int = 4                    # steps of each run (standard loss, PLW)
    plw_start: float = 1.0                # the <think> weight at step 0 ...
    plw_end: float = 0.1                  # ... decaying linearly to this ...
    plw_decay_steps: int = 2              # ... over these steps (the paper: 300 of its budget), then constant
    eval_manifests: tuple[str, ...] = ("source_dev",)
    eval_limit: int = 0                   # utterances per manifest (0: all)
    max_new_tokens: int = 64              # the think span roughly doubles the output
    seed: int = 0
    checkpoint_minutes: float = 10.0

    def __post_init__(self):
        object.__setattr__(self, "eval_manifests", name_list(self.eval_manifests, "eval_manifests"))
        if self.train_limit < 0 or self.eval_limit < 0 or self.max_batch < 1:
            raise ValueError(f"train_limit >= 0, eval_limit >= 0 and max_batch >= 1 needed: {self}")
        _ = (self.training, self.schedule)  # their own checks run before any model loads

    @property
    def training(self) -> TrainConfig:
        return TrainConfig(learning_rate=self.learning_rate, warmup_steps=self.warmup_steps, max_steps=self.max_steps,
                           log_every=max(1, self.max_steps // 20), seed=self.seed,
                           checkpoint_minutes=self.checkpoint_minutes)

    @property
    def schedule(self) -> PromptLossSchedule:
        return PromptLossSchedule(self.plw_start, self.plw_end, self.plw_decay_steps)

    @property
    def decoding(self) -> DecodingConfig:
        return DecodingConfig(max_new_tokens=self.max_new_tokens)


@dataclass(frozen=True)
class FirstPass:
    utterances: list[Utterance]    # the training utterances
    hypotheses: list[str]          # stage 3's 1-best of each: the think span's first pass
    baseline: list[SystemResult]   # stage 3 on the dev sets

    def metrics(self) -> list[Metric]:
        return result_metrics(self.baseline, prefix="stage 3 ")


def first_pass(config: CoTSFTConfig, data_dir: Path, output_dir: Path) -> FirstPass:
    """Stage 3 transcribes the training utterances (saved as N-best lists) and is scored on the dev sets."""
    model = SpeechLLM.load(resolve_checkpoint(config.init, output_dir))
    lists = export_nbest(model, STAGES[3], data_dir, config.train_manifest, config.decoding, output_dir / FIRST_PASS,
                         system="stage 3", limit=config.train_limit)
    baseline = evaluate(speech_llm_transcriber(model, STAGES[3], config.decoding), data_dir, config.eval_manifests,
                        limit=config.eval_limit)
    save_hypotheses(output_dir / COT_HYPOTHESES["stage 3"], baseline)
    utterances = read_manifest(data_dir / f"{config.train_manifest}.jsonl")[:config.train_limit or None]
    return FirstPass(utterances, [entry.hypotheses[0].text for entry in lists], baseline)


@dataclass(frozen=True)
class CoTRun:
    name: str                      # one of RUNS
    log: TrainLog
    results: list[SystemResult]    # the dev sets
    diagnosis: CoTDiagnosis

    def metrics(self) -> list[Metric]:
        d, outputs = self.diagnosis, max(1, self.diagnosis.outputs)
        return training_metrics(self.log, f"{self.name} ") + result_metrics(self.results, prefix=f"{self.name} ") + [
            Metric(f"{self.name} malformed outputs", d.malformed / outputs, unit="rate"),
            Metric(f"{self.name} think right, transcript wrong", d.right_then_wrong / outputs, unit="rate"),
            Metric(f"{self.name} think wrong, transcript right", d.wrong_then_right / outputs, unit="rate")]


def train_and_score(config: CoTSFTConfig, name: str, first: FirstPass, data_dir: Path, output_dir: Path) -> CoTRun:
    """One run from stage 3 (`name`: "CoT", the standard loss, or "CoT + PLW"), scored and diagnosed on the dev sets;
    its parsed outputs are written beside the hypotheses."""
    if name not in RUNS:
        raise ValueError(f"unknown CoT run {name!r}; choose one of {', '.join(RUNS)}")
    stage = COT_TRAINING
    model = SpeechLLM.load(resolve_checkpoint(config.init, output_dir))
    model.start_stage(stage)
    log = train_cot(model, stage, first.utterances, first.hypotheses, data_dir, config.training,
                    output_dir / RUNS[name], schedule=config.schedule if name == "CoT + PLW" else None,
                    max_batch=config.max_batch)
    transcriber = CoTTranscriber(model, stage, config.decoding)
    results = evaluate(transcriber, data_dir, config.eval_manifests, limit=config.eval_limit)
    save_hypotheses(output_dir / COT_HYPOTHESES[name], results)
    scored = [u for m in config.eval_manifests
              for u in read_manifest(data_dir / f"{m}.jsonl")[:config.eval_limit or None]]
    write_jsonl(output_dir / f"{name.replace(' + ', '_').replace(' ', '_')}_outputs.jsonl",
                ({"id": i, "think_hypothesis": o.hypothesis, "transcription": o.transcription,
                  "well_formed": o.well_formed, "raw": o.raw} for i, o in transcriber.outputs.items()))
    return CoTRun(name, log, results, diagnose(transcriber.outputs, scored))


def differences(baseline: Sequence[SystemResult], runs: dict[str, CoTRun]) -> list[Metric]:
    """Paired WER differences with 95% intervals: each step of Table 1's stage-3 -> CoT -> CoT + PLW, per dev group."""
    pairs = [("CoT minus stage 3", baseline, runs["CoT"].results),
             ("CoT + PLW minus CoT", runs["CoT"].results, runs["CoT + PLW"].results),
             ("CoT + PLW minus stage 3", baseline, runs["CoT + PLW"].results)]
    metrics = []
    for name, before, after in pairs:
        for x, y in zip(before, after, strict=True):
            d = paired_difference(x.wer, y.wer)
            metrics.append(Metric(f"{name} {x.manifest} [{x.language}]", d.difference, d.interval.low,
                                  d.interval.high, unit="rate"))
    return metrics
