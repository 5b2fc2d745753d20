"""What every method does with the speech LLM: resolve a checkpoint reference, fine-tune it (the one supervised
training loop), decode and transcribe with it, and compare systems (Seewo's own stage recipe is slam_asr.stages)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechkit.core.claims import group_name
from speechkit.core.results import REPO_ROOT, repo_path
from speechkit.data.audio import load_utterance
from speechkit.data.features import length_batches
from speechkit.data.manifest import NBest, Utterance, read_manifest, write_manifest
from speechkit.engine.data_parallel import is_main_process
from speechkit.engine.decoding import Decoded, DecodingConfig, decode, to_nbest
from speechkit.engine.encoder_cache import EncoderCache
from speechkit.engine.evaluation import SystemResult, Transcriber
from speechkit.engine.training import TrainConfig, TrainLog, length_batches_by_epoch, train
from speechkit.metrics.scoring import Difference, paired_difference
from speechkit.models.asr import load_asr
from speechkit.models.asr import transcriber as asr_transcriber
from speechkit.models.device import inference_dtype
from speechkit.models.published import PREFIX as PUBLISHED_PREFIX
from speechkit.models.published import published_path
from speechkit.models.speech_llm import STAGES, Example, SpeechLLM, Stage

CHECKPOINT = "checkpoint"  # the folder every training stage saves its model to


def resolve_checkpoint(reference: str, output_dir: str | Path) -> str:
    """A checkpoint reference: a stage name of the same run ("10_stage1_projector" -> its checkpoint folder beside
    `output_dir`), a packaged model (`pkg:whisper-tiny.en`, kept as is), one of the kit's published speech LLMs
    (`published:stage1` -> its folder, digests checked), a path (relative to the repository), or a hub id (kept as
    is, for the `full` profile)."""
    if reference.startswith("pkg:"):
        return reference
    if reference.startswith(PUBLISHED_PREFIX):  # the kit's own published checkpoints, digests checked
        return str(published_path(reference).relative_to(REPO_ROOT))
    local = repo_path(output_dir).parent / reference / CHECKPOINT if "/" not in reference else repo_path(reference)
    if not local.exists() and "/" in reference:
        return reference
    # inside the repository, keep the path relative to it: saved models then survive moving the checkout
    return str(local.relative_to(REPO_ROOT)) if local.is_relative_to(REPO_ROOT) else str(local)


def examples(utterances: Sequence[Utterance], audios: Sequence[np.ndarray], with_targets: bool) -> list[Example]:
    return [Example(audio, u.language, u.text if with_targets else None) for u, audio in zip(utterances, audios,
                                                                                             strict=True)]


def fine_tune(model: SpeechLLM, stage: Stage, utterances: Sequence[Utterance], data_dir: str | Path,
              config: TrainConfig, checkpoint: str | Path, *,
              example: Callable[[int, np.ndarray], Example] | None = None, batch_seconds: float = 60.0,
              max_batch: int = 16, cache: EncoderCache | None = None, read_audio: bool = True,
              weights: Callable[[int], dict[str, float]] | None = None, progress: bool = True,
              on_step: Callable[[int], None] | None = None) -> TrainLog:
    """The speech LLM's supervised fine-tuning, the one every method's training is: item i (`utterances[i]`, its
    audio read from `data_dir`) becomes `example(i, audio)` (default: the utterance with its transcript as target);
    seeded length batches; the token-weighted loss of `stage`; `train` (resumable in `checkpoint`); the model saved
    to `checkpoint`. `weights(step)` overrides the stage's span weights at each step (e.g. {"think": 0.55}, the
    prompt-loss schedule), logged beside the loss as "<name>_weight"; `cache` supplies frozen-encoder outputs;
    without `read_audio` `example` gets None (an ablation that replaces the audio)."""
    data_dir = Path(data_dir)
    example = example or (lambda i, audio: Example(audio, utterances[i].language, utterances[i].text))
    step_weights: dict[str, float] = {}

    def before_step(step: int) -> None:
        step_weights.clear()
        step_weights.update(weights(step) if weights else {})
        if on_step is not None:
            on_step(step)

    def loss(model, indices):
        batch = [utterances[i] for i in indices]
        audios = [load_utterance(u, data_dir) if read_audio else None for u in batch]
        items = [example(i, audio) for i, audio in zip(indices, audios, strict=True)]
        if cache is not None:
            items = [replace(e, frames=f) for e, f in zip(items, cache.frames(model, batch, audios), strict=True)]
        value, parts, weight = model.loss_and_weight(items, replace(stage, span_weights={**stage.span_weights,
                                                                                        **step_weights}))
        return value, {**parts, **{f"{name}_weight": w for name, w in step_weights.items()}}, weight

    batches = length_batches_by_epoch([u.duration for u in utterances], batch_seconds, max_batch, config.seed)
    log = train(model, batches, loss, config, checkpoint, progress, before_step)
    if is_main_process():
        model.save(checkpoint)
    return log


def speech_llm_transcriber(model: SpeechLLM, stage: Stage, decoding: DecodingConfig) -> Transcriber:
    def transcribe(utterances, audios):
        return [nbest[0].text for nbest in decode(model, examples(utterances, audios, False), stage, decoding)]
    return transcribe


TRANSCRIBING_STAGES = {STAGES[k].name: STAGES[k] for k in (1, 2, 3)}  # later stages write CoT or routing tokens


def saved_speech_llm_transcriber(checkpoint: str | Path, decoding: DecodingConfig) -> Transcriber:
    """A saved speech LLM of stages 1-3 (its folder) as a transcriber, decoding as its last stage trained it."""
    model = SpeechLLM.load(checkpoint, dtype=inference_dtype())
    last = model.config.stages[-1] if model.config.stages else ""
    if last not in TRANSCRIBING_STAGES:
        raise ValueError(f"{checkpoint}: a speech LLM after stage {last!r}; transcription takes one of stages "
                         f"{', '.join(TRANSCRIBING_STAGES)}")
    return speech_llm_transcriber(model, TRANSCRIBING_STAGES[last], decoding)


def whisper_transcriber(checkpoint: str) -> Transcriber:
    return asr_transcriber(*load_asr(checkpoint, dtype=inference_dtype()))


def compare(baseline: Sequence[SystemResult], system: Sequence[SystemResult]) -> list[tuple[str, Difference]]:
    """Paired bootstrap difference (system - baseline) for each (manifest, language) both were scored on."""
    by_key = {(r.manifest, r.language): r for r in baseline}
    return [(group_name(r.manifest, r.language), paired_difference(by_key[r.manifest, r.language].wer, r.wer))
            for r in system if (r.manifest, r.language) in by_key]


def decode_all(model: SpeechLLM, stage: Stage, durations: Sequence[float], example: Callable[[int], Example],
               decoding: DecodingConfig, max_batch: int = 16, desc: str = "decoding",
               progress: bool = False) -> list[list[Decoded]]:
    """N-best of every item (`example(i)` builds item i, audio included), decoded in length-sorted batches; returned
    in item order."""
    decoded: dict[int, list[Decoded]] = {}
    batches = length_batches(durations, 120.0, max_batch, rng=None)
    for indices in tqdm(batches, desc=desc, unit="batch", disable=not progress):
        decoded.update(zip(indices, decode(model, [example(i) for i in indices], stage, decoding), strict=True))
    return [decoded[i] for i in range(len(durations))]


def export_nbest(model: SpeechLLM, stage: Stage, data_dir: str | Path, manifest: str, decoding: DecodingConfig,
                 path: str | Path, system: str = "speech-llm", limit: int = 0, max_batch: int = 16) -> list[NBest]:
    """Decode a manifest and write its N-best lists (the kit's N-best manifest format), in manifest order."""
    data_dir = Path(data_dir)
    utterances = read_manifest(data_dir / f"{manifest}.jsonl")
    utterances = utterances[:limit] if limit else utterances
    decoded = decode_all(model, stage, [u.duration for u in utterances],
                         lambda i: Example(load_utterance(utterances[i], data_dir), utterances[i].language), decoding,
                         max_batch)
    lists = [to_nbest(u.id, system, d) for u, d in zip(utterances, decoded, strict=True)]
    write_manifest(path, lists)
    return lists
