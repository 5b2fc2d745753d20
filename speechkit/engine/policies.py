"""The kit's two GRPO policies (`speechkit.engine.grpo.Policy`): the speech LLM (Seewo's RLVR) and Whisper (Ling & Ye).

Both roll out `num_generations` completions per prompt in one `generate` call (sampled, or the top beams) and score
given completions with one teacher-forced forward pass; log-probabilities are taken at the sampling temperature, as
TRL does (at 1 for beam rollouts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from speechkit.data.features import window_log_mel
from speechkit.engine.grpo import GRPOConfig, Rollout, completion_mask, token_log_probs
from speechkit.models.asr import ENCODER_FRAMES_PER_SECOND, WhisperASR, decoder_prompt, encode
from speechkit.models.speech_llm import Example, SpeechLLM, Stage


def causal_lm_log_probs(llm: torch.nn.Module, prompt_embeds: torch.Tensor, prompt_mask: torch.Tensor,
                        rollout: Rollout, temperature: float) -> torch.Tensor:
    """Per-token log-probabilities [N, T] of each row's completion after its (left-padded) prompt embeddings."""
    ids = rollout.completion_ids.to(prompt_embeds.device)
    embeds = torch.cat([prompt_embeds, llm.get_input_embeddings()(ids)], dim=1)
    mask = torch.cat([prompt_mask, rollout.completion_mask.to(prompt_mask.device)], dim=1)
    hidden = llm.base_model(inputs_embeds=embeds, attention_mask=mask,
                            position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).last_hidden_state
    logits = llm.get_output_embeddings()(hidden[:, prompt_embeds.shape[1] - 1:-1])
    return token_log_probs(logits, ids, temperature)


@dataclass
class SpeechLLMPolicy:
    """Prompts are `speech_llm.Example`s (audio, language, optional context); completions are the raw generated
    text, special tokens kept (a reward may read the tagged spans)."""
    stage: Stage

    def sample(self, model: SpeechLLM, prompts: Sequence[Example], config: GRPOConfig) -> Rollout:
        batch = model.build_inputs(prompts, self.stage, with_targets=False)
        tokenizer = model.tokenizer
        output = model.llm.generate(
            inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
            **config.generation_options(), max_new_tokens=config.max_completion_length,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        ids = output  # generating from embeddings returns the new tokens only
        mask = completion_mask(ids, tokenizer.eos_token_id)
        texts = [tokenizer.decode(row[m.bool()], skip_special_tokens=False).replace(tokenizer.eos_token, "").strip()
                 for row, m in zip(ids, mask, strict=True)]
        return Rollout(texts, ids.cpu(), mask.cpu())

    def log_probs(self, model: SpeechLLM, prompts: Sequence[Example], rollout: Rollout,
                  temperature: float) -> torch.Tensor:
        batch = model.build_inputs(prompts, self.stage, with_targets=False)
        G = len(rollout.completions) // len(prompts)
        return causal_lm_log_probs(model.llm, batch["inputs_embeds"].repeat_interleave(G, 0),
                                   batch["attention_mask"].repeat_interleave(G, 0), rollout, temperature)


@dataclass(frozen=True)
class AudioPrompt:
    audio: np.ndarray
    language: str


@dataclass
class WhisperPolicy:
    """Prompts are `AudioPrompt`s; completions are Whisper's transcripts (special tokens dropped). Whisper's own
    30-s window is used, as in its decoding (`asr.transcribe`)."""
    tokenizer: object
    tokens_per_second: float = 12.0   # the same length guard as decoding

    def _encode(self, model: WhisperASR, prompts: Sequence[AudioPrompt]) -> torch.Tensor:
        features, lengths = window_log_mel([p.audio for p in prompts], model.config.num_mel_bins,
                                           model.config.max_source_positions // ENCODER_FRAMES_PER_SECOND)
        return encode(model.model.encoder, features.to(model.device), lengths.to(model.device))[0]

    def _prompt_ids(self, model: WhisperASR, prompts: Sequence[AudioPrompt]) -> torch.Tensor:
        return torch.tensor([decoder_prompt(self.tokenizer, p.language) for p in prompts], device=model.device)

    def sample(self, model: WhisperASR, prompts: Sequence[AudioPrompt], config: GRPOConfig) -> Rollout:
        prompt = self._prompt_ids(model, prompts)
        longest = max(len(p.audio) for p in prompts) / 16_000
        output = model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=self._encode(model, prompts)), decoder_input_ids=prompt,
            **config.generation_options(),
            max_new_tokens=min(config.max_completion_length, int(self.tokens_per_second * longest) + 8),
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
        ids = output[:, prompt.shape[1]:]
        mask = completion_mask(ids, self.tokenizer.eos_token_id)
        texts = [t.strip() for t in self.tokenizer.batch_decode(ids * mask + self.tokenizer.eos_token_id * (1 - mask),
                                                                 skip_special_tokens=True)]
        return Rollout(texts, ids.cpu(), mask.cpu())

    def log_probs(self, model: WhisperASR, prompts: Sequence[AudioPrompt], rollout: Rollout,
                  temperature: float) -> torch.Tensor:
        G = len(rollout.completions) // len(prompts)
        hidden = self._encode(model, prompts).repeat_interleave(G, 0)
        prompt = self._prompt_ids(model, prompts).repeat_interleave(G, 0)
        ids = rollout.completion_ids.to(model.device)
        inputs = torch.cat([prompt, ids[:, :-1]], dim=1)
        decoded = model.model.decoder(input_ids=inputs, encoder_hidden_states=hidden).last_hidden_state
        logits = model.proj_out(decoded[:, prompt.shape[1] - 1:])
        return token_log_probs(logits, ids, temperature)
