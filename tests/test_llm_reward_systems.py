"""Ling & Ye's four systems as notebook 30 runs them (speechkit.llm_reward.systems), on the tiny stand-in models."""

import pytest

from speechkit.data.manifest import read_manifest
from speechkit.engine.evaluation import score
from speechkit.llm_reward import systems
from speechkit.llm_reward.claims import CLAIMS, FIGURE
from speechkit.llm_reward.reach import GREEDY, ORACLE_PICK, REWARD_PICK, entity_errors, picks, rollout_reach
from speechkit.llm_reward.reward import LLMRewardModel
from speechkit.llm_reward.systems import RESCORING, RL, SELF_TRAINING, UNADAPTED, LLMRewardConfig

MEDICAL_CLAIM_ROW = CLAIMS[0].metric.split("::", 1)[1]


def test_the_systems_are_scored_on_the_same_utterances_and_rl_trains_on_the_llm_reward(tiny_checkpoints,
                                                                                       smoke_benchmark, tmp_path):
    whisper, llm = tiny_checkpoints
    data, _ = smoke_benchmark
    config = LLMRewardConfig(asr=str(whisper), reward_llm=str(llm), pool_limit=4, eval_limit=2, nbest=2,
                             num_generations=2, prompts_per_step=2, max_completion_length=6, warmup_steps=0,
                             max_steps=1)
    reward_model = LLMRewardModel.load(config.reward_llm)
    runs = systems.unadapted_systems(config, reward_model, data, tmp_path)
    runs += [systems.self_training(config, data, tmp_path), systems.llm_reward_rl(config, reward_model, data, tmp_path)]
    assert [run.name for run in runs] == [UNADAPTED, RESCORING, SELF_TRAINING, RL]
    ids = [r.ids for r in runs[0].results]
    for run in runs:
        assert [r.manifest for r in run.results] == ["medical_dev", "medical_test"]
        assert [r.ids for r in run.results] == ids and all(len(i) == 2 for i in ids)
        assert systems.hypotheses_file(tmp_path, run.name).is_file()
    assert [run.log.steps for run in runs[2:]] == [1, 1]
    assert [m.name for m in runs[3].metrics[:2]] == ["RL training steps", "RL training minutes"]
    assert "reward log_likelihood" in runs[3].log.parts[0]
    assert all((tmp_path / "checkpoints" / name).is_dir() for name in ("self_training", "llm_reward_rl"))


def test_differences_are_system_minus_baseline_and_the_claim_row_is_relative_to_self_training(smoke_benchmark):
    data, _ = smoke_benchmark
    utterances = read_manifest(data / "medical_test.jsonl")
    assert any(u.entities for u in utterances)
    right, wrong = [u.text for u in utterances], [""] * len(utterances)
    results = {name: score("medical_test", utterances, wrong) for name in (UNADAPTED, RESCORING, SELF_TRAINING)}
    results[RL] = score("medical_test", utterances, right)
    rows = {m.name: m for m in systems.differences(results)}
    assert rows[MEDICAL_CLAIM_ROW].value == -1.0 and rows[MEDICAL_CLAIM_ROW].claim == FIGURE
    assert rows["WER RL minus unadapted medical_test [en]"].value == -1.0
    assert rows["WER self-training minus unadapted medical_test [en]"].value == 0.0
    assert rows["entity WER rescoring minus unadapted medical_test [en]"].value == 0.0


def test_the_oracle_pick_finds_the_right_spelling_the_reward_passes_over(smoke_benchmark):
    data, _ = smoke_benchmark
    utterance = next(u for u in read_manifest(data / "medical_dev.jsonl") if u.entities)
    entity = utterance.entity_texts()[0]
    misspelt = utterance.text.replace(entity, "x" * len(entity))
    assert entity_errors(utterance, utterance.text) == 0 < entity_errors(utterance, misspelt)
    chosen = picks([utterance], [[misspelt, utterance.text]], [[0.9, 0.1]])
    assert chosen == {REWARD_PICK: [misspelt], ORACLE_PICK: [utterance.text]}
    with pytest.raises(ValueError, match="one group"):
        picks([utterance], [[misspelt]], [])


def test_rollout_reach_scores_greedy_and_two_picks_of_each_rollout_on_the_same_dev_utterances(tiny_checkpoints,
                                                                                              smoke_benchmark):
    whisper, llm = tiny_checkpoints
    data, _ = smoke_benchmark
    config = LLMRewardConfig(asr=str(whisper), reward_llm=str(llm), eval_limit=2, num_generations=2)
    reach = rollout_reach(config, LLMRewardModel.load(config.reward_llm), data)
    assert list(reach) == [GREEDY, *(f"{kind} rollouts, {pick}" for kind in ("sample", "beam")
                                     for pick in (REWARD_PICK, ORACLE_PICK))]
    [greedy] = reach[GREEDY]
    assert greedy.manifest == "medical_dev" and len(greedy.ids) == 2
    assert all(results[0].ids == greedy.ids for results in reach.values())
    for kind in ("sample", "beam"):  # the oracle's pick is the best of the rollouts the reward chose among
        [reward], [oracle] = reach[f"{kind} rollouts, {REWARD_PICK}"], reach[f"{kind} rollouts, {ORACLE_PICK}"]
        assert all(o.errors <= r.errors for o, r in zip(oracle.entity_wer.per_utterance,
                                                        reward.entity_wer.per_utterance, strict=True))
    with pytest.raises(ValueError, match="not greedy"):
        rollout_reach(config, None, data, rollouts=["greedy"])
