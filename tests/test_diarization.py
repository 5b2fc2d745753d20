"""Diarization and SD-ASR on generated conversations of distinct voices: the speaker count recovered, DER low, turns
within the segment limit, speaker-attributed WER from meeteval; bad audio and references get clear errors."""

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.audio import AudioError
from speechkit.core.fileio import write_json
from speechkit.data.manifest import SAMPLE_RATE, Conversation, Hypothesis, write_manifest
from speechkit.data.synth import Speaker, synthesize
from speechkit.pipeline.claims import INCONCLUSIVE, REPRODUCED, judge
from speechkit.slam_asr import diarization_claims, sd_asr
from speechkit.slam_asr.diarization import (DiarizationConfig, ReferenceFormatError, SpeakerTurn, choose_threshold,
                                            cluster, diarize, diarize_audio, embed_speech, merge_turns,
                                            read_reference, score_diarization, speaker_count_accuracy, to_rttm)
from speechkit.slam_asr.sd_asr import (Recordings, SDASRConfig, SegmentationResult, attributed_error_rate,
                                       context_metrics, context_study, load_recordings, oracle_turns,
                                       segment_length_claim, turn_audio, transcribe_turns)

SENTENCES = ("The committee met on Tuesday to discuss the budget for the school district.",
             "I think we should wait until the report is finished before we decide.",
             "That seems reasonable, but the deadline is already next week.",
             "Could you send me the figures from last year so that I can compare them?",
             "Of course, I will put them in a shared folder this afternoon.",
             "Thank you, and please include the notes from the previous meeting.")


def conversation(session: str, voices: list[str], turns: int = 6, gap: float = 0.5) -> tuple[np.ndarray, list[dict]]:
    """Turns of flite's distinct voices in rotation, `gap` seconds apart over quiet noise; and its SegLST."""
    speakers = [Speaker(voice, "flite", voice, "en") for voice in voices]
    pieces, reference, cursor = [], [], 0.4
    for index in range(turns):
        speaker, text = speakers[index % len(speakers)], SENTENCES[index % len(SENTENCES)]
        audio = synthesize(speaker, text, seed=0)
        pieces.append((round(cursor * SAMPLE_RATE), audio))
        reference.append({"session_id": session, "speaker": speaker.id, "start_time": round(cursor, 3),
                          "end_time": round(cursor + len(audio) / SAMPLE_RATE, 3), "words": text})
        cursor += len(audio) / SAMPLE_RATE + gap
    mix = np.zeros(round((cursor + 0.4) * SAMPLE_RATE), np.float32)
    for begin, audio in pieces:
        mix[begin:begin + len(audio)] += audio
    mix += 0.001 * np.random.default_rng(0).standard_normal(len(mix)).astype(np.float32)
    return mix, reference


@pytest.fixture(scope="module")
def three_voices():
    return conversation("three", ["kal16", "awb", "slt"])


@pytest.fixture(scope="module")
def two_voices():
    return conversation("two", ["rms", "slt"], turns=4)


@pytest.fixture(scope="module")
def embedded(three_voices):
    return embed_speech(three_voices[0], "three", DiarizationConfig())


def test_three_distinct_voices_are_counted_and_attributed(three_voices, embedded):
    audio, reference = three_voices
    diarization = cluster(embedded, DiarizationConfig())
    assert diarization.speakers == 3
    assert score_diarization(reference, [diarization]).der.rate < 0.1
    # a collar forgives boundary errors: never a higher DER
    assert (score_diarization(reference, [diarization], collar=0.5).der.rate
            <= score_diarization(reference, [diarization]).der.rate)
    starts = [t.start for t in diarization.turns]
    assert starts == sorted(starts) and all(0 < t.duration <= 8.0 for t in diarization.turns)
    assert speaker_count_accuracy(reference, [diarization]).accuracy == 1.0
    assert cluster(embedded, DiarizationConfig(clustering="spectral")).speakers == 3  # the eigengap rule too


