"""ReHear's refiner (seed 000): an audio-aware LLM that rewrites the ASR's pseudo-labels of unlabeled target audio.

The refiner is the kit's speech LLM with the ASR's hypothesis (and the domain's description) in its prompt: it hears
the audio and reads the hypothesis, and is trained on labeled source data to map (audio, hypothesis) -> transcript.
The text-only ablation is the same model and training with the audio replaced by silence: what the hypothesis and
the LLM alone can fix. A filter decides which refined labels the ASR is fine-tuned on (`speechkit.rehear.rounds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechkit.core.text import normaliser_for
from speechkit.data.audio import load_utterance
from speechkit.data.manifest import Utterance
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.recipes import decode_all, fine_tune
from speechkit.engine.training import TrainConfig, TrainLog
from speechkit.metrics.scoring import utterance_errors
from speechkit.models.speech_llm import Example, SpeechLLM, Stage

FILTERS = ("none", "agreement", "confidence")
SILENCE = np.zeros(8_000, np.float32)  # the text-only ablation's "audio": half a second of nothing


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
