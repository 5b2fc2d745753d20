import math

import numpy as np
import pytest

from speechkit.data.manifest import EntitySpan
from speechkit.metrics.scoring import (ErrorCounts, diarization_error_rate, entity_error_rate, error_rate,
                                       paired_difference, rtfx, speaker_attributed_wer)


def test_wer_counts_by_hand():
    # ref: a b c d | hyp: a x c d e -> 1 substitution, 1 insertion, 3 hits
    result = error_rate(["a b c d"], ["a x c d e"], "basic")
    assert result.counts == ErrorCounts(hits=3, substitutions=1, deletions=0, insertions=1)
    assert result.rate == pytest.approx(2 / 4)


def test_corpus_rate_sums_counts_instead_of_averaging_utterances():
    # utterance rates 0/4 and 1/1 average to 0.5; the corpus rate is 1 error in 5 words
    result = error_rate(["a b c d", "e"], ["a b c d", "x"], "basic")
    assert result.rate == pytest.approx(0.2)
    assert [c.rate for c in result.per_utterance] == [0.0, 1.0]


def test_missing_hypothesis_deletes_everything_and_empty_reference_counts_insertions():
    result = error_rate(["one two", ""], [None, "extra words"], "basic")
    assert result.counts == ErrorCounts(hits=0, substitutions=0, deletions=2, insertions=2)
    assert result.rate == pytest.approx(4 / 2)


def test_english_normaliser_forgives_spelling_and_case():
    assert error_rate(["The colour grey."], ["the color gray"], "english").rate == 0.0


def test_cer_for_japanese():
    # 6 characters, one substituted
    result = error_rate(["いとうさんは"], ["いとうさんわ"], "characters")
    assert result.unit == "character" and result.rate == pytest.approx(1 / 6)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rate(["a", "b"], ["a"], "basic")


REFERENCE = "Take Krixzole Vex daily."
SPANS = [EntitySpan(5, 17, "drug")]  # "Krixzole Vex": two entity words


@pytest.mark.parametrize("hypothesis, errors", [
    ("take krixzole vex daily", 0),
    ("take crixzole vex daily", 1),          # substitution inside the entity
    ("take vex daily", 1),                   # deletion of an entity word
    ("take krixzole the vex daily", 1),      # insertion between the entity's words
    ("take krixzole vex really daily", 0),   # insertion after the entity: not an entity error
    ("make krixzole vex daily", 0),          # error outside the entity
])
def test_entity_wer_by_hand(hypothesis, errors):
    result = entity_error_rate([REFERENCE], [SPANS], [hypothesis], "english")
    assert result.counts.reference_length == 2
    assert result.counts.errors == errors
    assert result.rate == pytest.approx(errors / 2)


def test_entity_wer_uses_the_same_alignment_as_wer():
    hypothesis = "take crixzole vex"
    entity = entity_error_rate([REFERENCE], [SPANS], [hypothesis], "english")
    overall = error_rate([REFERENCE], [hypothesis], "english")
    assert overall.counts.errors == 2 and entity.counts.errors == 1


def test_bootstrap_interval_brackets_the_rate_and_narrows_with_data():
    rng = np.random.default_rng(0)
    refs = [" ".join(["w"] * 10)] * 400
    hyps = [" ".join(["w"] * (10 - int(k)) + ["x"] * int(k)) for k in rng.integers(0, 3, size=400)]
    big = error_rate(refs, hyps, "basic")
    small = error_rate(refs[:40], hyps[:40], "basic")
    assert big.interval.low < big.rate < big.interval.high
    assert big.interval.high - big.interval.low < small.interval.high - small.interval.low


def test_paired_difference_of_identical_systems_is_zero():
    a = error_rate(["a b c", "d e"], ["a b x", "d e"], "basic")
    difference = paired_difference(a, a)
    assert difference.difference == 0 and difference.interval.low == difference.interval.high == 0


def test_paired_difference_detects_a_better_system():
    refs = ["a b c d"] * 50
    worse = error_rate(refs, ["a x c y"] * 50, "basic")
    better = error_rate(refs, ["a b c y"] * 25 + ["a b c d"] * 25, "basic")
    difference = paired_difference(worse, better)
    assert difference.difference == pytest.approx(better.rate - worse.rate)
    assert difference.interval.high < 0 and difference.p_value < 0.05
    assert difference.relative == pytest.approx((0.125 - 0.5) / 0.5)


def test_paired_difference_refuses_different_references():
    with pytest.raises(ValueError, match="same references"):
        paired_difference(error_rate(["a b"], ["a b"], "basic"), error_rate(["a b c"], ["a b"], "basic"))


def seg(speaker, start, end, words, session="s1"):
    return {"session_id": session, "speaker": speaker, "start_time": start, "end_time": end, "words": words}


def test_cpwer_and_tcpwer_by_hand():
    reference = [seg("A", 0, 2, "hello there"), seg("B", 2, 4, "good morning")]
    hypothesis = [seg("spk1", 0, 2, "hello there"), seg("spk2", 2, 4, "good evening")]
    cp = speaker_attributed_wer(reference, hypothesis, "basic")
    assert (cp.errors, cp.length, cp.rate) == (1, 4, 0.25)
    # a word far outside its reference time (beyond the collar) costs a deletion and an insertion under tcpWER
    late = [seg("spk1", 0, 2, "hello there"), seg("spk2", 30, 32, "good morning")]
    assert speaker_attributed_wer(reference, late, "basic").rate == 0.0
    assert speaker_attributed_wer(reference, late, "basic", collar=5).errors == 4


def test_a_session_the_hypothesis_lacks_counts_every_reference_word_deleted():
    # the VAD heard nobody in a conversation: its hypothesis has no segment, which meeteval alone refuses
    reference = [seg("A", 0, 2, "hello there"), seg("B", 2, 4, "good morning"), seg("A", 0, 2, "so", "s2")]
    hypothesis = [seg("spk1", 0, 2, "so", "s2")]
    for collar in (None, 5):
        rate = speaker_attributed_wer(reference, hypothesis, "basic", collar)
        assert (rate.errors, rate.deletions, rate.length, rate.missed_speakers) == (4, 4, 5, 2)
    silent = speaker_attributed_wer(reference[:2], [], "basic", 5)
    assert (silent.rate, silent.deletions) == (1.0, 4)


def test_der_by_hand():
    reference = [seg("A", 0, 10, ""), seg("B", 10, 20, "")]
    hypothesis = [seg("x", 0, 10, ""), seg("y", 10, 15, ""), seg("x", 15, 20, "")]
    result = diarization_error_rate(reference, hypothesis)
    assert result.confusion == pytest.approx(5) and result.total == pytest.approx(20)
    assert result.rate == pytest.approx(0.25)
    missing = diarization_error_rate(reference, [seg("x", 0, 10, "")])
    assert missing.missed == pytest.approx(10) and missing.rate == pytest.approx(0.5)


def test_rtfx():
    assert rtfx(120.0, 4.0) == 30.0
    with pytest.raises(ValueError):
        rtfx(1.0, 0.0)


def test_empty_reference_and_hypothesis_is_no_error():
    assert ErrorCounts().rate == 0.0 and math.isinf(ErrorCounts(insertions=1).rate)
