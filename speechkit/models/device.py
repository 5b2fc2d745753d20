"""Where loaded models run, and in which precision they train.

Placement: the accelerator when there is one, so that decoding-only notebooks use a GPU too. `SPEECHKIT_DEVICE`
overrides the choice: "cpu" on a GPU machine (training follows the model: see `speechkit.engine.training.train`);
which GPU, `CUDA_VISIBLE_DEVICES` chooses.

Precision: bf16 autocast only where the hardware computes bf16 natively. A CPU without AVX512_BF16 or AMX emulates it,
which made the same training step 16-33x slower than float32 on an AVX2 machine (measured, README).
"""

from __future__ import annotations

import os

import torch

PRECISIONS = ("auto", "bf16", "no")  # "no": float32


def default_device() -> str:
    return os.environ.get("SPEECHKIT_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16(device_type: str) -> bool:
    """Whether `device_type` ("cpu", "cuda", ...) computes bf16 matrix products in hardware, as torch reports it."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type == "cpu":
        # torch's own CPU feature probes (cpuinfo): AVX512_BF16 instructions or AMX tiles
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def training_precision(requested: str = "auto", device_type: str | None = None) -> str:
    """The precision a training on `device_type` (default: `default_device()`) computes in: "bf16" or "no".
    "auto" is bf16 where it is native and float32 elsewhere; an explicit "bf16" or "no" wins."""
    if requested not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {PRECISIONS}, not {requested!r}")
    if requested != "auto":
        return requested
    device_type = device_type or torch.device(default_device()).type
    return "bf16" if native_bf16(device_type) else "no"


def inference_dtype(device_type: str | None = None) -> torch.dtype:
    """The dtype decoding-only paths load models in: bfloat16 on a GPU that computes it natively (half the memory and
    bandwidth of float32), float32 elsewhere (a CPU decodes in the precision it trains and tests in)."""
    device_type = device_type or torch.device(default_device()).type
    return torch.bfloat16 if device_type == "cuda" and native_bf16("cuda") else torch.float32
