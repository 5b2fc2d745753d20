"""Decoding the speech LLM: greedy, beam search, multinomial sampling, beam+sampling; N-best; output guards.

The guards answer the failure users of speech LLMs report most: runaway repetition (a phrase looping until the
length limit) and prompt echo (the instruction copied into the transcript). The length limit scales with the audio,
a repeated n-gram run is cut back to one occurrence, and an echoed prompt is removed; each intervention is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from speechkit.data.manifest import Hypothesis, NBest
from speechkit.models.speech_llm import PROMPTS, Example, SpeechLLM, Stage

METHODS = ("greedy", "beam", "sampling", "beam_sampling")
_LANGUAGE = re.compile(r"<LANG_(\w+)>")
_TRANSCRIBE = re.compile(r"<transcribe>(.*?)(</transcribe>|$)", re.S)


@dataclass(frozen=True)
class DecodingConfig:
    method: str = "greedy"
    num_beams: int = 1               # beam size for beam and beam_sampling
    max_new_tokens: int = 150
    temperature: float = 1.0         # for sampling and beam_sampling
    nbest: int = 1                   # hypotheses returned per utterance (at most num_beams for beam search)
    tokens_per_second: float = 20.0  # length limit from the audio's duration: the runaway guard
    max_repeats: int = 3             # an n-gram repeated more often than this in a row is cut back to one

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown decoding method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method in ("beam", "beam_sampling") and self.num_beams < 2:
            raise ValueError(f"{self.method} needs num_beams >= 2")
        if self.method in ("greedy", "sampling") and self.num_beams != 1:
            raise ValueError(f"{self.method} decodes with one beam; set num_beams = 1")
        if self.method.startswith("beam") and self.nbest > self.num_beams:
            raise ValueError(f"nbest ({self.nbest}) cannot exceed num_beams ({self.num_beams})")
        if self.max_new_tokens < 1 or self.temperature <= 0 or self.nbest < 1:
            raise ValueError(f"invalid decoding configuration: {self}")


@dataclass(frozen=True)
class Decoded:
    text: str                        # the transcript, after parsing and guards
    raw: str                         # everything the model generated
    language: str | None             # from <LANG_xx>, when the model emitted one
    score: float                     # mean log-probability per generated token
    guard: str = ""                  # "", "repetition", "echo" or "repetition+echo"
    first_token_probability: float = 0.0  # of the first generated token (a routing token's confidence)


def parse(raw: str) -> tuple[str | None, str]:
    """(language, transcript) from the model's output: the text inside <transcribe> when it is there."""
    language = _LANGUAGE.search(raw)
    inside = _TRANSCRIBE.search(raw)
    text = inside.group(1) if inside else raw
    text = re.sub(r"<[^>]+>", " ", text)  # stray special tokens never belong to a transcript
    return (language.group(1) if language else None), " ".join(text.split())


def cut_repetitions(text: str, max_repeats: int) -> tuple[str, bool]:
    """Cut any run of the same 1-6 word n-gram repeated more than `max_repeats` times in a row back to one."""
    words = text.split()
    changed = False
    for n in range(1, 7):
        i = 0
        while i + n <= len(words):
            gram = words[i:i + n]
            count = 1
            while words[i + count * n:i + (count + 1) * n] == gram:
                count += 1
            if count > max_repeats:
                del words[i + n:i + count * n]
                changed = True
            i += 1
    return " ".join(words), changed


def strip_echo(text: str) -> tuple[str, bool]:
    """Remove a copied instruction ("Transcribe the speech above.", in any language) from the transcript."""
    for prompt in PROMPTS.values():
        if prompt.lower().rstrip(".。") in text.lower():
            pattern = re.compile(re.escape(prompt.rstrip(".。")) + r"[.。]?", re.I)
            return " ".join(pattern.sub(" ", text).split()), True
    return text, False


@torch.no_grad()
def decode(model: SpeechLLM, examples: Sequence[Example], stage: Stage, config: DecodingConfig,
           seed: int = 0) -> list[list[Decoded]]:
    """N-best (best first) for each example, decoded as one left-padded batch."""
    model.eval()
    batch = model.build_inputs(examples, stage, with_targets=False)
    longest = max(len(e.audio) for e in examples) / 16_000
    max_new = min(config.max_new_tokens, int(config.tokens_per_second * longest) + 10)
    sampling = config.method in ("sampling", "beam_sampling")
    torch.manual_seed(seed)
    tokenizer = model.tokenizer
    output = model.llm.generate(
        inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"], max_new_tokens=max_new,
        num_beams=config.num_beams, do_sample=sampling, temperature=config.temperature if sampling else None,
        top_k=None, top_p=None, num_return_sequences=config.nbest, return_dict_in_generate=True,
        output_scores=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    scores = model.llm.compute_transition_scores(output.sequences, output.scores,
                                                 getattr(output, "beam_indices", None), normalize_logits=True)
    raws = tokenizer.batch_decode(output.sequences, skip_special_tokens=False)
    results = []
    for i in range(len(examples)):
        decoded = []
        for j in range(i * config.nbest, (i + 1) * config.nbest):
            raw = raws[j].replace(tokenizer.pad_token, "").split(tokenizer.eos_token)[0]
            valid = scores[j][torch.isfinite(scores[j]) & (scores[j] != 0)]
            language, text = parse(raw)
            text, repeated = cut_repetitions(text, config.max_repeats)
            text, echoed = strip_echo(text)
            guard = "+".join(name for name, hit in (("repetition", repeated), ("echo", echoed)) if hit)
            decoded.append(Decoded(text, raw, language, float(valid.mean()) if valid.numel() else 0.0, guard,
                                   float(scores[j][0].exp())))
        results.append(sorted(decoded, key=lambda d: -d.score))
    return results


def to_nbest(utterance_id: str, system: str, decoded: Sequence[Decoded]) -> NBest:
    """The kit's N-best record (manifest format) for one utterance."""
    return NBest(utterance_id, system, tuple(Hypothesis(d.text, d.score) for d in decoded))
