"""Where loaded models run: the accelerator when there is one, so that decoding-only notebooks use a GPU too.

`SPEECHKIT_DEVICE` overrides the choice: "cpu" on a GPU machine (training follows the model: see
`speechkit.engine.training.train`); which GPU, `CUDA_VISIBLE_DEVICES` chooses.
"""

from __future__ import annotations

import os

import torch


def default_device() -> str:
    return os.environ.get("SPEECHKIT_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