def test_two_voices_from_a_file_and_a_threshold_chosen_on_other_conversations(tmp_path, two_voices, embedded,
                                                                             three_voices):
    audio, reference = two_voices
    path = tmp_path / "two.wav"
    sf.write(path, audio, SAMPLE_RATE)
    threshold, tried = choose_threshold([embedded], three_voices[1], DiarizationConfig(), [0.1, 0.3, 0.5, 0.9])
    assert tried[threshold] == min(tried.values()) and tried[0.9] > tried[threshold]  # 0.9 merges the speakers
    diarization = diarize(path, DiarizationConfig(clustering="agglomerative", distance_threshold=threshold))
    assert diarization.session == "two" and diarization.speakers == 2
    assert score_diarization(reference, [diarization]).der.rate < 0.1
    rttm = tmp_path / "two.rttm"
    rttm.write_text(to_rttm([diarization]))
    assert [s["speaker"] for s in read_reference(rttm)] == [t.speaker for t in diarization.turns]


def test_turn_limits_merge_a_speakers_turns_and_cut_long_ones():
    turns = [SpeakerTurn("s", "a", 0.0, 5.0), SpeakerTurn("s", "a", 5.2, 9.0), SpeakerTurn("s", "b", 9.5, 75.5)]
    long = merge_turns(turns, max_seconds=60.0, max_gap=0.5)
    assert [(t.speaker, t.start, t.end) for t in long[:1]] == [("a", 0.0, 9.0)]
    assert len(long) == 3 and all(t.duration <= 60.0 for t in long)
    short = merge_turns(turns, max_seconds=8.0, max_gap=0.5)
    assert all(t.duration <= 8.0 for t in short) and sum(t.duration for t in short) == pytest.approx(sum(t.duration for t in turns))
    # a turn longer than the model's window is heard as its first 30 s
    assert len(turn_audio(np.zeros(80 * SAMPLE_RATE, np.float32), long[1])) == 30 * SAMPLE_RATE


def test_silence_has_no_speakers():
    diarization = diarize_audio(np.zeros(10 * SAMPLE_RATE, np.float32), "quiet", DiarizationConfig())
    assert diarization.turns == () and diarization.speakers == 0


def test_speaker_attributed_rates_of_oracle_turns(tmp_path, three_voices):
    audio, reference = three_voices
    sf.write(tmp_path / "three.wav", audio, SAMPLE_RATE)
    write_manifest(tmp_path / "conversations_test.jsonl",
                   [Conversation("three", "three.wav", len(audio) / SAMPLE_RATE, "en", ("kal16", "awb", "slt"), "test")])
    write_json(tmp_path / "conversations_test.seglst.json", reference)
    recordings = load_recordings(tmp_path, "test")  # the benchmark's layout
    assert recordings.sessions == ["three"] and recordings.reference == reference
    said = {(s["start_time"]): s["words"] for s in reference}
    perfect = transcribe_turns(lambda utterances, audios: [said[u.offset] for u in utterances], recordings,
                               oracle_turns(recordings))
    assert attributed_error_rate(reference, perfect, 5.0).rate == 0.0
    decoded, known = [], {}  # a second segmentation with the same turns decodes nothing again

    def counting(utterances, audios):
        decoded.extend(u.offset for u in utterances)
        return [said[u.offset] for u in utterances]

    assert transcribe_turns(counting, recordings, oracle_turns(recordings), known=known) == perfect
    assert transcribe_turns(counting, recordings, oracle_turns(recordings), known=known) == perfect
    assert sorted(decoded) == sorted(said)
    swapped = [{**s, "speaker": "kal16"} if s["speaker"] == "awb" else s for s in perfect]
    cpwer = attributed_error_rate(reference, swapped, None)
    assert cpwer.rate > 0.2 and cpwer.counts.reference_length == sum(len(s["words"].split()) for s in reference)
    unheard = attributed_error_rate(reference, [], 5.0)  # the VAD heard nobody: every word deleted, not a crash
    assert unheard.rate == 1.0 and unheard.counts.deletions == cpwer.counts.reference_length


