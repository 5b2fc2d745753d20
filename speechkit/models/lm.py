"""The causal LM: SmolLM2-135M-Instruct from its registry package (`pkg:smollm2-135m-instruct`) by default, a real
chat LLM by hub id or path in the `full` profile - the same `AutoModelForCausalLM` either way - and the measures of
what it knows: perplexity per domain, and whether it reads its context (the loss of a sentence right after itself)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from speechkit.core.results import Metric
from speechkit.data.manifest import read_manifest
from speechkit.models.device import default_device
from speechkit.models.model_import import local_or_hub


def load_lm(reference: str, dtype: torch.dtype = torch.float32, device: str | None = None):
    """A causal LM and its tokenizer from `pkg:<name>`, a local folder or a hub id, on `device` (default:
    `default_device()`)."""
    path = local_or_hub(reference)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device or default_device())
    return model.eval(), AutoTokenizer.from_pretrained(path)


def target_loss(lm, attention_mask: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None,
                **inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted next-token cross-entropy over the target positions of a causal LM (labels -100 elsewhere):
    (sum(w * CE) / sum(w), per-token CE, sum(w)), w = 1 without `weights`. `inputs` are `input_ids` or
    `inputs_embeds` (and `position_ids`). sum(w) is what training over several processes normalises by.

    The LM head runs only where a target token is predicted: with a 49k vocabulary, logits for every prompt (and
    audio) position cost more than the transformer itself."""
    hidden = lm.base_model(attention_mask=attention_mask, **inputs).last_hidden_state[:, :-1]
    labels = labels[:, 1:]
    target = labels != -100
    logits = lm.get_output_embeddings()(hidden[target]).float()
    token_loss = F.cross_entropy(logits, labels[target], reduction="none")
    if weights is None:
        return token_loss.mean(), token_loss, token_loss.new_tensor(float(token_loss.numel()))
    weights = weights[:, 1:][target]
    return (token_loss * weights).sum() / weights.sum().clamp(min=1e-8), token_loss, weights.sum()


@torch.no_grad()
def perplexity(model, tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], groups: Sequence[str],
               batch_size: int = 32) -> dict[str, float]:
    """Perplexity per group (e.g. domain) of whole sentences, each preceded by end-of-text, from summed token NLLs."""
    model.eval()
    nll: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        encoded = [[tokenizer.eos_token_id] + ids + [tokenizer.eos_token_id]
                   for ids in tokenizer(list(chunk), add_special_tokens=False).input_ids]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), tokenizer.pad_token_id)
        for i, e in enumerate(encoded):
            ids[i, :len(e)] = torch.tensor(e)
        mask = ids != tokenizer.pad_token_id
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float().cpu()
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none") * mask[:, 1:]
        for group, row, valid in zip(groups[start:start + batch_size], losses, mask[:, 1:], strict=True):
            nll[group] += float(row.sum())
            count[group] += int(valid.sum())
    return {group: math.exp(nll[group] / count[group]) for group in sorted(nll)}


@torch.no_grad()
def repeat_loss(model, tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> tuple[float, float]:
    """Mean per-token loss (nats) of each text the first time and right after itself ("A\nA"): a model that uses its
    context predicts the repeat almost for free; one that ignores context scores both alike. (A newline separates
    them: after a chat LLM's end-of-turn token a new turn, not a repeat, is what it expects.)"""
    model.eval()
    totals, count = np.zeros(2), 0
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        start = [tokenizer.eos_token_id, *newline]  # the text starts a line either time
        sequence = torch.tensor([[*start, *ids, *newline, *ids]], device=model.device)
        losses = F.cross_entropy(model(input_ids=sequence).logits[0, :-1].float(), sequence[0, 1:], reduction="none")
        first = len(start) - 1  # losses[k] scores token k + 1
        totals += [float(losses[first:first + len(ids)].sum()), float(losses[-len(ids):].sum())]
        count += len(ids)
    return float(totals[0] / count), float(totals[1] / count)


def lm_metrics(model, tokenizer: PreTrainedTokenizerFast, data_dir: str | Path) -> list[Metric]:
    """Perplexity per domain (and per language of the multilingual subset) on dev transcripts, and the loss of a
    general-domain sentence alone vs right after itself (an LLM that reads its context copies the second time)."""
    utterances = [u for name in ("source_dev", "medical_dev", "finance_dev", "multilingual_dev")
                  for u in read_manifest(Path(data_dir) / f"{name}.jsonl", check_audio=False)]
    scores = perplexity(model, tokenizer, [u.text for u in utterances], [u.domain for u in utterances])
    first, repeated = repeat_loss(model, tokenizer, [u.text for u in utterances if u.domain == "general"][:200])
    return [Metric(f"LM perplexity {domain} dev", round(value, 2)) for domain, value in scores.items()] + [
        Metric("LM loss per token, general dev sentence", round(first, 3), unit="nats"),
        Metric("LM loss per token, the same sentence right after itself", round(repeated, 3), unit="nats")]
