import json

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.audio import AudioError, load_audio, load_utterance
from speechkit.data.manifest import (Context, EntitySpan, Hypothesis, ManifestError, NBest, Utterance,
                                     read_conversations, read_manifest, read_nbest, write_manifest)


def tone(seconds=1.0, rate=16_000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([audio] * channels, axis=1) if channels > 1 else audio


@pytest.fixture
def root(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), 16_000)
    return tmp_path


def record(**changes):
    base = {"id": "u1", "audio": "a.wav", "duration": 1.0, "language": "en", "speaker": "s1", "domain": "general",
            "split": "train", "text": "Take Krixzole daily.", "entities": [{"start": 5, "end": 13, "label": "drug"}]}
    return {**base, **changes}


def write(root, *records, name="m.jsonl"):
    path = root / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def problems(path, **kwargs):
    with pytest.raises(ManifestError) as caught:
        read_manifest(path, **kwargs)
    return [(p.line, p.field, p.reason) for p in caught.value.problems]


def test_round_trip(root):
    utterance = Utterance("u1", "a.wav", 1.0, "en", "s1", "medical", "test", "Take Krixzole daily.",
                          context=Context("clinical notes", ("Krixzole", "Vexamab")),
                          entities=(EntitySpan(5, 13, "drug"),), meta={"augmentation": {"snr_db": 10.0}})
    write_manifest(root / "m.jsonl", [utterance])
    assert read_manifest(root / "m.jsonl") == [utterance]
    assert utterance.entity_texts() == ["Krixzole"]


def test_missing_manifest_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_missing_audio_names_file_line_and_field(root):
    path = write(root, record(), record(id="u2", audio="missing.wav"))
    [(line, field, reason)] = problems(path)
    assert (line, field) == (2, "audio") and "not found" in reason
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: field 'audio'"):
        read_manifest(path)


