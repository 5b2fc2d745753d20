"""Speech-Hands as notebook 41 runs it: the speech LLM's own transcripts beside the external systems' N-best lists
(from 40_external_asr), routing labels, the router's fine-tuning, the routed test sets, the GER cascade, and every
system scored on the same utterances with the paper's comparisons."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from speechkit.core.results import Metric, name_list
from speechkit.data.manifest import NBest, Utterance, read_manifest, read_nbest
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.evaluation import SystemResult, result_metrics
from speechkit.engine.recipes import resolve_checkpoint
from speechkit.engine.training import TrainConfig, TrainLog
from speechkit.models.speech_llm import STAGES, SpeechLLM
from speechkit.speech_hands.external import nbest_path
from speechkit.speech_hands.routing import (ACTIONS, Decision, GERCorrector, RoutingItem, RoutingReport,
                                            routed_differences, routing_items, system_results, transcripts)

INTERNAL = "internal (speech LLM)"
CASCADE = "GER cascade"
ROUTED = "routed"


@dataclass(frozen=True)
class RoutingConfig:
    """Notebook 41's options: the speech LLM and the external systems it pairs with, how labels are made, the
    router's and the GER cascade's training budgets, the data."""
    init: str = "published:stage3"          # the speech LLM: the kit's published stage 3, a stage of the run, a path
    external_stage: str = "40_external_asr"  # the stage whose N-best lists are read
    external: str = "whisper"               # the external system routing pairs with (the paper: the best one)
    baselines: tuple[str, ...] = ("pocketsphinx", "whisper")  # external systems scored alone
    llm: str = "pkg:smollm2-135m-instruct"  # the GER cascade's text-only LLM
    nbest: int = 3                          # external hypotheses in the prompt
    tolerance: float = 0.0                  # a transcript counts as correct at WER at most this (the paper: 0)
    train_manifest: str = "conversation_turns_train"
    test_manifests: tuple[str, ...] = ("source_test", "medical_test")
    batch_seconds: float = 60.0
    max_batch: int = 16
    learning_rate: float = 5e-4
    warmup_steps: int = 5
    max_steps: int = 3
    max_minutes: float = 0.0
    ger_learning_rate: float = 1e-3
    ger_max_steps: int = 3
    ger_max_minutes: float = 0.0
    checkpoint_minutes: float = 10.0
    seed: int = 0
    max_new_tokens: int = 40

    def __post_init__(self):
        object.__setattr__(self, "baselines", name_list(self.baselines, "baselines"))
        object.__setattr__(self, "test_manifests", name_list(self.test_manifests, "test_manifests"))
        if self.nbest < 1 or self.max_batch < 1 or not 0 <= self.tolerance < 1:
            raise ValueError(f"nbest >= 1, max_batch >= 1 and 0 <= tolerance < 1 needed: {self}")
        _ = (self.training, self.ger_training)  # their own checks run before any model loads

    @property
    def training(self) -> TrainConfig:
        return TrainConfig(learning_rate=self.learning_rate, warmup_steps=self.warmup_steps, max_steps=self.max_steps,
                           max_minutes=self.max_minutes, checkpoint_minutes=self.checkpoint_minutes, seed=self.seed)

    @property
    def ger_training(self) -> TrainConfig:
        return replace(self.training, learning_rate=self.ger_learning_rate, max_steps=self.ger_max_steps,
                       max_minutes=self.ger_max_minutes)

    @property
    def decoding(self) -> DecodingConfig:
        return DecodingConfig(max_new_tokens=self.max_new_tokens)

    @property
    def manifests(self) -> list[str]:
        return [self.train_manifest, *self.test_manifests]

    @property
    def systems(self) -> list[str]:
        """The external systems read: the one routing pairs with, then the baselines."""
        return list(dict.fromkeys([self.external, *self.baselines]))


@dataclass(frozen=True)
class RoutingData:
    """What routing is built on, per manifest: the utterances the external systems decoded (40_external_asr may
    have limited the test sets), their N-best lists by system, and the speech LLM's own transcripts."""
    utterances: dict[str, list[Utterance]]
    nbests: dict[str, dict[str, dict[str, NBest]]]   # system -> manifest -> utterance id -> N-best
    internal: dict[str, dict[str, str]]              # manifest -> utterance id -> transcript
    external: str

    def items(self, manifest: str, tolerance: float) -> list[RoutingItem]:
        """The manifest's utterances labeled against the external system routing pairs with."""
        return routing_items(self.utterances[manifest], self.internal[manifest], self.nbests[self.external][manifest],
                             tolerance)