def test_bad_audio_and_references_are_clear_errors(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really audio")
    with pytest.raises(AudioError, match="cannot read audio"):
        diarize(corrupt, DiarizationConfig())
    noisy = np.zeros(3 * SAMPLE_RATE, np.float32)
    noisy[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        diarize_audio(noisy, "nan", DiarizationConfig())
    rttm = tmp_path / "bad.rttm"
    rttm.write_text("SPEAKER s 1 0.0 1.0 <NA> <NA> a <NA> <NA>\nSPEAKER s 1 zero 1.0 <NA> <NA> b <NA> <NA>\n")
    with pytest.raises(ReferenceFormatError, match="bad.rttm:2: onset and duration must be numbers"):
        read_reference(rttm)
    (tmp_path / "short.rttm").write_text("SPEAKER s 1 0.0\n")
    with pytest.raises(ReferenceFormatError, match="short.rttm:1: an RTTM line is"):
        read_reference(tmp_path / "short.rttm")
    for text, message in (("{not json", "not JSON"), ('{"a": 1}', "a JSON list"),
                          ('[{"session_id": "s", "speaker": "a", "start_time": 0}]', "segment 0: needs"),
                          ('[{"session_id": "s", "speaker": "a", "start_time": 2, "end_time": 1}]', "start <= end")):
        (tmp_path / "ref.json").write_text(text)
        with pytest.raises(ReferenceFormatError, match=message):
            read_reference(tmp_path / "ref.json")
    with pytest.raises(ReferenceFormatError, match="unknown reference format"):
        read_reference(corrupt)
    with pytest.raises(ValueError, match="clustering must be one of"):
        DiarizationConfig(clustering="kmeans")
    with pytest.raises(ValueError, match="other conversations"):
        SDASRConfig(eval_split="test", tune_split="test")


def test_the_row_the_notebook_writes_is_the_row_the_claim_reads():
    claim = diarization_claims.CLAIMS[0]
    row = {"stage": diarization_claims.STAGE, "name": diarization_claims.segment_length_row("test"),
           "value": -0.05, "ci_low": -0.08, "ci_high": -0.02}
    assert judge(claim, [row], None).verdict == REPRODUCED
    assert claim.paper_difference == pytest.approx(-0.0532)


def seglst(session: str, words: list[str]) -> list[dict]:
    return [{"session_id": session, "speaker": f"s{i % 2}", "start_time": 3.0 * i, "end_time": 3.0 * i + 2.5,
             "words": w} for i, w in enumerate(words)]


def test_the_study_writes_the_claims_row_shorter_minus_longer_segments_and_the_context_rows():
    truth = ["the budget was approved", "we meet again next week", "please send the notes", "thank you all"]
    reference = seglst("a", truth) + seglst("b", truth)
    worse = ["the budget was", "we meet again next week", "please the notes", "thank all"]
    rates = {name: attributed_error_rate(reference, seglst("a", words) + seglst("b", words), 5.0)
             for name, words in (("8 s", truth), ("60 s", worse))}
    results = [SegmentationResult(name, {}, None, None, None, {diarization_claims.SYSTEM: rate})
               for name, rate in rates.items()]
    [row] = segment_length_claim(results, "test")
    assert row.name == diarization_claims.segment_length_row("test")
    assert row.value == pytest.approx(rates["8 s"].rate - rates["60 s"].rate) and row.value < 0
    assert judge(diarization_claims.CLAIMS[0], [{"stage": diarization_claims.STAGE, "name": row.name,
                                                 "value": row.value, "ci_low": row.ci_low, "ci_high": row.ci_high}],
                 None).verdict in (REPRODUCED, INCONCLUSIVE)
    assert segment_length_claim(results[:1], "test") == []  # without the 60 s limit there is nothing to compare
    rows = {m.name: m.value for m in context_metrics({"none": rates["60 s"], "own": rates["60 s"],
                                                      "oracle": rates["8 s"]}, "8 s")}
    assert rows["tcpWER change, context own minus none"] == 0.0
    assert rows["tcpWER change, context oracle minus none"] < 0
    assert rows["speech LLM tcpWER 8 s segments, context: oracle"] == rates["8 s"].rate


def test_the_context_study_scores_the_first_conversations_when_asked(monkeypatch):
    truth = ["the budget was approved", "we meet again next week"]
    reference = seglst("a", truth) + seglst("b", truth) + seglst("c", truth)
    recordings = Recordings({s: np.zeros(8 * SAMPLE_RATE, np.float32) for s in "abc"}, reference)
    turns = oracle_turns(recordings)
    heard = []

    def fake_decode(model, examples, stage, decoding):
        heard.extend(examples)
        return [[Hypothesis("the budget was approved", 0.0)] for _ in examples]

    monkeypatch.setattr(sd_asr, "decode", fake_decode)
    rates = context_study(None, recordings, turns, SDASRConfig(context_conversations=2))
    assert len(heard) == 3 * 2 * len(truth)  # three modes, two conversations of two turns
    assert rates["none"].counts.reference_length == 2 * sum(len(t.split()) for t in truth)
    assert recordings.first(0).sessions == ["a", "b", "c"]
    with pytest.raises(ValueError, match="context_conversations must be >= 0"):
        SDASRConfig(context_conversations=-1)
