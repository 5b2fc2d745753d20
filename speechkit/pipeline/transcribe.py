"""`python -m speechkit transcribe FILE...`: text with timestamps for recordings of any length, for people who just
want the transcript (`speechkit.engine.longform` does the work)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechkit.data.audio import AudioError
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.evaluation import Transcriber
from speechkit.engine.longform import FORMATS, transcribe_recording, write_segments
from speechkit.engine.recipes import saved_speech_llm_transcriber, whisper_transcriber
from speechkit.models.published import PREFIX as PUBLISHED_PREFIX
from speechkit.models.published import published_path
from speechkit.models.speech_llm import CONFIG_FILE


def load_transcriber(model: str) -> Transcriber:
    """Whisper (a packaged model, a folder or a hub id) or a speech LLM of stages 1-3 (the kit's `published:stageN`
    or a saved model's folder)."""
    if model.startswith(PUBLISHED_PREFIX):
        model = str(published_path(model))
    if not (Path(model) / CONFIG_FILE).is_file():
        return whisper_transcriber(model)
    return saved_speech_llm_transcriber(model, DecodingConfig())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recordings", nargs="+", help="audio files (any length, sample rate and channel count)")
    parser.add_argument("--model", default="pkg:whisper-tiny.en",
                        help="Whisper (pkg:NAME, a folder, a hub id) or a speech LLM (published:stageN, a folder)")
    parser.add_argument("--language", default="en", help="ISO 639-1 code of the speech")
    parser.add_argument("--max-segment-seconds", type=float, default=20.0,
                        help="longest segment the voice activity cut makes (at most 30, the model's window)")
    parser.add_argument("--out", default=".", help="folder for one segments file per recording")
    parser.add_argument("--format", choices=sorted(set(FORMATS.values())), default="jsonl",
                        help="jsonl (timed segments), seglst (meeteval's SegLST) or rttm")


def run(args: argparse.Namespace) -> int:
    suffix = {kind: suffix for suffix, kind in FORMATS.items()}[args.format]
    missing = [path for path in args.recordings if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"no such recording: {', '.join(missing)}")
    targets = {path: Path(args.out) / f"{Path(path).stem}{suffix}" for path in args.recordings}
    for target in set(targets.values()):
        sharing = [path for path, other in targets.items() if other == target]
        if len(sharing) > 1:  # the second transcript would overwrite the first
            raise ValueError(f"{', '.join(sharing)} would all be written to {target}: transcribe them in separate "
                             "runs with different --out folders")
    transcriber = load_transcriber(args.model)
    for path, target in targets.items():
        segments = transcribe_recording(path, transcriber, args.language, args.max_segment_seconds)
        write_segments(target, segments)
        print(f"{path}: {len(segments)} segments -> {target}")
    return 0


def main(args: argparse.Namespace) -> int:
    """The command's exit status; bad input is one line on stderr, not a traceback."""
    try:
        return run(args)
    except (AudioError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
