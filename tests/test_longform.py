"""Long-form transcription: a 10-minute recording at another sample rate, silence, bad input, the output formats."""

import json

import numpy as np
import pytest
import soundfile as sf

from speechkit.core.text import normaliser_for
from speechkit.data.audio import AudioError, load_utterance
from speechkit.data.manifest import SAMPLE_RATE, read_manifest
from speechkit.engine.longform import TimedSegment, speech_regions, transcribe_recording, write_segments
from speechkit.engine.recipes import whisper_transcriber
from speechkit.metrics.scoring import error_rate
from speechkit.pipeline.cli import main


@pytest.fixture(scope="module")
def long_recording(smoke_benchmark, tmp_path_factory):
    """Ten minutes: the smoke test set's utterances spread out over quiet noise, stereo at 22.05 kHz; with the
    (start, end, text) of each utterance placed."""
    root, _ = smoke_benchmark
    utterances = [u for name in ("source_test", "source_dev") for u in read_manifest(root / f"{name}.jsonl")]
    rng = np.random.default_rng(0)
    audio = (0.002 * rng.standard_normal(600 * SAMPLE_RATE)).astype(np.float32)
    placed, start = [], 7.0
    gap = (600.0 - 10.0 - sum(u.duration for u in utterances)) / len(utterances)
    for u in utterances:
        speech = load_utterance(u, root)
        at = round(start * SAMPLE_RATE)
        audio[at:at + len(speech)] += speech
        placed.append((start, start + len(speech) / SAMPLE_RATE, u.text))
        start += len(speech) / SAMPLE_RATE + gap
    path = tmp_path_factory.mktemp("longform") / "meeting.flac"
    import librosa

    resampled = librosa.resample(audio, orig_sr=SAMPLE_RATE, target_sr=22050)
    sf.write(path, np.stack([resampled, resampled], axis=1), 22050)
    return path, placed


def test_a_ten_minute_recording_is_transcribed_in_time_order_with_every_speech_region_covered(long_recording):
    path, placed = long_recording
    assert sf.info(path).duration == pytest.approx(600.0, abs=0.01)
    segments = transcribe_recording(path, whisper_transcriber("pkg:whisper-tiny.en"), max_segment_seconds=8.0,
                                    progress=False)
    starts = [s.start for s in segments]
    assert starts == sorted(starts) and all(a.end <= b.start for a, b in zip(segments, segments[1:]))
    assert all(0 < s.end - s.start <= 8.0 for s in segments)
    for begin, end, _ in placed:
        covered = sum(max(0.0, min(end, s.end) - max(begin, s.start)) for s in segments)
        assert covered >= 0.9 * (end - begin), (begin, end)
    # the text is the speech's: what was said in each region against what the segments there say
    said = [" ".join(s.text for s in segments if s.start < end and s.end > begin) for begin, end, _ in placed]
    assert error_rate([text for _, _, text in placed], said, normaliser_for("en")).rate < 0.5


def test_silence_gives_no_segments_and_an_empty_file(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(90 * 8000, np.float32), 8000)
    assert transcribe_recording(path, lambda utterances, audios: pytest.fail("nothing to transcribe"),
                                progress=False) == []
    assert main(["transcribe", str(path), "--out", str(tmp_path), "--format", "seglst"]) == 0
    assert json.loads((tmp_path / "silence.json").read_text()) == []


def test_the_published_speech_llm_transcribes_a_recording_through_the_command(smoke_benchmark, tmp_path):
    root, _ = smoke_benchmark
    utterances = read_manifest(root / "source_test.jsonl")[:3]
    silence = np.zeros(SAMPLE_RATE, np.float32)
    path = tmp_path / "three.wav"
    sf.write(path, np.concatenate([part for u in utterances for part in (load_utterance(u, root), silence)]),
             SAMPLE_RATE)
    assert main(["transcribe", str(path), "--model", "published:stage2", "--out", str(tmp_path)]) == 0
    segments = [json.loads(line) for line in (tmp_path / "three.jsonl").read_text().splitlines()]
    hypothesis = " ".join(segment["text"] for segment in segments)
    # stage 2's dev WER is 57%: it hears, so most words come through (a model that ignores the audio scores ~100%)
    assert error_rate([" ".join(u.text for u in utterances)], [hypothesis], normaliser_for("en")).rate < 0.8


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no recording"):
        transcribe_recording(tmp_path / "missing.wav", None)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wav file")
    with pytest.raises(AudioError, match="cannot read audio"):
        transcribe_recording(corrupt, None)
    with pytest.raises(ValueError, match="the model's window"):
        speech_regions(np.zeros(SAMPLE_RATE, np.float32), max_segment_seconds=45)
    assert main(["transcribe", str(tmp_path / "missing.wav")]) == 2
    assert "no such recording" in capsys.readouterr().err
    for folder in ("a", "b"):  # one stem twice: the second transcript would overwrite the first
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "talk.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    assert main(["transcribe", str(tmp_path / "a" / "talk.wav"), str(tmp_path / "b" / "talk.wav"),
                 "--out", str(tmp_path)]) == 2
    assert "would all be written to" in capsys.readouterr().err and not (tmp_path / "talk.jsonl").exists()


def test_segments_are_written_as_jsonl_seglst_or_rttm(tmp_path):
    segments = [TimedSegment("talk", 0.5, 2.25, "hello there"), TimedSegment("talk", 3.0, 4.5, "general kenobi")]
    write_segments(tmp_path / "talk.jsonl", segments)
    assert [TimedSegment(**json.loads(line)) for line in (tmp_path / "talk.jsonl").read_text().splitlines()] == segments
    write_segments(tmp_path / "talk.json", segments)
    assert json.loads((tmp_path / "talk.json").read_text())[1] == {
        "session_id": "talk", "speaker": "speaker1", "start_time": 3.0, "end_time": 4.5, "words": "general kenobi"}
    write_segments(tmp_path / "talk.rttm", segments)
    assert (tmp_path / "talk.rttm").read_text().splitlines()[0] == "SPEAKER talk 1 0.500 1.750 <NA> <NA> speaker1 <NA> <NA>"
    with pytest.raises(ValueError, match="unknown segment format"):
        write_segments(tmp_path / "talk.txt", segments)
