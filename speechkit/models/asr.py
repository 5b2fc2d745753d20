"""The Whisper ASR: the kit's conventional baseline, the encoder of the speech LLM, and the "ASR model" of ReHear and
Ling & Ye - the real Whisper tiny.en / base from registry packages by default (`pkg:whisper-tiny.en`), any Whisper
checkpoint by hub id or path in the `full` profile, through the same class.

One departure from `WhisperForConditionalGeneration`: `encode` can run the encoder on the batch's own length with
a key-padding mask (what the speech LLM does: 8x cheaper than 30 s at 5 s, and an utterance's encoding does not
depend on its batch); the ASR's own decoding feeds Whisper the 30-s window it was pretrained on
(`features.window_log_mel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, GenerationMixin, PreTrainedTokenizerFast, WhisperForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from speechkit.core.vocab import language_tag
from speechkit.data.audio import load_utterance
from speechkit.data.features import window_log_mel
from speechkit.data.manifest import Hypothesis, Utterance
from speechkit.models.device import default_device
from speechkit.models.model_import import local_or_hub

ENCODER_FRAMES_PER_SECOND = 50  # Whisper's second convolution halves the 100 Hz mel frame rate


def padding_mask(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """[batch, total] booleans, True where a position lies inside its utterance."""
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]


def encode(encoder: WhisperEncoder, features: torch.Tensor, frame_lengths: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                    torch.Tensor]:
    """Whisper's encoder on features of any length up to its positional table (30 s for real Whisper).

    Returns (hidden states [batch, frames / 2, d_model], their valid lengths). Positions past an utterance's end are
    zeroed between the convolutions and masked as attention keys, so the valid part equals what the utterance gives
    alone (up to float rounding).
    """
    hidden = F.gelu(encoder.conv1(features.to(encoder.conv1.weight.dtype)))
    hidden = hidden * padding_mask(frame_lengths, hidden.shape[-1])[:, None, :].to(hidden.dtype)
    hidden = F.gelu(encoder.conv2(hidden)).transpose(1, 2)
    lengths = (frame_lengths + 1) // 2  # kernel 3, stride 2, padding 1
    frames = hidden.shape[1]
    if frames > encoder.embed_positions.num_embeddings:
        raise ValueError(f"audio of {frames / ENCODER_FRAMES_PER_SECOND:.1f} s exceeds the encoder's "
                         f"{encoder.embed_positions.num_embeddings / ENCODER_FRAMES_PER_SECOND:.0f} s window")
    hidden = hidden + encoder.embed_positions.weight[:frames]
    hidden = F.dropout(hidden, p=encoder.dropout, training=encoder.training)
    keep = padding_mask(lengths.to(hidden.device), frames)
    mask = torch.zeros(keep.shape, dtype=hidden.dtype, device=hidden.device)
    mask = mask.masked_fill(~keep, torch.finfo(hidden.dtype).min)[:, None, None, :]
    for layer in encoder.layers:
        hidden = layer(hidden, mask)
    return encoder.layer_norm(hidden), lengths


class WhisperASR(WhisperForConditionalGeneration):
    """Whisper decoding through the generic `generate` (greedy, beam, sampling, N-best)."""

    def generate(self, *args, **kwargs):
        # Whisper's own generate re-runs the 30 s encoder and long-form logic; we pass `encoder_outputs` instead.
        return GenerationMixin.generate(self, *args, **kwargs)


def decoder_prompt(tokenizer: PreTrainedTokenizerFast, language: str) -> list[int]:
    """The decoder's prompt: a real Whisper's `<|startoftranscript|>[<|xx|><|transcribe|>]<|notimestamps|>` (language
    and task only for a multilingual model: vocabulary of 51,865 or more, openai/whisper's own test), or the
    tiny test Whisper's `<sot><|xx|>`."""
    vocab = tokenizer.get_vocab()
    if "<|notimestamps|>" not in vocab:
        return [tokenizer.bos_token_id, vocab[language_tag(language)]]
    tokens = ["<|startoftranscript|>"]
    if len(vocab) >= 51865:
        tokens += [language_tag(language), "<|transcribe|>"]
    return [vocab[t] for t in tokens + ["<|notimestamps|>"]]


def load_asr(reference: str, dtype: torch.dtype = torch.float32,
             device: str | None = None) -> tuple["WhisperASR", PreTrainedTokenizerFast]:
    """The ASR from `pkg:<name>` (a packaged model, imported on first use), a local folder or a hub id, on `device`
    (default: `default_device()`)."""
    path = local_or_hub(reference)
    model = WhisperASR.from_pretrained(path, dtype=dtype).to(device or default_device())
    return model.eval(), AutoTokenizer.from_pretrained(path)


@dataclass
class ASRBatch:
    features: torch.Tensor          # [batch, n_mels, frames]
    frame_lengths: torch.Tensor     # [batch]
    decoder_input_ids: torch.Tensor  # <sot> <|lang|> text, right-padded
    decoder_attention_mask: torch.Tensor
    labels: torch.Tensor            # <|lang|> text <eot>, shifted by one, -100 on padding

    def to(self, device) -> "ASRBatch":
        return ASRBatch(**{k: v.to(device) for k, v in vars(self).items()})


def make_batch(utterances: Sequence[Utterance], root: str | Path, tokenizer: PreTrainedTokenizerFast,
               n_mels: int, audios: Sequence[np.ndarray] | None = None) -> ASRBatch:
    """Features and targets of labeled utterances (audio read from `root` unless given)."""
    audios = audios if audios is not None else [load_utterance(u, root) for u in utterances]
    features, frame_lengths = window_log_mel(audios, n_mels)
    texts = [tokenizer(u.text, add_special_tokens=False).input_ids for u in utterances]
    prompts = [decoder_prompt(tokenizer, u.language) for u in utterances]
    sequences = [prompt + text + [tokenizer.eos_token_id] for prompt, text in zip(prompts, texts, strict=True)]
    width = max(len(s) for s in sequences) - 1
    inputs = torch.full((len(sequences), width), tokenizer.pad_token_id)
    labels = torch.full((len(sequences), width), -100)
    for i, sequence in enumerate(sequences):
        inputs[i, :len(sequence) - 1] = torch.tensor(sequence[:-1])
        labels[i, :len(sequence) - 1] = torch.tensor(sequence[1:])
    return ASRBatch(features, frame_lengths, inputs, (labels != -100).long(), labels)


def loss(model: WhisperASR, batch: ASRBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of the decoder's next-token predictions; returns (loss, parts for logging)."""
    hidden, _ = encode(model.model.encoder, batch.features, batch.frame_lengths)
    decoded = model.model.decoder(input_ids=batch.decoder_input_ids, attention_mask=batch.decoder_attention_mask,
                                  encoder_hidden_states=hidden)
    logits = model.proj_out(decoded.last_hidden_state)
    cross_entropy = F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten(), ignore_index=-100)
    return cross_entropy, {"ce": cross_entropy.item()}


def transcriber(model: WhisperASR, tokenizer: PreTrainedTokenizerFast, **options):
    """A `speechkit.engine.evaluation.Transcriber`: the best hypothesis of `transcribe` for each utterance."""
    def transcribe_batch(utterances: Sequence[Utterance], audios: Sequence[np.ndarray]) -> list[str]:
        decoded = transcribe(model, tokenizer, audios, [u.language for u in utterances], **options)
        return [nbest[0].text for nbest in decoded]
    return transcribe_batch


@torch.no_grad()
def transcribe(model: WhisperASR, tokenizer: PreTrainedTokenizerFast, audios: Sequence[np.ndarray],
               languages: Sequence[str], num_beams: int = 1, nbest: int = 1, do_sample: bool = False,
               temperature: float = 1.0, tokens_per_second: float = 12.0) -> list[list[Hypothesis]]:
    """Decode a batch; each utterance gets `nbest` hypotheses (text, mean log-probability per token), best first.

    The length limit scales with the audio (`tokens_per_second`), the guard against runaway repetition.
    """
    model.eval()
    device = model.device
    features, frame_lengths = window_log_mel(audios, model.config.num_mel_bins,
                                             model.config.max_source_positions // ENCODER_FRAMES_PER_SECOND)
    hidden, _ = encode(model.model.encoder, features.to(device), frame_lengths.to(device))
    prompt = torch.tensor([decoder_prompt(tokenizer, language) for language in languages], device=device)
    max_new = int(tokens_per_second * max(len(a) for a in audios) / 16_000) + 8
    output = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), decoder_input_ids=prompt,
                            max_new_tokens=max_new, num_beams=num_beams, num_return_sequences=nbest,
                            do_sample=do_sample, temperature=temperature if do_sample else None, top_k=None,
                            top_p=None, return_dict_in_generate=True, output_scores=True,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    sequences = output.sequences[:, prompt.shape[1]:]
    scores = model.compute_transition_scores(output.sequences, output.scores,
                                             getattr(output, "beam_indices", None), normalize_logits=True)
    texts = tokenizer.batch_decode(sequences, skip_special_tokens=True)
    results = []
    for i in range(len(audios)):
        hypotheses = []
        for j in range(i * nbest, (i + 1) * nbest):
            valid = sequences[j] != tokenizer.pad_token_id
            token_scores = scores[j][valid[:scores.shape[1]]]
            score = float(token_scores.mean()) if token_scores.numel() else float("-inf")
            hypotheses.append(Hypothesis(texts[j].strip(), score))
        results.append(sorted(hypotheses, key=lambda h: -h.score))
    return results