def load_model(config: RoutingConfig, output_dir: str | Path) -> SpeechLLM:
    return SpeechLLM.load(resolve_checkpoint(config.init, output_dir))


def routing_data(config: RoutingConfig, model: SpeechLLM, data_dir: Path, output_dir: Path) -> RoutingData:
    """Read the external N-best lists and decode the same utterances with the speech LLM (stage 3, no external
    hypotheses in the prompt)."""
    external_dir = output_dir.parent / config.external_stage
    # baselines are scored on the test sets only (40_external_asr decodes the training turns with its train_systems)
    nbests = {system: {m: {n.id: n for n in read_nbest(nbest_path(external_dir, system, m))}
                       for m in (config.manifests if system == config.external else config.test_manifests)}
              for system in config.systems}
    utterances = {m: [u for u in read_manifest(data_dir / f"{m}.jsonl") if u.id in nbests[config.external][m]]
                  for m in config.manifests}
    internal = {m: transcripts(model, STAGES[3], utterances[m], data_dir, config.decoding, config.max_batch, desc=m)
                for m in config.manifests}
    return RoutingData(utterances, nbests, internal, config.external)


def ger_cascade(config: RoutingConfig, train_items: list[RoutingItem], test_items: dict[str, list[RoutingItem]],
                output_dir: str | Path, checkpoint: str | Path) -> tuple[dict[str, dict[str, str]], TrainLog]:
    """The cascaded baseline: the text-only LLM fine-tuned to correct the external N-best on the routing training
    items, then its corrections of each test set (manifest -> utterance id -> text) and its training log."""
    ger = GERCorrector.from_llm(resolve_checkpoint(config.llm, output_dir), config.nbest)
    log = ger.train(train_items, config.ger_training, checkpoint, config.max_batch)
    corrected = {m: dict(zip([i.utterance.id for i in items], ger.correct([i.external for i in items],
                                                                          config.max_new_tokens), strict=True))
                 for m, items in test_items.items()}
    return corrected, log


def score_systems(config: RoutingConfig, data: RoutingData, decisions: list[Decision],
                  corrected: dict[str, dict[str, str]]) -> dict[str, list[SystemResult]]:
    """Every system on the same test utterances: the speech LLM alone, each external system's top hypothesis, the
    GER cascade, routing, and oracle routing (the best of the three candidates per utterance)."""
    tests = {m: data.utterances[m] for m in config.test_manifests}
    by_id = {d.id: d for d in decisions}
    outputs = {INTERNAL: {i: t for m in tests for i, t in data.internal[m].items()}}
    outputs |= {f"external {s}": {i: n.hypotheses[0].text for m in tests for i, n in data.nbests[s][m].items()}
                for s in data.nbests}
    outputs |= {CASCADE: {i: t for m in tests for i, t in corrected[m].items()},
                ROUTED: {i: d.output for i, d in by_id.items()},
                "oracle routing": {i: d.oracle() for i, d in by_id.items()}}
    return system_results(outputs, tests)


def system_metrics(systems: dict[str, list[SystemResult]]) -> list[Metric]:
    return [m for name, results in systems.items() for m in result_metrics(results, prefix=f"{name} ")]


def comparisons(systems: dict[str, list[SystemResult]]) -> list[Metric]:
    """The paper's comparisons: routing minus the best single system (the speech LLM or an external one) and
    minus the GER cascade."""
    singles = [name for name in systems if name == INTERNAL or name.startswith("external")]
    return routed_differences(systems, singles, CASCADE, ROUTED)


def report_metrics(report: RoutingReport, train_counts: dict[str, int], paper_counts: dict[str, int]) -> list[Metric]:
    """How well the router chose (accuracy, macro F1, per-action precision/recall/F1 on the test sets) and the
    training labels it learnt from, under the tolerance and under the paper's exact-match rule."""
    rows = [Metric("routing accuracy", report.accuracy), Metric("routing macro F1", report.macro_f1)]
    rows += [Metric(f"routing {kind} <{action}>", values[action]) for action in report.labels
             for kind, values in (("precision", report.precision), ("recall", report.recall), ("F1", report.f1))]
    rows += [Metric(f"training labels <{action}>", train_counts[action], unit="count") for action in ACTIONS]
    rows += [Metric(f"training labels, exact-match rule <{action}>", paper_counts[action], unit="count")
             for action in ACTIONS]
    return rows
