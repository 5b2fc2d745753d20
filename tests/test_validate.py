"""`python -m speechkit validate`: manifests and their audio, one line per problem, exit status 1 when any."""

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from speechkit.pipeline.cli import main


def utterance(**changes):
    base = {"id": "u1", "audio": "ok.wav", "duration": 1.0, "language": "en", "speaker": "s1", "domain": "general",
            "split": "train", "text": "hello there"}
    return json.dumps({**base, **changes})


def broken_set(folder):
    """A clean manifest and one with a problem per line; returns (clean, broken) paths."""
    tone = (0.5 * np.sin(np.arange(16_000) / 10)).astype(np.float32)
    sf.write(folder / "ok.wav", tone, 16_000)
    sf.write(folder / "long.wav", np.zeros(31 * 16_000, np.float32), 16_000)
    sf.write(folder / "blip.wav", tone[:100], 16_000)
    sf.write(folder / "stereo8k.wav", np.zeros((8_000, 2), np.float32), 8_000)
    nan = tone.copy()
    nan[5] = np.nan
    sf.write(folder / "nan.wav", nan, 16_000, subtype="FLOAT")
    (folder / "garbage.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    clean = folder / "clean.jsonl"
    clean.write_text(utterance() + "\n" + utterance(id="u2", duration=0.99) + "\n")  # rounding within a frame
    broken = folder / "broken.jsonl"
    broken.write_text("\n".join([
        utterance(audio="long.wav", duration=31.0),          # 1: longer than the encoder's window
        utterance(id="u2", audio="blip.wav", duration=0.006),  # 2: too short
        utterance(id="u3", audio="nan.wav"),                  # 3: NaN samples
        utterance(id="u4", duration=1.5),                     # 4: segment past the end of the file
        utterance(id="u5", audio="garbage.wav"),              # 5: unreadable
        utterance(id="u6", audio="stereo8k.wav", duration=0.5),  # 6: 8 kHz stereo (strict format only)
        utterance(id="u7", language="klingon"),               # 7: unknown language
        utterance(id="u8", offset=float("nan")),              # 8: NaN offset
        "{not json",                                          # 9
    ]) + "\n")
    return clean, broken


def test_validate_reports_one_line_per_problem(tmp_path, capsys):
    clean, broken = broken_set(tmp_path)
    assert main(["validate", str(clean)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["validate", str(clean), str(broken), "--strict-format"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[1] for line in lines] == [str(n) for n in range(1, 10)]
    assert all(line.startswith(f"{broken}:") for line in lines)
    for number, words in enumerate(["longer than the model's limit of 30.0 s", "shorter than the minimum",
                                    "NaN or infinite samples", "segment ends at 1.50 s", "unreadable audio",
                                    "8000 Hz x 2 channel(s)", "unknown language 'klingon'",
                                    "field 'offset': must be a finite number", "not valid JSON"]):
        assert words in lines[number], lines[number]
    assert main(["validate", str(tmp_path / "missing.jsonl")]) == 1
    assert "manifest not found" in capsys.readouterr().out


def test_validate_from_the_command_line(tmp_path):
    clean, broken = broken_set(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "speechkit", "validate", str(clean)], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == ""
    bad = subprocess.run([sys.executable, "-m", "speechkit", "validate", str(broken)], capture_output=True, text=True)
    assert bad.returncode == 1 and len(bad.stdout.splitlines()) == 8  # the stereo 8 kHz file is fine unless strict
