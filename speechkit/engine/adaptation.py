"""Adapting the Whisper ASR to a target domain from unlabeled audio: what ReHear and Ling & Ye share.

- `transcribe_pool`: the current ASR's hypotheses (N-best) on the unlabeled pool;
- `finetune`: supervised fine-tuning on (utterance, label) pairs - pseudo-labels, refined labels, or oracle;
- `reinforce`: GRPO on the pool with reward functions (the LLM reward of Ling & Ye), through `speechkit.engine.grpo`;
- `pool_label_error`: how wrong a set of pool labels is (the pool's reference, used only to measure).

Which Whisper parameters train is a regex list, as for the speech LLM's stages: the decoder by default (the
language side, where domain terms live; the encoder on its 30-s window is most of the compute).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechkit.core.text import normaliser_for
from speechkit.data.audio import load_utterance
from speechkit.data.features import length_batches
from speechkit.data.manifest import Hypothesis, Utterance, read_manifest
from speechkit.engine.grpo import GRPOConfig, GRPOStep, RewardFunction
from speechkit.engine.policies import AudioPrompt, WhisperPolicy
from speechkit.engine.training import TrainConfig, TrainLog, length_batches_by_epoch, shuffled_batches, train
from speechkit.metrics.scoring import ErrorRate, error_rate
from speechkit.models import asr

DECODER = (r"^model\.decoder\.",)  # Whisper's decoder; proj_out is tied to its token embeddings


@dataclass(frozen=True)
class Labeled:
    """An utterance with the label a method trains on (its own text field is never read for training)."""
    utterance: Utterance
    label: str


def read_pool(data_dir: str | Path, manifest: str, limit: int = 0) -> list[Utterance]:
    """The unlabeled target pool; refuses a manifest that carries transcripts (it would leak the labels)."""
    pool = read_manifest(Path(data_dir) / f"{manifest}.jsonl")
    labeled = [u.id for u in pool if u.text is not None]
    if labeled:
        raise ValueError(f"{manifest}: {len(labeled)} pool utterances carry transcripts (e.g. {labeled[0]}); the "
                         "adaptation pool must be unlabeled")
    return pool[:limit] if limit else pool


def transcribe_pool(model: asr.WhisperASR, tokenizer, utterances: Sequence[Utterance], data_dir: str | Path,
                    nbest: int = 1, num_beams: int = 1, max_batch: int = 16, progress: bool = True,
                    desc: str = "transcribing", do_sample: bool = False,
                    temperature: float = 1.0) -> list[list[Hypothesis]]:
    """N-best lists (best first) of every utterance, in order; with `do_sample`, `nbest` samples at `temperature`
    (in the order drawn)."""
    out: dict[int, list[Hypothesis]] = {}
    batches = length_batches([u.duration for u in utterances], 120.0, max_batch, rng=None)
    for indices in tqdm(batches, desc=desc, unit="batch", disable=not progress):
        audios = [load_utterance(utterances[i], data_dir) for i in indices]
        decoded = asr.transcribe(model, tokenizer, audios, [utterances[i].language for i in indices],
                                 num_beams=1 if do_sample else max(num_beams, nbest), nbest=nbest,
                                 do_sample=do_sample, temperature=temperature)
        out.update(zip(indices, decoded, strict=True))
    return [out[i] for i in range(len(utterances))]


def finetune(model: asr.WhisperASR, tokenizer, data: Sequence[Labeled], data_dir: str | Path, config: TrainConfig,
             checkpoint: str | Path, batch_seconds: float = 60.0, max_batch: int = 16,
             progress: bool = True) -> TrainLog:
    """Cross-entropy fine-tuning on the given labels (the parameters that require grad), resumable."""
    data = [d for d in data if d.label.strip()]  # an empty label teaches nothing but silence
    if not data:
        raise ValueError("no non-empty labels to fine-tune on")
    batches = length_batches_by_epoch([d.utterance.duration for d in data], batch_seconds, max_batch, config.seed)

    def loss(model, indices):
        labeled = [replace(data[i].utterance, text=data[i].label) for i in indices]
        batch = asr.make_batch(labeled, data_dir, tokenizer, model.config.num_mel_bins).to(model.device)
        return *asr.loss(model, batch), (batch.labels != -100).sum()  # a mean over the target tokens

    return train(model, batches, loss, config, checkpoint, progress)


def reinforce(model: asr.WhisperASR, tokenizer, pool: Sequence[Utterance], data_dir: str | Path,
              rewards: dict[str, RewardFunction], weights: dict[str, float] | None, grpo: GRPOConfig,
              config: TrainConfig, checkpoint: str | Path, prompts_per_step: int = 4,
              progress: bool = True) -> TrainLog:
    """GRPO on the unlabeled pool: groups of sampled transcripts per utterance, scored by `rewards`, which receive
    each utterance's `context` (an `Utterance.context`) and `utterance` as columns."""
    audio_cache: dict[str, np.ndarray] = {}

    def audio(u: Utterance) -> np.ndarray:
        if u.id not in audio_cache:
            audio_cache[u.id] = load_utterance(u, data_dir)
        return audio_cache[u.id]

    step = GRPOStep(model, WhisperPolicy(tokenizer), grpo, rewards, weights,
                    prompt=lambda i: AudioPrompt(audio(pool[i]), pool[i].language),
                    columns=lambda items: {"context": [pool[i].context for i in items],
                                           "utterance": [pool[i] for i in items]})

    return train(model, shuffled_batches(len(pool), prompts_per_step, config.seed), step, config, checkpoint, progress)


def pool_label_error(data_dir: str | Path, reference_manifest: str, labels: dict[str, str]) -> ErrorRate | None:
    """WER of pool labels against the pool's references (measurement only: no method trains on them); None when
    there are no labels (a filter kept none)."""
    references = {u.id: u for u in read_manifest(Path(data_dir) / f"{reference_manifest}.jsonl")}
    unknown = [i for i in labels if i not in references]
    if unknown:
        raise ValueError(f"{reference_manifest}: no reference for {len(unknown)} labelled ids, e.g. {unknown[0]}")
    ids = list(labels)
    if not ids:
        return None
    language = references[ids[0]].language
    return error_rate([references[i].text for i in ids], [labels[i] for i in ids], normaliser_for(language))
