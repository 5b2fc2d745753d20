"""Choosing which parameters of a model train: the speech LLM's stages and the adapted Whisper name them by regex."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import torch


def freeze_except(model: torch.nn.Module, patterns: Sequence[str], owner: str = "the model") -> dict[str, float]:
    """Train only the parameters whose name matches a pattern (regex search), every name of a tied parameter counting
    (SmolLM2's lm_head is its embedding matrix); a pattern matching nothing warns (a typo would silently freeze what
    was meant to train). Returns the trainable and total counts and the trainable share."""
    matched, chosen = dict.fromkeys(patterns, 0), set()
    for name, parameter in model.named_parameters(remove_duplicate=False):
        for pattern in patterns:
            if re.search(pattern, name):
                matched[pattern] += 1
                chosen.add(id(parameter))
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) in chosen
    for pattern in [p for p, count in matched.items() if not count]:
        warnings.warn(f"{owner}: pattern {pattern!r} matches no parameter", stacklevel=3)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "trainable share": round(trainable / total, 5)}
