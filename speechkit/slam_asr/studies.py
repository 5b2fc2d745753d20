"""The paper's additional experiments: the decoding study (Table 4) and conversational context (section 4.1)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from speechkit.core.text import normaliser_for
from speechkit.data.audio import load_utterance
from speechkit.data.manifest import Utterance, read_manifest
from speechkit.engine.decoding import DecodingConfig, decode
from speechkit.engine.evaluation import SystemResult, evaluate
from speechkit.engine.recipes import fine_tune, speech_llm_transcriber
from speechkit.engine.training import TrainConfig, TrainLog
from speechkit.metrics.scoring import ErrorRate, bootstrap_interval, error_rate
from speechkit.models.speech_llm import STAGES, Example, SpeechLLM, Stage


# -- decoding study -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyRow:
    method: str
    num_beams: int
    max_new_tokens: int
    rate: float                  # pooled over every evaluated manifest and language (WER and CER units together)
    low: float
    high: float
    rtfx: float
    results: tuple[SystemResult, ...]


def decoding_grid(methods: Sequence[str], beams: Sequence[int], max_new_tokens: Sequence[int],
                  temperature: float) -> list[DecodingConfig]:
    """Every method x beam size x length limit; greedy and sampling take one beam."""
    grid = []
    for method, beam, length in itertools.product(methods, beams, max_new_tokens):
        one_beam = method in ("greedy", "sampling")
        config = DecodingConfig(method=method, num_beams=1 if one_beam else beam, max_new_tokens=length,
                                temperature=temperature)
        if config not in grid:
            grid.append(config)
    return grid


def pooled(results: Sequence[SystemResult]) -> tuple[float, float, float]:
    """One error rate over several result groups (errors and reference units summed), with its 95% interval."""
    errors = np.concatenate([r.wer.errors() for r in results])
    lengths = np.concatenate([r.wer.lengths() for r in results])
    interval = bootstrap_interval(errors, lengths)
    return float(errors.sum() / lengths.sum()), interval.low, interval.high


def decoding_study(model: SpeechLLM, stage: Stage, data_dir: str | Path, manifests: Sequence[str],
                   grid: Sequence[DecodingConfig], limit: int = 0, max_batch: int = 16) -> list[StudyRow]:
    rows = []
    for config in grid:
        results = evaluate(speech_llm_transcriber(model, stage, config), data_dir, manifests, max_batch=max_batch,
                           limit=limit)
        rate, low, high = pooled(results)
        rtfx = sum(r.audio_seconds for r in results) / sum(r.decode_seconds for r in results)
        rows.append(StudyRow(config.method, config.num_beams, config.max_new_tokens, rate, low, high, rtfx,
                             tuple(results)))
    return rows


def plot_study(rows: Sequence[StudyRow]) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(8, 4))
    for length in sorted({r.max_new_tokens for r in rows}):
        chosen = [r for r in rows if r.max_new_tokens == length]
        labels = [f"{r.method}\nbeam {r.num_beams}" for r in chosen]
        axes.errorbar(labels, [100 * r.rate for r in chosen],
                      yerr=[[100 * (r.rate - r.low) for r in chosen], [100 * (r.high - r.rate) for r in chosen]],
                      marker="o", capsize=3, linestyle="", label=f"max new tokens {length}")
    axes.set(ylabel="WER/CER (%)", title="decoding method x beam size x length limit")
    axes.legend()
    axes.tick_params(axis="x", labelsize=8)
    figure.tight_layout()
    return figure


# -- conversational context ---------------------------------------------------------------------------------------

# Stage 3's configuration, continued on conversations with earlier turns in the prompt.
CONTEXT_STAGE = replace(STAGES[3], name="conversational context")


def context_text(previous: Sequence[str]) -> str | None:
    """How earlier turns enter the prompt (before the instruction)."""
    return ("Previous turns: " + " / ".join(previous)) if previous else None


def _conversations(turns: Sequence[Utterance]) -> dict[str, list[Utterance]]:
    by_conversation: dict[str, list[Utterance]] = {}
    for turn in sorted(turns, key=lambda t: (t.conversation, t.turn)):
        by_conversation.setdefault(turn.conversation, []).append(turn)
    return by_conversation


def train_with_context(model: SpeechLLM, stage: Stage, data_dir: str | Path, manifest: str, turns_back: int,
                       train_config: TrainConfig, checkpoint: str | Path, batch_seconds: float = 60.0,
                       max_batch: int = 16, progress: bool = True) -> TrainLog:
    """Fine-tune on conversation turns, each both with its `turns_back` previous reference turns and without."""
    data_dir = Path(data_dir)
    items: list[tuple[Utterance, str | None]] = []
    for turns in _conversations(read_manifest(data_dir / f"{manifest}.jsonl")).values():
        for i, turn in enumerate(turns):
            items.append((turn, context_text([t.text for t in turns[max(0, i - turns_back):i]])))
            items.append((turn, None))
    return fine_tune(model, stage, [turn for turn, _ in items], data_dir, train_config, checkpoint,
                     example=lambda i, audio: Example(audio, items[i][0].language, items[i][0].text,
                                                      context=items[i][1]),
                     batch_seconds=batch_seconds, max_batch=max_batch, progress=progress)


def evaluate_with_context(model: SpeechLLM, stage: Stage, data_dir: str | Path, manifest: str, turns_back: int,
                          mode: str, decoding: DecodingConfig | None = None, limit: int = 0) -> ErrorRate:
    """WER on conversation turns with no context ("none"), the reference previous turns ("oracle": the paper's
    upper bound), or the model's own previous hypotheses decoded in order ("own": the end-to-end setting); on the
    first `limit` conversations (in id order) if `limit`."""
    if mode not in ("none", "oracle", "own"):
        raise ValueError(f"mode must be none, oracle or own, not {mode!r}")
    if limit < 0:
        raise ValueError(f"limit is a number of conversations (0: all), not {limit}")
    data_dir = Path(data_dir)
    decoding = decoding or DecodingConfig()
    conversations = list(_conversations(read_manifest(data_dir / f"{manifest}.jsonl")).values())
    conversations = conversations[:limit] if limit else conversations
    hypotheses: dict[str, str] = {}
    for index in range(max(len(turns) for turns in conversations)):  # turn by turn, conversations batched
        batch = [turns for turns in conversations if len(turns) > index]
        examples = []
        for turns in batch:
            earlier = turns[max(0, index - turns_back):index]
            previous = [] if mode == "none" else [t.text if mode == "oracle" else hypotheses[t.id] for t in earlier]
            examples.append(Example(load_utterance(turns[index], data_dir), turns[index].language,
                                    context=context_text(previous)))
        for turns, nbest in zip(batch, decode(model, examples, stage, decoding), strict=True):
            hypotheses[turns[index].id] = nbest[0].text
    ordered = [t for turns in conversations for t in turns]
    return error_rate([t.text for t in ordered], [hypotheses[t.id] for t in ordered], normaliser_for("en"))
