"""The speech-LLM recipe every paper shares: build, train and evaluate one training stage, and decode with it (the
library side of the stage notebooks, the same code for every stage)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechkit.core.claims import group_name
from speechkit.core.results import REPO_ROOT, name_list, repo_path
from speechkit.data.audio import load_utterance
from speechkit.data.features import length_batches
from speechkit.data.manifest import NBest, Utterance, read_manifest, write_manifest
from speechkit.engine.data_parallel import is_main_process
from speechkit.engine.decoding import Decoded, DecodingConfig, decode, to_nbest
from speechkit.engine.encoder_cache import EncoderCache
from speechkit.engine.evaluation import SystemResult, Transcriber, evaluate
from speechkit.engine.training import TrainConfig, TrainLog, length_batches_by_epoch, seed_everything, train
from speechkit.metrics.scoring import Difference, paired_difference
from speechkit.models.asr import load_asr
from speechkit.models.asr import transcriber as asr_transcriber
from speechkit.models.device import inference_dtype
from speechkit.models.freezing import freeze_except
from speechkit.models.published import PREFIX as PUBLISHED_PREFIX
from speechkit.models.published import published_path
from speechkit.models.speech_llm import (CHAT_TEMPLATE, LLM_LORA_TARGETS, STAGES, Example, SpeechLLM, SpeechLLMConfig,
                                         Stage)


@dataclass(frozen=True)
class StageSetup:
    stage: int                                  # 1 projector, 2 special tokens, 3 LoRA + language prompts
    init: str = ""                              # the previous stage's model; "" builds from encoder + llm
    encoder: str = ""                           # Whisper checkpoint (folder or hub id), for stage 1
    llm: str = ""                               # causal LM checkpoint, for stage 1
    projector: str = "conv"
    downsample: int = 5
    projector_hidden: int = 1024
    template: str = CHAT_TEMPLATE               # the LLM's chat template, or a format string as in SpeechLLMConfig
    seed: int = 0                               # seeds the new weights (projector, LoRA): a rerun resumes exactly
    train_manifests: tuple[str, ...] = ("source_train", "multilingual_train")
    batch_seconds: float = 60.0                 # padded audio per batch
    max_batch: int = 16
    eval_manifests: tuple[str, ...] = ("source_dev", "multilingual_dev")
    eval_limit: int = 0                         # utterances per evaluation manifest (0: all)
    # Helpers that depart from the paper's recipe (all off by default; the pretraining chose among them by a proxy):
    projector_norm: bool = False                # RMSNorm on the projector's output at the LLM's embedding scale
    early_lora: int = 0                         # LoRA of this rank on the LLM (not the encoder) from this stage on
    ctc_weight: float = 0.0                     # auxiliary CTC of the transcript from the audio embeddings
    # steps of that CTC alone before the stage trains: the projector learns to place each word said near the LLM's
    # embedding of it, with no LLM in the step (a new model's first stage only)
    ctc_warmup_steps: int = 0
    ctc_warmup_batch: int = 64                  # utterances per warm-up step (a step is cheap: projector + CTC)
    encoder_cache: bool = False                 # cache the frozen encoder's outputs beside the data (stages 1-2)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {sorted(STAGES)}, got {self.stage}")
        if self.early_lora < 0 or self.ctc_weight < 0:
            raise ValueError(f"early_lora and ctc_weight must be >= 0: {self.early_lora}, {self.ctc_weight}")
        if self.ctc_warmup_steps < 0 or self.ctc_warmup_batch < 1:
            raise ValueError(f"ctc_warmup_steps must be >= 0 and ctc_warmup_batch >= 1: {self.ctc_warmup_steps}, "
                             f"{self.ctc_warmup_batch}")
        if self.ctc_warmup_steps and self.init:
            raise ValueError("the CTC warm-up starts a new projector: it needs a new model (no `init`)")
        if not self.init and not (self.encoder and self.llm):
            raise ValueError("stage needs `init` (a saved speech LLM) or both `encoder` and `llm` checkpoints")
        for name in ("train_manifests", "eval_manifests"):  # notebooks give lists; frozen, so set the tuples
            object.__setattr__(self, name, name_list(getattr(self, name), name))

    @property
    def spec(self) -> Stage:
        spec = STAGES[self.stage]
        if self.early_lora and not spec.lora_rank:
            spec = replace(spec, lora_rank=self.early_lora, lora_targets=LLM_LORA_TARGETS)
        return replace(spec, ctc_weight=self.ctc_weight) if self.ctc_weight else spec


CHECKPOINT = "checkpoint"  # the folder every training stage saves its model to
CTC_WARMUP = "ctc_warmup"  # inside it: the CTC warm-up's own resumable state and loss curve
CTC_WARMUP_STAGE = Stage("ctc warm-up", train=(r"^projector\.",), lm_weight=0.0, ctc_weight=1.0)
ENCODER_CACHE = "encoder_cache"  # beside the benchmark's manifests: frozen-encoder outputs (`StageSetup.encoder_cache`)


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


def build(setup: StageSetup, output_dir: str | Path) -> SpeechLLM:
    """The previous stage's model, or (stage 1) a new one over the encoder and LLM checkpoints."""
    seed_everything(setup.seed)
    if setup.init:
        return SpeechLLM.load(resolve_checkpoint(setup.init, output_dir))
    config = SpeechLLMConfig(encoder=resolve_checkpoint(setup.encoder, output_dir),
                             llm=resolve_checkpoint(setup.llm, output_dir), projector=setup.projector,
                             downsample=setup.downsample, projector_hidden=setup.projector_hidden,
                             projector_norm=setup.projector_norm, template=setup.template)
    return SpeechLLM.from_pretrained_parts(config)


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
    to `checkpoint`. `weights(step)` overrides the stage's span weights at each step (e.g. {"think_weight": 0.55},
    the prompt-loss schedule), logged beside the loss; `cache` supplies frozen-encoder outputs; without `read_audio`
    `example` gets None (an ablation that replaces the audio)."""
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
        value, parts, weight = model.loss_and_weight(items, replace(stage, **step_weights))
        return value, {**parts, **step_weights}, weight

    batches = length_batches_by_epoch([u.duration for u in utterances], batch_seconds, max_batch, config.seed)
    log = train(model, batches, loss, config, checkpoint, progress, before_step)
    if is_main_process():
        model.save(checkpoint)
    return log


def train_stage(model: SpeechLLM, setup: StageSetup, train_config: TrainConfig, data_dir: str | Path,
                checkpoint: str | Path, progress: bool = True,
                on_step: Callable[[int], None] | None = None) -> TrainLog:
    """Freeze/unfreeze as the stage says, train on the labeled manifests, save the model to `checkpoint`.
    `on_step(step)` runs before each step (e.g. an evaluation every N steps)."""
    data_dir = Path(data_dir)
    utterances = [u for name in setup.train_manifests for u in read_manifest(data_dir / f"{name}.jsonl")]
    cache = EncoderCache(data_dir / ENCODER_CACHE, model) if setup.encoder_cache and model.encoder_frozen else None
    if setup.ctc_warmup_steps:
        ctc_warmup(model, setup, train_config, utterances, data_dir, Path(checkpoint) / CTC_WARMUP, cache, progress)
    return fine_tune(model, setup.spec, utterances, data_dir, train_config, checkpoint,
                     batch_seconds=setup.batch_seconds, max_batch=setup.max_batch, cache=cache, progress=progress,
                     on_step=on_step)


def ctc_warmup(model: SpeechLLM, setup: StageSetup, train_config: TrainConfig, utterances: Sequence[Utterance],
               data_dir: Path, checkpoint: Path, cache: EncoderCache | None, progress: bool = True,
               on_step: Callable[[int], None] | None = None) -> TrainLog:
    """`setup.ctc_warmup_steps` steps of the projector alone on the embedding CTC (resumable in `checkpoint`); what
    trained before trains again after. `on_step(step)` runs before each step (e.g. `SpeechLLM.embedding_readout`)."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    freeze_except(model, CTC_WARMUP_STAGE.train, CTC_WARMUP_STAGE.name)
    config = replace(train_config, max_steps=setup.ctc_warmup_steps,
                     warmup_steps=min(train_config.warmup_steps, setup.ctc_warmup_steps // 10))
    try:
        return fine_tune(model, CTC_WARMUP_STAGE, utterances, data_dir, config, checkpoint,
                         batch_seconds=setup.batch_seconds * setup.ctc_warmup_batch / setup.max_batch,
                         max_batch=setup.ctc_warmup_batch, cache=cache, progress=progress, on_step=on_step)
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name in trainable


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


def evaluate_speech_llm(model: SpeechLLM, setup: StageSetup, data_dir: str | Path, manifests: Sequence[str],
                        decoding: DecodingConfig | None = None) -> list[SystemResult]:
    return evaluate(speech_llm_transcriber(model, setup.spec, decoding or DecodingConfig()), data_dir,
                    manifests, max_batch=setup.max_batch * 2, limit=setup.eval_limit)


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
