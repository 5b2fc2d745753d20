"""Audio I/O: every waveform the kit handles is float32 mono at 16 kHz."""

from __future__ import annotations

import io
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from speechkit.core.fileio import atomic_open
from speechkit.data.manifest import FRAME_SECONDS, MIN_DURATION, SAMPLE_RATE, Utterance


class AudioError(ValueError):
    pass


def load_audio(path: str | Path, offset: float = 0.0, duration: float | None = None,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read [offset, offset + duration) seconds of a file, downmixed to mono and resampled (soxr) to `sample_rate`.

    A segment that overruns the file by less than one frame (bounds rounded to centiseconds) ends with the file;
    a longer overrun, audio shorter than `MIN_DURATION` and NaN or infinite samples are errors naming the file.
    """
    try:
        with sf.SoundFile(str(path)) as handle:
            native = handle.samplerate
            handle.seek(int(round(offset * native)))
            frames = -1 if duration is None else int(round(duration * native))
            audio = handle.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"cannot read audio {path}: {error}") from error
    if duration is not None and len(audio) < int(round((duration - FRAME_SECONDS) * native)):
        raise AudioError(f"{path}: asked for {duration:.2f} s at {offset:.2f} s, "
                         f"file ends after {len(audio) / native:.2f} s")
    if len(audio) < MIN_DURATION * native:
        raise AudioError(f"{path}: {len(audio)} samples at {native} Hz; the models need at least "
                         f"{round(MIN_DURATION * native)} ({MIN_DURATION} s)")
    bad = int(np.size(audio) - np.count_nonzero(np.isfinite(audio)))
    if bad:
        raise AudioError(f"{path}: {bad} NaN or infinite samples")
    audio = audio.mean(axis=1)
    if native != sample_rate:
        audio = librosa.resample(audio, orig_sr=native, target_sr=sample_rate, res_type="soxr_hq")
    return audio.astype(np.float32, copy=False)


def load_utterance(utterance: Utterance, root: str | Path) -> np.ndarray:
    return load_audio(Path(root) / utterance.audio, utterance.offset, utterance.duration)


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV in memory (deterministic: no dither, no timestamps)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(wav_bytes(audio, sample_rate))


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM as WAV or FLAC (lossless, about half the size), chosen by the file's suffix; written atomically."""
    if Path(path).suffix.lower() != ".flac":
        return write_wav(path, audio, sample_rate)
    with atomic_open(path, "wb") as handle:
        sf.write(handle, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")


def peak_normalise(audio: np.ndarray, peak: float = 0.9) -> np.ndarray:
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio if top == 0 else (audio * (peak / top)).astype(np.float32)
