"""Ling & Ye's four systems as notebook 30 runs them (speechkit.llm_reward.systems), on the tiny stand-in models."""

from speechkit.data.manifest import read_manifest
from speechkit.engine.evaluation import score
from speechkit.llm_reward import systems
from speechkit.llm_reward.claims import CLAIMS, FIGURE
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
