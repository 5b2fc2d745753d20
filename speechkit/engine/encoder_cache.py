"""Frozen-encoder outputs cached on disk: while the encoder does not train (the speech LLM's stages 1-2, and every
pass of a long pretraining over the same audio), a training step costs projector + LLM only.

One float16 `.npy` per utterance under `<folder>/<encoder digest>/`, computed on first use (batched: an utterance's
encoding does not depend on its batch) and written atomically, so an interrupted run leaves no half file and a cache
made by another encoder is never read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from speechkit.core.fileio import atomic_open
from speechkit.data.manifest import Utterance


def encoder_digest(encoder: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class EncoderCache:
    def __init__(self, folder: str | Path, model) -> None:
        self.folder = Path(folder) / encoder_digest(model.encoder)

    def path(self, utterance: Utterance) -> Path:
        return self.folder / f"{utterance.id}.npy"

    def frames(self, model, utterances: Sequence[Utterance], audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each utterance's encoder output [frames, d_model] (float16), encoding the ones not cached yet."""
        if not model.encoder_frozen:
            raise ValueError("the encoder trains: its outputs change every step and cannot be cached")
        missing = [i for i, u in enumerate(utterances) if not self.path(u).is_file()]
        if missing:
            device = next(model.parameters()).device
            with torch.no_grad(), torch.autocast(device.type, enabled=False):  # cached in full precision
                hidden, lengths = model.encode_audio([audios[i] for i in missing])
            for row, i in enumerate(missing):
                with atomic_open(self.path(utterances[i]), "wb") as handle:
                    np.save(handle, hidden[row, :lengths[row]].cpu().numpy().astype(np.float16))
        return [np.load(self.path(u)) for u in utterances]
