"""Where loaded models run: the accelerator when there is one, so that decoding-only notebooks use a GPU too.

`SPEECHKIT_DEVICE` overrides the choice (e.g. "cpu" on a GPU machine, or "cuda:1").
"""

from __future__ import annotations

import os

import torch


def default_device() -> str:
    return os.environ.get("SPEECHKIT_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
