"""Long-form transcription: a recording of any length and sample rate, cut by voice activity into segments the
model's window takes, transcribed in batches, written as timed segments (JSONL, meeteval's SegLST, or RTTM).

The segmenter is silero-vad (its ONNX model ships in the wheel: no download); a speech region longer than
`max_segment_seconds` is cut at the longest pause silero finds inside it (its `max_speech_duration_s`), or evenly
where it finds none. Each segment is an `Utterance` of the recording (its offset and duration), so any
`evaluation.Transcriber` - the Whisper ASR, the speech LLM - transcribes it as it would a manifest's utterance.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from speechkit.core.fileio import atomic_open
from speechkit.data.audio import load_audio
from speechkit.data.manifest import MAX_DURATION, SAMPLE_RATE, Utterance
from speechkit.engine.evaluation import Transcriber, transcribe_all

FORMATS = {".jsonl": "jsonl", ".json": "seglst", ".rttm": "rttm"}  # by the output file's suffix


@dataclass(frozen=True)
class TimedSegment:
    recording: str
    start: float                # seconds from the recording's start
    end: float
    text: str
    speaker: str = "speaker1"   # one speaker until a diarization names them


@functools.cache
def _vad():
    from silero_vad import load_silero_vad  # imported lazily: only long-form transcription needs it
    return load_silero_vad(onnx=True)


def speech_regions(audio: np.ndarray, max_segment_seconds: float = 20.0, threshold: float = 0.5,
                   min_silence_seconds: float = 0.3) -> list[tuple[float, float]]:
    """(start, end) seconds of the speech in 16-kHz `audio`, each at most `max_segment_seconds` long."""
    if not 0 < max_segment_seconds <= MAX_DURATION:
        raise ValueError(f"max_segment_seconds must be in (0, {MAX_DURATION}] (the model's window), "
                         f"not {max_segment_seconds}")
    from silero_vad import get_speech_timestamps

    stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio, np.float32)), _vad(),
                                   threshold=threshold, sampling_rate=SAMPLE_RATE,
                                   max_speech_duration_s=max_segment_seconds,
                                   min_silence_duration_ms=int(1000 * min_silence_seconds))
    regions = []
    for stamp in stamps:
        start, end = stamp["start"] / SAMPLE_RATE, stamp["end"] / SAMPLE_RATE
        pieces = math.ceil((end - start) / max_segment_seconds - 1e-9)  # silero's padding can overrun the limit
        step = (end - start) / pieces
        regions += [(round(start + k * step, 3), round(start + (k + 1) * step, 3)) for k in range(pieces)]
    return regions


def segment_recording(path: str | Path, language: str = "en", max_segment_seconds: float = 20.0
                      ) -> tuple[np.ndarray, list[Utterance]]:
    """The recording as 16-kHz audio and its speech segments as utterances of it (no text)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no recording at {path}")
    audio = load_audio(path)
    segments = [Utterance(f"{path.stem}-{i:05d}", str(path), round(end - start, 3), language, "", "", "",
                          offset=start) for i, (start, end) in enumerate(speech_regions(audio, max_segment_seconds))]
    return audio, segments


def transcribe_recording(path: str | Path, transcriber: Transcriber, language: str = "en",
                         max_segment_seconds: float = 20.0, max_batch: int = 16,
                         progress: bool = True) -> list[TimedSegment]:
    """Timed transcripts of a recording's speech, in time order; silence alone gives none."""
    audio, segments = segment_recording(path, language, max_segment_seconds)
    texts = transcribe_all(transcriber, segments,
                           lambda s: audio[round(s.offset * SAMPLE_RATE):round((s.offset + s.duration) * SAMPLE_RATE)],
                           max_batch=max_batch, progress=progress, desc=f"transcribing {Path(path).name}")
    return [TimedSegment(Path(path).stem, s.offset, round(s.offset + s.duration, 3), text)
            for s, text in zip(segments, texts, strict=True)]


def write_segments(path: str | Path, segments: Sequence[TimedSegment]) -> None:
    """JSONL (one `TimedSegment` a line), SegLST (`.json`, meeteval's) or RTTM, by the suffix; written atomically."""
    kind = FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown segment format; use one of {', '.join(FORMATS)}")
    if kind == "jsonl":
        text = "".join(json.dumps(asdict(s), ensure_ascii=False) + "\n" for s in segments)
    elif kind == "seglst":
        text = json.dumps([{"session_id": s.recording, "speaker": s.speaker, "start_time": s.start,
                            "end_time": s.end, "words": s.text} for s in segments], ensure_ascii=False, indent=1)
    else:
        text = "".join(f"SPEAKER {s.recording} 1 {s.start:.3f} {s.end - s.start:.3f} <NA> <NA> {s.speaker} <NA> "
                       "<NA>\n" for s in segments)
    with atomic_open(path, "w") as handle:
        handle.write(text)
