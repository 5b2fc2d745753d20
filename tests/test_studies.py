"""Seewo's studies: the decoding grid, pooled error rates, and conversational context (which earlier turns enter the
prompt in each mode)."""

import numpy as np
import pytest

from speechkit.data.manifest import Hypothesis, Utterance, read_manifest
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.evaluation import score
from speechkit.metrics.scoring import error_rate
from speechkit.slam_asr import studies
from speechkit.slam_asr.studies import CONTEXT_STAGE, context_text, decoding_grid, evaluate_with_context, pooled


def test_the_grid_crosses_methods_beams_and_lengths_and_one_beam_methods_appear_once_per_length():
    grid = decoding_grid(["greedy", "beam"], [2, 4], [16, 32], temperature=1.0)
    assert [(c.method, c.num_beams, c.max_new_tokens) for c in grid] == [
        ("greedy", 1, 16), ("greedy", 1, 32), ("beam", 2, 16), ("beam", 2, 32), ("beam", 4, 16), ("beam", 4, 32)]


def test_pooled_is_one_error_rate_over_every_group():
    def group(manifest, texts, hypotheses):
        chosen = [Utterance(f"{manifest}{i}", "a.wav", 1.0, "en", "s", "general", "test", t) for i, t in
                  enumerate(texts)]
        return score(manifest, chosen, hypotheses)[0]

    first = group("a", ["red green blue", "cat dog"], ["red green", "cat dog"])
    second = group("b", ["sun moon star sky"], ["sun star sky sea"])
    rate, low, high = pooled([first, second])
    together = error_rate(["red green blue", "cat dog", "sun moon star sky"],
                          ["red green", "cat dog", "sun star sky sea"], "english")
    assert rate == pytest.approx(together.rate) == pytest.approx(3 / 9)
    assert low <= rate <= high


@pytest.mark.parametrize("mode", ["none", "oracle", "own"])
def test_context_holds_the_earlier_turns_the_mode_names_and_no_more_than_turns_back(smoke_benchmark, monkeypatch,
                                                                                   mode):
    root, _ = smoke_benchmark
    turns = read_manifest(root / "conversation_turns_test.jsonl")
    text = {t.id: t.text for t in turns}
    seen = {}  # turn id -> the context its prompt carried

    def fake_decode(model, examples, stage, decoding):  # each "audio" is its turn's index (fake_audio below)
        results = []
        for example in examples:
            turn = turns[int(example.audio[0])]
            seen[turn.id] = example.context
            results.append([Hypothesis(f"own {turn.id}", 0.0)])
        return results

    monkeypatch.setattr(studies, "load_utterance", lambda turn, root: np.array([turns.index(turn)], np.float32))
    monkeypatch.setattr(studies, "decode", fake_decode)
    evaluate_with_context(None, CONTEXT_STAGE, root, "conversation_turns_test", turns_back=2, mode=mode,
                          decoding=DecodingConfig())
    assert set(seen) == set(text)
    conversations = studies._conversations(turns)
    for conversation in conversations.values():
        for i, turn in enumerate(conversation):
            earlier = conversation[max(0, i - 2):i]
            expected = {"none": [], "oracle": [text[t.id] for t in earlier],
                        "own": [f"own {t.id}" for t in earlier]}[mode]
            assert seen[turn.id] == context_text(expected)


def test_context_evaluation_on_the_first_conversations_only(smoke_benchmark, monkeypatch):
    root, _ = smoke_benchmark
    turns = [t for split in ("dev", "test") for t in read_manifest(root / f"conversation_turns_{split}.jsonl")]
    decoded = []

    def fake_decode(model, examples, stage, decoding):
        decoded.extend(examples)
        return [[Hypothesis("", 0.0)] for _ in examples]

    monkeypatch.setattr(studies, "read_manifest", lambda path: turns)  # two conversations in one manifest
    monkeypatch.setattr(studies, "load_utterance", lambda turn, root: np.zeros(1, np.float32))
    monkeypatch.setattr(studies, "decode", fake_decode)
    first = min(t.conversation for t in turns)
    evaluate_with_context(None, CONTEXT_STAGE, root, "both", 2, "none", DecodingConfig(), limit=1)
    assert len(decoded) == sum(t.conversation == first for t in turns) < len(turns)
    with pytest.raises(ValueError, match="number of conversations"):
        evaluate_with_context(None, CONTEXT_STAGE, root, "both", 2, "none", DecodingConfig(), limit=-1)
