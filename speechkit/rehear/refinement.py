"""ReHear (seed 000): pseudo-labels of unlabeled target audio refined by an audio-aware LLM, round after round.

The refiner is the kit's speech LLM with the ASR's hypothesis (and the domain's description) in its prompt: it hears
the audio and reads the hypothesis, and is trained on labeled source data to map (audio, hypothesis) -> transcript.
The text-only ablation is the same model and training with the audio replaced by silence: what the hypothesis and
the LLM alone can fix. A filter decides which refined labels the ASR is fine-tuned on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from speechkit.core.text import normaliser_for
from speechkit.data.audio import load_utterance
from speechkit.data.manifest import Utterance
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.recipes import decode_all, fine_tune
from speechkit.engine.training import TrainConfig, TrainLog
from speechkit.metrics.scoring import utterance_errors
from speechkit.models.speech_llm import Example, SpeechLLM, Stage
from speechkit.rehear.claims import round_prefix

FILTERS = ("none", "agreement", "confidence")
SILENCE = np.zeros(8_000, np.float32)  # the text-only ablation's "audio": half a second of nothing


@dataclass(frozen=True)
class ReHearConfig:
    """ReHear's options (seed 000): the pseudo-label round, the filter on refined labels, the refiner's training."""
    round: int = 1                        # the pseudo-label round
    previous_round: str = ""              # round k > 1: the stage of round k - 1, whose ASRs and refiners continue
    filter: str = "agreement"             # which refined labels are kept: one of FILTERS (see `refine`)
    max_change: float = 0.5               # agreement: at most this WER between hypothesis and refinement
    min_score: float = -1.0               # confidence: at least this mean log-probability per token
    source_limit: int = 16                # labeled source utterances: the refiner's training data and the ASR's replay
    refiner_learning_rate: float = 0.0005
    refiner_steps: int = 2                # refiner training steps (round 1; later rounds keep its refiners)

    def __post_init__(self):
        if self.filter not in FILTERS:
            raise ValueError(f"unknown filter {self.filter!r}; choose one of {', '.join(FILTERS)}")
        if self.round < 1:
            raise ValueError(f"round must be 1 or more, got {self.round}")
        if (self.round > 1) != bool(self.previous_round):
            raise ValueError(f"round {self.round} with previous_round {self.previous_round!r}: round 1 starts from "
                             "the pretrained models (no previous_round), round k > 1 names the stage of round k - 1")
        if self.max_change < 0 or self.source_limit < 1 or self.refiner_steps < 1 or self.refiner_learning_rate <= 0:
            raise ValueError(f"max_change >= 0, source_limit >= 1, refiner_steps >= 1 and refiner_learning_rate > 0 "
                             f"needed: {self}")


def refiner_context(hypothesis: str, utterance: Utterance) -> str:
    """What the refiner reads besides the audio: the domain (when known) and the ASR's hypothesis."""
    domain = f"{utterance.context.description} " if utterance.context else ""
    return f"{domain}A speech recogniser heard: \"{hypothesis}\". Correct it."


def refiner_example(utterance: Utterance, hypothesis: str, audio: np.ndarray, target: str | None = None) -> Example:
    return Example(audio, utterance.language, target, context=refiner_context(hypothesis, utterance))


@dataclass(frozen=True)
class Refinement:
    id: str
    hypothesis: str      # the ASR's
    refined: str         # the refiner's
    score: float         # the refiner's mean log-probability per token
    kept: bool           # whether the filter keeps it as a label


def train_refiner(model: SpeechLLM, stage: Stage, utterances: Sequence[Utterance], hypotheses: Sequence[str],
                  data_dir: str | Path, config: TrainConfig, checkpoint: str | Path, audio_aware: bool = True,
                  batch_seconds: float = 60.0, max_batch: int = 16, progress: bool = True) -> TrainLog:
    """Fine-tune the speech LLM (what `stage` trains) on labeled source data: (audio, hypothesis) -> transcript."""
    if any(u.text is None for u in utterances):
        raise ValueError("the refiner trains on labeled (source) utterances only")
    return fine_tune(model, stage, utterances, data_dir, config, checkpoint,
                     example=lambda i, audio: refiner_example(utterances[i], hypotheses[i],
                                                              audio if audio_aware else SILENCE, utterances[i].text),
                     read_audio=audio_aware, batch_seconds=batch_seconds, max_batch=max_batch, progress=progress)


def refine(model: SpeechLLM, stage: Stage, utterances: Sequence[Utterance], hypotheses: Sequence[str],
           data_dir: str | Path, filter: str = "agreement", max_change: float = 0.5, min_score: float = -1.0,
           audio_aware: bool = True, max_batch: int = 16, progress: bool = True) -> list[Refinement]:
    """Refined labels of the pool, with the filter's decision:
    - "none": keep every non-empty refinement;
    - "agreement": keep it when its WER against the ASR hypothesis is at most `max_change` (a refiner that rewrites
      most of the sentence is more likely hallucinating than correcting);
    - "confidence": keep it when the refiner's mean log-probability per token is at least `min_score`."""
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; choose one of {', '.join(FILTERS)}")
    decoded = decode_all(model, stage, [u.duration for u in utterances],
                         lambda i: refiner_example(utterances[i], hypotheses[i],
                                                   load_utterance(utterances[i], data_dir) if audio_aware else SILENCE),
                         DecodingConfig(max_new_tokens=96), max_batch, desc="refining", progress=progress)
    refinements = []
    for u, hypothesis, nbest in zip(utterances, hypotheses, decoded, strict=True):
        refined, score = nbest[0].text, nbest[0].score
        change = utterance_errors(hypothesis, refined, normaliser_for(u.language)).rate if hypothesis else 1.0
        kept = bool(refined) and (filter == "none" or (filter == "agreement" and change <= max_change)
                                  or (filter == "confidence" and score >= min_score))
        refinements.append(Refinement(u.id, hypothesis, refined, score, kept))
    return refinements


SYSTEMS = ("supervised", "pseudo-labels", "text-only refiner", "ReHear", "oracle")


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


def plot_rounds(history: dict[int, dict[str, float]], metric: str, systems: Sequence[str],
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