def test_corrupt_audio(root):
    (root / "bad.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    [(_, field, reason)] = problems(write(root, record(audio="bad.wav")))
    assert field == "audio" and reason.startswith("unreadable audio")
    with pytest.raises(AudioError, match="cannot read audio"):
        load_audio(root / "bad.wav")


def test_segment_past_the_end_of_the_audio(root):
    [(_, field, reason)] = problems(write(root, record(offset=0.5, duration=1.0)))
    assert field == "duration" and "ends at 1.50 s" in reason


def test_wrong_sample_rate_and_channels_are_resampled_and_downmixed(root):
    sf.write(root / "stereo44k.wav", tone(1.0, 44_100, channels=2), 44_100)
    [utterance] = read_manifest(write(root, record(audio="stereo44k.wav")))
    audio = load_utterance(utterance, root)
    assert audio.ndim == 1 and abs(len(audio) - 16_000) <= 1
    # dominant frequency survives resampling
    assert abs(np.argmax(np.abs(np.fft.rfft(audio))) - 440) <= 2
    [(_, field, reason)] = problems(write(root, record(audio="stereo44k.wav")), strict_format=True)
    assert field == "audio" and "44100 Hz x 2" in reason


def test_empty_and_missing_text(root):
    found = problems(write(root, record(text="  ", entities=[]), record(id="u2", text=None, entities=[])))
    assert found == [(1, "text", "empty transcript"), (2, "text", "missing in labeled split 'train'")]


def test_unlabeled_pool_may_have_no_text(root):
    [utterance] = read_manifest(write(root, record(split="pool", text=None, entities=[])))
    assert utterance.text is None and utterance.entity_texts() == []


def test_non_utf8_and_invalid_json(root):
    path = root / "m.jsonl"
    path.write_bytes(json.dumps(record()).encode() + b"\n" + b'{"id": "caf\xe9"}\n' + b"{not json\n")
    found = problems(path)
    assert found[0][:2] == (2, "<line>") and "UTF-8" in found[0][2]
    assert found[1][:2] == (3, "<line>") and "JSON" in found[1][2]


def test_duplicate_ids(root):
    found = problems(write(root, record(), record()))
    assert found == [(2, "id", "duplicate 'u1' (first on line 1)")]


def test_span_outside_text(root):
    [(line, field, reason)] = problems(write(root, record(entities=[{"start": 5, "end": 99, "label": "drug"}])))
    assert field == "entities[0]" and "outside the text" in reason


def test_audio_longer_than_the_model_limit(root):
    [(_, field, reason)] = problems(write(root, record()), max_duration=0.5)
    assert field == "duration" and "limit of 0.5 s" in reason


def test_unknown_missing_and_mistyped_fields(root):
    bad = record(duration="long", speeker="s1")
    del bad["language"]
    found = problems(write(root, bad), check_audio=False)
    assert (1, "speeker", "unknown field") in found
    assert (1, "language", "missing") in found
    assert (1, "duration", "expected float, got str") in found


def test_nested_fields_are_checked(root):
    found = problems(write(root, record(context={"description": "x", "entities": "Krixzole"})), check_audio=False)
    assert found == [(1, "context.entities", "expected a list")]


def test_all_problems_are_reported_together(root):
    found = problems(write(root, record(text="", entities=[]), record(id="u2", audio="gone.wav"),
                           record(id="u3", duration=-1.0)))
    assert [line for line, _, _ in found] == [1, 2, 3]


def test_nbest_format(tmp_path):
    path = tmp_path / "nbest.jsonl"
    lists = [NBest("u1", "whisper", (Hypothesis("take krixzole", -1.0), Hypothesis("take crixzole", -2.5)))]
    write_manifest(path, lists)
    assert read_nbest(path) == lists
    unsorted = {"id": "u1", "system": "w", "hypotheses": [{"text": "a", "score": -3}, {"text": "b", "score": -1}]}
    empty = {"id": "u1", "system": "w", "hypotheses": []}
    write(tmp_path, unsorted, empty, name="nbest.jsonl")
    with pytest.raises(ManifestError) as caught:
        read_nbest(path)
    reasons = [(p.line, p.reason) for p in caught.value.problems]
    assert (1, "not sorted by decreasing score") in reasons
    assert (2, "empty N-best list") in reasons
    assert any(line == 2 and "duplicate" in reason for line, reason in reasons)


def test_conversation_ids_are_unique(tmp_path):
    row = {"id": "c1", "audio": "c1.wav", "duration": 10.0, "language": "en", "speakers": ["a", "b"], "split": "test"}
    path = write(tmp_path, row, row)
    with pytest.raises(ManifestError, match="duplicate 'c1'"):
        read_conversations(path)


def test_audio_longer_than_the_encoder_window_is_refused_by_default(root):
    sf.write(root / "long.wav", tone(31.0), 16_000)
    [(_, field, reason)] = problems(write(root, record(audio="long.wav", duration=31.0)))
    assert field == "duration" and "31.00 s is longer than the model's limit of 30.0 s" in reason
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: field 'duration'"):
        read_manifest(root / "m.jsonl")


def test_too_short_audio_is_refused_with_file_and_reason(root):
    sf.write(root / "empty.wav", np.zeros(0), 16_000)
    sf.write(root / "blip.wav", tone(0.01), 16_000)
    found = problems(write(root, record(audio="empty.wav", duration=0.005), record(id="u2", audio="blip.wav",
                                                                                   duration=0.01)))
    assert [(line, field) for line, field, _ in found] == [(1, "duration"), (2, "duration")]
    assert all("shorter than the minimum of 0.05 s" in reason for _, _, reason in found)
    with pytest.raises(AudioError, match=r"blip\.wav.*160 samples.*at least 800"):
        load_audio(root / "blip.wav")


def test_non_finite_samples_are_refused_with_the_file_name(root):
    audio = tone().astype(np.float32)
    audio[100], audio[200] = np.nan, np.inf
    sf.write(root / "nan.wav", audio, 16_000, subtype="FLOAT")
    path = write(root, record(audio="nan.wav"))
    [(_, field, reason)] = problems(path, check_samples=True)
    assert field == "audio" and "NaN or infinite samples" in reason
    with pytest.raises(AudioError, match=r"nan\.wav: 2 NaN or infinite samples"):
        load_audio(root / "nan.wav")


def test_clipping_warns_once_per_manifest(root):
    sf.write(root / "loud.wav", 3.0 * tone(), 16_000, subtype="FLOAT")  # peak 1.5
    path = write(root, record(audio="loud.wav"), record(id="u2", audio="loud.wav"))
    with pytest.warns(UserWarning) as caught:
        assert len(read_manifest(path, check_samples=True)) == 2
    assert len(caught) == 1 and "2 utterance(s)" in str(caught[0].message) and "loud.wav" in str(caught[0].message)


def test_durations_rounded_to_centiseconds_are_clamped_to_the_file(root):
    sf.write(root / "short.wav", tone(1.894), 16_000)  # written as "duration": 1.90 (2 decimals)
    [utterance] = read_manifest(write(root, record(audio="short.wav", duration=1.9)))
    assert len(load_utterance(utterance, root)) == round(1.894 * 16_000)
    [turn] = read_manifest(write(root, record(audio="short.wav", offset=0.89, duration=1.01)))
    assert len(load_utterance(turn, root)) == round(1.894 * 16_000) - round(0.89 * 16_000)
    [(_, field, reason)] = problems(write(root, record(audio="short.wav", duration=1.92)))  # more than a frame
    assert field == "duration" and "ends at 1.92 s" in reason
    with pytest.raises(AudioError, match="asked for 1.92 s"):
        load_audio(root / "short.wav", 0.0, 1.92)


def test_non_finite_times_unknown_language_and_empty_id(root):
    path = root / "m.jsonl"
    lines = [json.dumps(record(duration=float("nan"))), json.dumps(record(id="u2", offset=float("inf"))),
             json.dumps(record(id="u3", language="xx")), json.dumps(record(id=" "))]
    path.write_text("\n".join(lines) + "\n")  # json writes NaN and Infinity, which json.loads accepts
    found = problems(path)
    assert (1, "duration", "must be a finite number, got nan") in found
    assert (2, "offset", "must be a finite number, got inf") in found
    assert any(line == 3 and field == "language" and "unknown language 'xx'" in reason and "en, fr" in reason
               for line, field, reason in found)
    assert (4, "id", "empty id") in found
