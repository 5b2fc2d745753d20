"""Seewo's speech-LLM stages 1-3 (SLAM-ASR's recipe, the library side of 10_speech_llm and of the pretraining):
what a stage sets up, builds, trains and evaluates, which loss curve it shows, and stage 3's test against the Whisper
its encoder comes from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from speechkit.core.results import Metric, name_list
from speechkit.data.manifest import Utterance, read_manifest
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.encoder_cache import EncoderCache
from speechkit.engine.evaluation import SystemResult, evaluate, result_metrics
from speechkit.engine.recipes import compare, fine_tune, resolve_checkpoint, speech_llm_transcriber, whisper_transcriber
from speechkit.engine.training import LOG_FILE, TrainConfig, TrainLog, seed_everything
from speechkit.models.freezing import freeze_except
from speechkit.models.speech_llm import CHAT_TEMPLATE, LLM_LORA_TARGETS, STAGES, SpeechLLM, SpeechLLMConfig, Stage
from speechkit.slam_asr.claims import STAGE3_MINUS_WHISPER


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
    # tokens later methods write, given rows in a new model (stage 1): the published models' are CoT's <think>,
    # </think> and routing's <internal>, <external>, <rewrite>
    extra_tokens: tuple[str, ...] = ()
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
        tokens = name_list(self.extra_tokens, "extra_tokens") if self.extra_tokens else ()  # none: the plain model
        object.__setattr__(self, "extra_tokens", tokens)

    @property
    def spec(self) -> Stage:
        spec = STAGES[self.stage]
        if self.early_lora and not spec.lora_rank:
            spec = replace(spec, lora_rank=self.early_lora, lora_targets=LLM_LORA_TARGETS)
        return replace(spec, ctc_weight=self.ctc_weight) if self.ctc_weight else spec


CTC_WARMUP = "ctc_warmup"  # inside a stage's checkpoint folder: the CTC warm-up's own resumable state and curve
CTC_WARMUP_STAGE = Stage("ctc warm-up", train=(r"^projector\.",), lm_weight=0.0, ctc_weight=1.0)
ENCODER_CACHE = "encoder_cache"  # beside the benchmark's manifests: frozen-encoder outputs (`StageSetup.encoder_cache`)


def build(setup: StageSetup, output_dir: str | Path) -> SpeechLLM:
    """The previous stage's model, or (stage 1) a new one over the encoder and LLM checkpoints."""
    seed_everything(setup.seed)
    if setup.init:
        model = SpeechLLM.load(resolve_checkpoint(setup.init, output_dir))
        if setup.extra_tokens and model.config.extra_tokens != setup.extra_tokens:
            raise ValueError(f"{setup.init} was built with extra_tokens {list(model.config.extra_tokens)}, not "
                             f"{list(setup.extra_tokens)}: a model's tokens are fixed when stage 1 builds it")
        return model
    config = SpeechLLMConfig(encoder=resolve_checkpoint(setup.encoder, output_dir),
                             llm=resolve_checkpoint(setup.llm, output_dir), projector=setup.projector,
                             downsample=setup.downsample, projector_hidden=setup.projector_hidden,
                             projector_norm=setup.projector_norm, template=setup.template,
                             extra_tokens=setup.extra_tokens)
    return SpeechLLM.from_pretrained_parts(config)


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


def evaluate_speech_llm(model: SpeechLLM, setup: StageSetup, data_dir: str | Path, manifests: Sequence[str],
                        decoding: DecodingConfig | None = None) -> list[SystemResult]:
    return evaluate(speech_llm_transcriber(model, setup.spec, decoding or DecodingConfig()), data_dir,
                    manifests, max_batch=setup.max_batch * 2, limit=setup.eval_limit)


TEST_HYPOTHESES = "test_hypotheses.jsonl"  # the speech LLM's test decodings, beside its dev ones


def stage_curve(setup: StageSetup, checkpoint: str | Path, output_dir: str | Path) -> Path:
    """The loss curve of the model a stage evaluates: its own training's (`checkpoint`), or, when the stage trained
    no steps, the one its `init` was trained with (for `published:stage3`, the pretraining's committed curve)."""
    own = Path(checkpoint) / LOG_FILE
    if own.is_file():
        return own
    if not setup.init:
        raise FileNotFoundError(f"no training curve: {own} does not exist and the stage has no `init`")
    return Path(resolve_checkpoint(setup.init, output_dir)) / LOG_FILE


@dataclass(frozen=True)
class WhisperComparison:
    speech_llm: list[SystemResult]
    whisper: list[SystemResult]
    metrics: list[Metric]        # both systems' rates, then one paired difference (speech LLM - Whisper) per group

    @property
    def differences(self) -> list[Metric]:
        return [m for m in self.metrics if m.name.startswith(STAGE3_MINUS_WHISPER)]


def compare_with_whisper(model: SpeechLLM, setup: StageSetup, data_dir: str | Path, manifests: Sequence[str],
                         decoding: DecodingConfig) -> WhisperComparison:
    """The speech LLM and the real Whisper its encoder comes from, decoded on the same test utterances, with the
    paired bootstrap difference for each (manifest, language) group: Seewo's claim that the speech LLM beats the
    conventional ASR it is built on."""
    speech_llm = evaluate_speech_llm(model, setup, data_dir, manifests, decoding)
    whisper = evaluate(whisper_transcriber(model.config.encoder), data_dir, manifests, limit=setup.eval_limit)
    differences = [Metric(f"{STAGE3_MINUS_WHISPER} {key}", d.difference, d.interval.low, d.interval.high,
                          unit="rate", claim="the speech LLM beats the conventional ASR")
                   for key, d in compare(whisper, speech_llm)]
    return WhisperComparison(speech_llm, whisper, result_metrics(speech_llm, prefix="test ") +
                             result_metrics(whisper, prefix="test Whisper ") + differences)

