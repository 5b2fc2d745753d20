"""Log-mel features and length-bucketed batches: short audio is never padded to Whisper's 30 s window."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from speechkit.data.manifest import SAMPLE_RATE


@lru_cache(maxsize=4)
def _extractor(n_mels: int) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor(feature_size=n_mels)


def _features(audio, n_mels: int, **padding) -> torch.Tensor:
    """Whisper's feature extractor, in float32 even inside a bf16 autocast region (it fails on bf16 tensors)."""
    with torch.autocast("cpu", enabled=False):
        return _extractor(n_mels)(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", **padding).input_features


def log_mel(audios: Sequence[np.ndarray], n_mels: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """Whisper's log-mel of each waveform, computed unpadded, then zero-padded to the longest.

    Returns (features [batch, n_mels, frames], frame_lengths [batch]). Each utterance's features do not depend on
    the others in its batch (Whisper's feature extractor would normalise over the padded array), and the zero
    padding equals the encoder convolutions' own zero padding: see `speech_encoder.encode`.
    """
    features = [_features(audio, n_mels, padding="longest")[0] for audio in audios]
    lengths = torch.tensor([f.shape[-1] for f in features])
    batch = torch.zeros(len(features), n_mels, int(lengths.max()))
    for i, f in enumerate(features):
        batch[i, :, :f.shape[-1]] = f
    return batch, lengths


def window_log_mel(audios: Sequence[np.ndarray], n_mels: int = 80, seconds: int = 30) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    """Whisper's own features: each waveform zero-padded to the encoder's whole window before the log-mel, as
    Whisper was pretrained. A pretrained Whisper decoding from unpadded features does not see the audio end and
    repeats itself (measured: 5 of 8 natural sentences looped to the length limit)."""
    features = _features(list(audios), n_mels, padding="max_length", max_length=seconds * SAMPLE_RATE)
    return features, torch.full((len(audios),), features.shape[-1])


def length_batches(durations: Sequence[float], max_seconds: float, max_size: int, rng: np.random.Generator | None,
                   pool: int = 50) -> list[list[int]]:
    """Indices grouped into batches of similar duration whose padded size (longest x count) fits `max_seconds`.

    With `rng`, order is shuffled (batches are formed within shuffled pools of `pool` x `max_size` items, then the
    batches shuffled); without it, the order is by decreasing duration (inference).
    """
    order = np.argsort(-np.asarray(durations), kind="stable") if rng is None else rng.permutation(len(durations))
    chunk = max(1, len(order)) if rng is None else pool * max_size  # nothing to batch: no batches
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        group = sorted(order[start:start + chunk], key=lambda i: -durations[i])
        batch: list[int] = []
        for index in group:
            longest = durations[batch[0]] if batch else durations[index]
            if batch and (len(batch) >= max_size or longest * (len(batch) + 1) > max_seconds):
                batches.append(batch)
                batch = []
            batch.append(int(index))
        if batch:
            batches.append(batch)
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
