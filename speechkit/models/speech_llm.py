"""The speech LLM (SLAM-ASR, as in Seewo's MLC-SLM system): Whisper encoder -> projector -> causal LM.

One class for every stage. A training stage is a `Stage`: which parameters train (regex patterns over parameter
names), whether LoRA adapters are injected (peft; rank 16, alpha 32 by default, on the LLM's and the encoder's
attention projections), the prompt format, and the loss weight of each span of the target. Saving writes the
configuration, every parameter any stage has trained (projector, new token embeddings, LoRA adapters) as
safetensors, and the tokenizer; loading rebuilds the base models from their checkpoints and applies them.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, TrainableTokensConfig, inject_adapter_in_model
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from speechkit.core.fileio import atomic_path, write_json
from speechkit.core.vocab import AUDIO_PLACEHOLDER, LANGUAGE_TOKENS, SPEECH_TOKENS
from speechkit.data.features import log_mel
from speechkit.models.asr import WhisperASR, encode, padding_mask
from speechkit.models.freezing import freeze_except
from speechkit.models.lm import target_loss
from speechkit.models.device import default_device
from speechkit.models.model_import import local_or_hub

CONFIG_FILE = "speech_llm.json"
CHAT_TEMPLATE = "chat"  # use the tokenizer's chat template instead of a format string
WEIGHTS_FILE = "trained.safetensors"

# "Transcribe the speech above" in each MLC-SLM language (stage 3's language-specific prompts).
PROMPTS = {
    "en": "Transcribe the speech above.", "fr": "Transcris la parole ci-dessus.",
    "de": "Transkribiere die obige Sprache.", "it": "Trascrivi il parlato qui sopra.",
    "pt": "Transcreva a fala acima.", "es": "Transcribe el audio anterior.", "ja": "上の音声を書き起こしてください。",
    "ko": "위의 음성을 받아써 주세요.", "ru": "Расшифруй речь выше.", "th": "ถอดความเสียงพูดข้างต้น",
    "vi": "Hãy chép lại lời nói ở trên.",
}
# Attention projections of both the LLM and the Whisper encoder (a regex: both name them q_proj/k_proj/v_proj).
LORA_TARGETS = r".*(llm|encoder).*\.(q_proj|k_proj|v_proj|o_proj|out_proj)$"
LLM_LORA_TARGETS = r".*llm.*\.(q_proj|k_proj|v_proj|o_proj)$"  # the LLM's only: the encoder stays frozen (cacheable)
# The LLM's input embeddings and LM head, whose rows for the kit's own tokens train (peft TrainableTokens)
TOKEN_ROW_TARGETS = r"llm\.(.*\.)?(embed_tokens|lm_head)"
CTC_TEMPERATURE = 0.05  # the embedding CTC's cosine similarities / this: logits within +-20


@dataclass(frozen=True)
class Stage:
    """What one training stage changes. Patterns are regexes searched in parameter names."""
    name: str
    train: tuple[str, ...] = (r"^projector\.",)
    lora_rank: int = 0                 # 0: no adapters; stages after the first LoRA stage keep training them
    lora_alpha: int = 32
    lora_targets: str = LORA_TARGETS   # which projections get adapters (a regex over module names)
    # the rows of the kit's own tokens (<speech>, <LANG_xx>, <transcribe>, ...) in the LLM's embeddings and LM head
    # train, every other row stays as pretrained (and the checkpoint holds those rows, not the 49k-row matrix)
    token_rows: bool = False
    output_format: str = "plain"       # "plain": the transcript; "tagged": <LANG_xx> <transcribe> ... </transcribe>
    language_prompts: bool = False     # the prompt in the utterance's language instead of English
    # loss weights of the target spans methods add, by their TargetSpan.weight name (1.0 for a name not given)
    span_weights: dict[str, float] = field(default_factory=dict)
    # auxiliary CTC loss on the projector's output, scored against the LLM's own embedding table (0: none): the
    # audio embeddings are pushed towards the embeddings of the words said, which the LLM already reads
    ctc_weight: float = 0.0
    # weight of the LLM's token loss; 0 runs no LLM at all (the projector's CTC warm-up: a step costs the projector)
    lm_weight: float = 1.0

    def __post_init__(self):
        if self.ctc_weight < 0 or self.lm_weight < 0 or not self.ctc_weight + self.lm_weight:
            raise ValueError(f"ctc_weight and lm_weight must be >= 0, one of them > 0: {self.ctc_weight}, "
                             f"{self.lm_weight}")
        if self.output_format not in ("plain", "tagged"):
            raise ValueError(f"output_format must be 'plain' or 'tagged', not {self.output_format!r}")
        for pattern in self.train:
            re.compile(pattern)
        if any(weight < 0 for weight in self.span_weights.values()):
            raise ValueError(f"span weights must be >= 0: {self.span_weights}")

    def span_weight(self, name: str) -> float:
        return self.span_weights.get(name, 1.0)


# The speech LLM's transcription stages (SLAM-ASR's, as the kit's published checkpoints were trained): every method
# starts from stage 3's format (LoRA, tagged output, prompts in the utterance's language).
STAGES = {
    1: Stage("projector", train=(r"^projector\.",)),
    2: Stage("special tokens", train=(r"^projector\.",), token_rows=True, output_format="tagged"),
    3: Stage("lora", train=(r"^projector\.",), lora_rank=16, output_format="tagged", language_prompts=True),
}


@dataclass(frozen=True)
class SpeechLLMConfig:
    encoder: str                       # Whisper checkpoint: local folder or hub id
    llm: str                           # causal LM checkpoint: local folder or hub id
    projector: str = "conv"            # "conv": Conv1d + 2 Linear (the paper); "stack": frame stacking + 2 Linear
    downsample: int = 5                # encoder frames per audio embedding: 50 Hz / 5 = 10 Hz
    projector_hidden: int = 1024
    # an RMSNorm on the projector's output, its gain started at the LLM's embedding RMS (as Ultravox does), so audio
    # embeddings enter at the scale the LLM's own token embeddings have
    projector_norm: bool = False
    template: str = "USER: {speech} {prompt} ASSISTANT:"  # the paper's "USER: <S> <P> ASSISTANT: <T>", or "chat"
    trained: tuple[str, ...] = ()      # every pattern trained so far (what `save` writes)
    lora_rank: int = 0
    lora_alpha: int = 32
    lora_targets: str = LORA_TARGETS
    token_rows: bool = False           # the kit's token rows of embeddings and LM head are trainable (stage 2 on)
    stages: tuple[str, ...] = field(default=())
    # tokens methods write beside the kit's own (e.g. CoT's): added to the tokenizer and trained with the kit's rows
    # (their order fixes the rows' order, so it is part of a saved model)
    extra_tokens: tuple[str, ...] = ()

    def __post_init__(self):
        if self.projector not in ("conv", "stack") or self.downsample < 1:
            raise ValueError(f"projector must be 'conv' or 'stack' with downsample >= 1: {self}")
        if self.template != CHAT_TEMPLATE and ("{speech}" not in self.template or "{prompt}" not in self.template):
            raise ValueError(f"the template needs {{speech}} and {{prompt}} fields, or is {CHAT_TEMPLATE!r}")
        kit = {AUDIO_PLACEHOLDER, *SPEECH_TOKENS, *LANGUAGE_TOKENS}
        if len(set(self.extra_tokens)) < len(self.extra_tokens) or kit & set(self.extra_tokens):
            raise ValueError(f"extra_tokens must be distinct and not the kit's own: {self.extra_tokens}")

    @property
    def tokens(self) -> tuple[str, ...]:
        """The special tokens the model adds to its LLM, in the order of their rows (the extra tokens between the
        speech tags and the language tags: the published checkpoints' order)."""
        return (AUDIO_PLACEHOLDER, *SPEECH_TOKENS, *self.extra_tokens, *LANGUAGE_TOKENS)


class Projector(nn.Module):
    """Encoder frames -> LLM embeddings at 1/`downsample` of the frame rate (10 Hz from Whisper's 50 Hz by default)."""

    def __init__(self, kind: str, encoder_dim: int, llm_dim: int, hidden: int, downsample: int,
                 output_rms: float | None = None):
        super().__init__()
        self.kind, self.downsample = kind, downsample
        if kind == "conv":
            self.conv = nn.Conv1d(encoder_dim, encoder_dim, kernel_size=downsample, stride=downsample)
            first = encoder_dim
        else:
            first = encoder_dim * downsample
        self.linear1 = nn.Linear(first, hidden)
        self.linear2 = nn.Linear(hidden, llm_dim)
        self.norm = None
        if output_rms is not None:
            self.norm = nn.RMSNorm(llm_dim)
            nn.init.constant_(self.norm.weight, output_rms)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[batch, frames, encoder_dim] -> ([batch, ceil(frames / k), llm_dim], valid lengths).

        Frames past each utterance's end are zeroed first, so a window that straddles the end sees what it would
        see alone (the tail is zero-padded to a multiple of k either way)."""
        k = self.downsample
        frames = frames * padding_mask(lengths, frames.shape[1])[..., None].to(frames.dtype)
        frames = F.pad(frames, (0, 0, 0, -frames.shape[1] % k))
        if self.kind == "conv":
            hidden = self.conv(frames.transpose(1, 2)).transpose(1, 2)
        else:
            hidden = frames.reshape(frames.shape[0], frames.shape[1] // k, -1)
        output = self.linear2(F.relu(self.linear1(hidden)))
        return output if self.norm is None else self.norm(output), (lengths + k - 1) // k


@dataclass(frozen=True)
class TargetSpan:
    """Target text a method adds to the tagged transcript (e.g. a CoT reasoning span, a routing decision), weighted in
    the loss by `Stage.span_weight(weight)`."""
    text: str
    weight: str                        # the name its loss weight goes by in `Stage.span_weights`
    first: bool = False                # before the language tag (the first generated token), else right after it


@dataclass(frozen=True)
class Example:
    """One utterance as the model sees it in training or decoding."""
    audio: np.ndarray
    language: str
    target: str | None = None          # the transcript (training) or None (decoding)
    context: str | None = None         # optional text placed before the prompt (e.g. previous utterances)
    spans: tuple[TargetSpan, ...] = ()  # target text a method adds around the transcript (tagged output only)
    frames: np.ndarray | None = None   # the frozen encoder's output for `audio` [frames, d_model], if cached


class SpeechLLM(nn.Module):
    def __init__(self, config: SpeechLLMConfig, encoder: nn.Module, llm: nn.Module,
                 tokenizer: PreTrainedTokenizerFast, n_mels: int):
        super().__init__()
        self.config, self.tokenizer, self.n_mels = config, tokenizer, n_mels
        self.encoder, self.llm = encoder, llm
        rms = (float(llm.get_input_embeddings().weight.detach().float().pow(2).mean().sqrt())
               if config.projector_norm else None)  # a pass over the 49k-row matrix: only when it is used
        self.projector = Projector(config.projector, encoder.config.d_model, llm.config.hidden_size,
                                   config.projector_hidden, config.downsample, rms)
        self.placeholder_id = tokenizer.convert_tokens_to_ids(AUDIO_PLACEHOLDER)

    # -- building and persistence ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained_parts(cls, config: SpeechLLMConfig, dtype: torch.dtype = torch.float32,
                              device: str | None = None) -> "SpeechLLM":
        """Base models from their checkpoints, on `device` (default: `default_device()`); the LLM's tokenizer gains
        any missing special token."""
        encoder, llm_path = (local_or_hub(path) for path in (config.encoder, config.llm))
        whisper = WhisperASR.from_pretrained(encoder, dtype=dtype)
        llm = AutoModelForCausalLM.from_pretrained(llm_path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(llm_path)
        missing = [t for t in config.tokens if t not in tokenizer.get_vocab()]
        if missing:  # a real chat LLM: add the tokens and rows for them (learnt in stage 2)
            tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
            # the model's own seeded init for the new rows: mean resizing samples from the embeddings' covariance,
            # whose rounding follows the thread count, so a long run could not resume on another machine
            llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        model = cls(config, whisper.model.encoder, llm, tokenizer, whisper.config.num_mel_bins)
        if config.token_rows:
            model._inject_token_rows()
        if config.lora_rank:
            model._inject_lora(config.lora_rank, config.lora_alpha, config.lora_targets)
        return model.to(dtype).to(device or default_device())

    def _inject_token_rows(self) -> None:
        output, embeddings = self.llm.get_output_embeddings(), self.llm.get_input_embeddings()
        if output.weight is embeddings.weight:
            # tied (SmolLM2): embeddings and head each learn their own rows, and each is merged into its own
            # matrix outside training (one shared matrix would take the second merge's rows for both)
            output.weight = nn.Parameter(output.weight.detach().clone(), requires_grad=False)
            self.llm.config.tie_word_embeddings = False
        ids = self.tokenizer.convert_tokens_to_ids(list(self.config.tokens))
        self._inject(TrainableTokensConfig(token_indices=ids, target_modules=TOKEN_ROW_TARGETS), "token_rows")

    def train(self, mode: bool = True) -> "SpeechLLM":
        super().train(mode)
        self._sync_token_rows()
        return self

    def _sync_token_rows(self) -> None:
        """The kit's token rows merged into the LLM's matrices unless they are training: unmerged, every forward
        copies the 49k-row matrix (decoding measured 1.95x slower)."""
        for module in self.llm.modules():
            if isinstance(module, TrainableTokensLayer):
                learning = self.training and any(p.requires_grad for p in module.trainable_tokens_delta.parameters())
                if learning and module.merged:
                    module.unmerge()
                elif not learning and not module.merged:
                    module.merge()

    def _inject_lora(self, rank: int, alpha: int, targets: str) -> None:
        self._inject(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.05, target_modules=targets), "default")

    def _inject(self, config, name: str) -> None:
        """peft adapters of two kinds in one model (token rows, LoRA), each under its own adapter name."""
        with warnings.catch_warnings():  # peft warns that a second kind joins the first: that is the intent
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            inject_adapter_in_model(config, self, adapter_name=name)

    def require_tokens(self, tokens: Sequence[str], method: str) -> None:
        """A clear error before `method` trains or decodes with tokens this model was built without (they would be
        split into ordinary text pieces and their meaning lost)."""
        missing = [t for t in tokens if t not in self.config.tokens]
        if missing:
            raise ValueError(f"{method} writes {', '.join(missing)}, which this speech LLM was built without: build "
                             "it with SpeechLLMConfig(extra_tokens=...) naming them (the kit's published "
                             "checkpoints have them)")

    def start_stage(self, stage: Stage) -> dict[str, int]:
        """Freeze everything but what `stage` trains (adding LoRA adapters if it asks); returns parameter counts."""
        config = self.config
        if stage.lora_rank and not config.lora_rank:
            self._inject_lora(stage.lora_rank, stage.lora_alpha, stage.lora_targets)
            config = replace(config, lora_rank=stage.lora_rank, lora_alpha=stage.lora_alpha,
                             lora_targets=stage.lora_targets)
        if stage.token_rows and not config.token_rows:
            self._inject_token_rows()
            config = replace(config, token_rows=True)
        patterns = stage.train + ((r"lora_",) if config.lora_rank else ()) + (
            (r"trainable_tokens_delta",) if stage.token_rows else ())
        counts = freeze_except(self, patterns, f"stage {stage.name!r}")
        self._sync_token_rows()
        self.config = replace(config, trained=tuple(dict.fromkeys(config.trained + patterns)),
                              stages=config.stages + (stage.name,))
        return counts

    def save(self, path: str | Path) -> None:
        """Configuration, trained parameters (safetensors) and tokenizer: independent of the code that trained it."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        weights, stored = {}, set()
        for name, tensor in self.state_dict().items():
            # tied weights (embeddings and LM head) share memory: store them once, loading re-ties them
            if any(re.search(p, name) for p in self.config.trained) and tensor.data_ptr() not in stored:
                stored.add(tensor.data_ptr())
                weights[name] = tensor.detach().cpu().contiguous()
        with atomic_path(path / WEIGHTS_FILE) as tmp:  # a killed run never leaves half a weights file
            save_file(weights, str(tmp))
        write_json(path / CONFIG_FILE, asdict(self.config))
        self.tokenizer.save_pretrained(path)

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype = torch.float32, device: str | None = None) -> "SpeechLLM":
        """A saved model, on `device` (default: `default_device()`)."""
        path = Path(path)
        raw = json.loads((path / CONFIG_FILE).read_text())
        config = SpeechLLMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        model = cls.from_pretrained_parts(config, dtype, device)
        if (path / "tokenizer_config.json").is_file():  # else the LLM's own with the kit's tokens, as built above
            model.tokenizer = AutoTokenizer.from_pretrained(path)
        weights = load_file(str(path / WEIGHTS_FILE))
        rows = {tensor.shape[0] for name, tensor in weights.items() if name.endswith("token_rows")}
        if rows and rows != {len(config.tokens)}:
            raise ValueError(f"{path}: its weights hold {rows.pop()} rows of kit tokens, its {CONFIG_FILE} names "
                             f"{len(config.tokens)} ({', '.join(config.tokens)}); a model saved before b0fca38 had the "
                             "CoT and routing tags without listing them: set its extra_tokens to "
                             "speechkit.slam_asr.cot.THINK_TOKENS + speechkit.speech_hands.routing.ROUTING_TOKENS")
        unexpected = model.load_state_dict(weights, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"{path}: weights for parameters the model does not have: {unexpected[:5]}")
        return model.eval()

    # -- inputs ----------------------------------------------------------------------------------------------
    def prompt_text(self, example: Example, stage: Stage) -> str:
        speech = f"<speech>{AUDIO_PLACEHOLDER}</speech>" if stage.output_format == "tagged" else AUDIO_PLACEHOLDER
        prompt = PROMPTS[example.language if stage.language_prompts else "en"]
        if example.context:
            prompt = f"{example.context} {prompt}"
        if self.config.template == CHAT_TEMPLATE:  # the LLM's own chat format (a real chat LLM in the full profile)
            return self.tokenizer.apply_chat_template([{"role": "user", "content": f"{speech} {prompt}"}],
                                                      tokenize=False, add_generation_prompt=True)
        return self.config.template.format(speech=speech, prompt=prompt)

    def target_spans(self, example: Example, stage: Stage) -> list[tuple[str, float]]:
        """The target as (text, loss weight) spans; prompt tokens are never in the loss."""
        eos = self.tokenizer.eos_token
        if stage.output_format == "plain":
            return [(f" {example.target}{eos}", 1.0)]
        first = [(s.text, stage.span_weight(s.weight)) for s in example.spans if s.first]
        after = [(s.text, stage.span_weight(s.weight)) for s in example.spans if not s.first]
        return [*first, (f" <LANG_{example.language}>", 1.0), *after,
                (f" <transcribe> {example.target} </transcribe>{eos}", 1.0)]

    @property
    def encoder_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.encoder.parameters())

    def encode_audio(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's hidden states [batch, frames, d_model] and their valid lengths."""
        features, frame_lengths = log_mel(audios, self.n_mels)
        device = self.projector.linear1.weight.device
        return encode(self.encoder, features.to(device), frame_lengths.to(device))

    def embed_audio(self, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio embeddings [batch, tokens, llm_dim] and lengths; cached encoder frames are used while the encoder
        is frozen (an utterance's encoding does not depend on its batch, so they are what it would compute)."""
        if self.encoder_frozen and all(e.frames is not None for e in examples):
            device = self.projector.linear1.weight.device
            lengths = torch.tensor([len(e.frames) for e in examples], device=device)
            hidden = torch.zeros(len(examples), int(lengths.max()), examples[0].frames.shape[-1], device=device)
            for i, e in enumerate(examples):
                hidden[i, :len(e.frames)] = torch.from_numpy(np.asarray(e.frames, np.float32))
        else:
            hidden, lengths = self.encode_audio([e.audio for e in examples])
        return self.projector(hidden, lengths)

    def build_inputs(self, examples: Sequence[Example], stage: Stage, with_targets: bool) -> dict[str, torch.Tensor]:
        """Left-padded `inputs_embeds`, `attention_mask`, `position_ids` and, with targets, `labels` + `weights`.

        The placeholder token is replaced by the utterance's audio embeddings; left padding makes the last
        position of every row its prompt's end, which is what batched generation needs."""
        audio, audio_lengths = self.embed_audio(examples)
        texts, labels, weights = [], [], []  # per row: token ids before and after the audio, and the loss labels
        for i, example in enumerate(examples):
            ids = self.tokenizer(self.prompt_text(example, stage), add_special_tokens=False).input_ids
            at = ids.index(self.placeholder_id)
            row_labels = [-100] * (len(ids) - 1 + int(audio_lengths[i]))
            row_weights = [0.0] * len(row_labels)
            after = ids[at + 1:]
            if with_targets:
                for text, weight in self.target_spans(example, stage):
                    target_ids = self.tokenizer(text, add_special_tokens=False).input_ids
                    after = after + target_ids
                    row_labels += target_ids
                    row_weights += [weight] * len(target_ids)
            texts.append((ids[:at], after))
            labels.append(row_labels)
            weights.append(row_weights)
        # one embedding lookup for the whole batch (with trainable token rows, each lookup assembles the matrix)
        flat = [token for before, after in texts for token in before + after]
        embedded = self.llm.get_input_embeddings()(torch.tensor(flat, device=audio.device)).split(
            [n for before, after in texts for n in (len(before), len(after))])
        rows = [torch.cat([embedded[2 * i], audio[i, :audio_lengths[i]], embedded[2 * i + 1]])
                for i in range(len(examples))]
        width = max(len(r) for r in rows)
        inputs = torch.zeros(len(rows), width, rows[0].shape[-1], dtype=rows[0].dtype, device=audio.device)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=audio.device)
        label_tensor = torch.full((len(rows), width), -100, device=audio.device)
        weight_tensor = torch.zeros(len(rows), width, device=audio.device)
        for i, row in enumerate(rows):
            inputs[i, width - len(row):] = row
            mask[i, width - len(row):] = 1
            label_tensor[i, width - len(row):] = torch.tensor(labels[i], device=audio.device)
            weight_tensor[i, width - len(row):] = torch.tensor(weights[i], device=audio.device)
        batch = {"inputs_embeds": inputs, "attention_mask": mask,
                 "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        if with_targets:
            batch |= {"labels": label_tensor, "weights": weight_tensor}
        if with_targets and stage.ctc_weight:
            batch |= {"audio_embeds": audio, "audio_lengths": audio_lengths}
        return batch

    def loss(self, examples: Sequence[Example], stage: Stage) -> tuple[torch.Tensor, dict[str, float]]:
        """`lm_weight` x the token-weighted cross-entropy, sum(w * CE) / sum(w) over target tokens (prompt tokens have
        w = 0), + `ctc_weight` x the embedding CTC of the audio."""
        return self.loss_and_weight(examples, stage)[:2]

    def loss_and_weight(self, examples: Sequence[Example], stage: Stage) -> tuple[torch.Tensor, dict[str, float],
                                                                                 float]:
        """`loss`, and the weight it is a mean over: sum(w) of the target tokens (the utterances in a CTC-only
        step), which training over several processes or micro-batches normalises by. The auxiliary CTC, a mean over
        utterances, then counts each share in proportion to its token weight: exact for the LM term only."""
        if not stage.lm_weight:  # the projector alone: no LLM forward
            audio, audio_lengths = self.embed_audio(examples)
            ctc = self.embedding_ctc_loss(audio, audio_lengths, [e.target for e in examples])
            return stage.ctc_weight * ctc, {"ctc": ctc.item()}, float(len(examples))
        batch = self.build_inputs(examples, stage, with_targets=True)
        audio, audio_lengths = batch.pop("audio_embeds", None), batch.pop("audio_lengths", None)
        loss, token_loss, weight = target_loss(self.llm, **batch)
        loss = stage.lm_weight * loss
        parts = {"unweighted": token_loss.mean().item()}
        if stage.ctc_weight:
            ctc = self.embedding_ctc_loss(audio, audio_lengths, [e.target for e in examples])
            loss = loss + stage.ctc_weight * ctc
            parts["ctc"] = ctc.item()
        return loss, parts, weight.item()

    def embedding_log_probs(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, tokens, vocab] log-probabilities of each audio embedding being each row of the LLM's input
        embedding table: cosine similarity / `CTC_TEMPERATURE`, both sides taken about the table's mean row. A
        trained LLM's rows share a large common direction (SmolLM2's: mean cosine 0.44), so raw cosines barely
        separate them (an audio embedding equal to a token's own row gave that token 0.3%); the end-of-text token is
        the CTC blank."""
        table = self.llm.get_input_embeddings().weight.float()
        mean = table.mean(0)
        return (F.normalize(audio.float() - mean, dim=-1) @ F.normalize(table - mean, dim=-1).T
                / CTC_TEMPERATURE).log_softmax(-1)

    def embedding_ctc_loss(self, audio: torch.Tensor, lengths: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """CTC of the transcript's tokens from the audio embeddings (`embedding_log_probs`)."""
        log_probs = self.embedding_log_probs(audio)
        targets = [self.tokenizer(f" {text}", add_special_tokens=False).input_ids for text in texts]
        return F.ctc_loss(log_probs.transpose(0, 1), torch.tensor([t for ids in targets for t in ids]),
                          lengths.cpu(), torch.tensor([len(ids) for ids in targets]),
                          blank=self.tokenizer.eos_token_id, reduction="mean", zero_infinity=True)

    @torch.no_grad()
    def embedding_readout(self, examples: Sequence[Example]) -> list[str]:
        """What the audio embeddings say by themselves: greedy CTC over the embedding table (repeats merged, blanks
        dropped). A diagnostic of the projector, before the LLM reads anything."""
        audio, lengths = self.embed_audio(examples)
        best = self.embedding_log_probs(audio).argmax(-1).cpu()
        texts = []
        for row, length in zip(best, lengths.tolist(), strict=True):
            ids = torch.unique_consecutive(row[:length]).tolist()
            texts.append(self.tokenizer.decode([i for i in ids if i != self.tokenizer.eos_token_id]).strip())
        return texts
