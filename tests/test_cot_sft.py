"""Stage 4 as notebook 15 runs it (speechkit.slam_asr.cot_sft), on the tiny stand-in models: stage 3's first pass,
the standard and the PLW run from it, their rows under the names the claim registry reads."""

import pytest
import torch

from speechkit.models.speech_llm import STAGES, SpeechLLM, SpeechLLMConfig
from speechkit.slam_asr.claims import CLAIMS, COT_HYPOTHESES, COT_STAGE
from speechkit.slam_asr.cot import THINK_TOKENS
from speechkit.slam_asr.cot_sft import FIRST_PASS, RUNS, CoTSFTConfig, differences, first_pass, train_and_score


@pytest.mark.parametrize("bad", [dict(max_steps=0), dict(plw_end=-0.1), dict(eval_manifests="source_dev"),
                                 dict(train_limit=-1)])
def test_bad_options_fail_before_any_model_loads(bad):
    with pytest.raises(ValueError):
        CoTSFTConfig(**bad)


def test_both_runs_start_from_stage_3_and_are_scored_beside_it(tiny_checkpoints, smoke_benchmark, tmp_path):
    whisper, llm = tiny_checkpoints
    data, _ = smoke_benchmark
    torch.manual_seed(0)
    stage3 = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32,
                                                             extra_tokens=THINK_TOKENS))
    stage3.start_stage(STAGES[3])
    stage3.save(tmp_path / "stage3")
    config = CoTSFTConfig(init=str(tmp_path / "stage3"), train_limit=3, max_steps=2, warmup_steps=0, eval_limit=2,
                          max_new_tokens=8, plw_decay_steps=1)
    out = tmp_path / COT_STAGE
    first = first_pass(config, data, out)
    assert len(first.utterances) == len(first.hypotheses) == 3 and (out / FIRST_PASS).is_file()
    runs = {name: train_and_score(config, name, first, data, out) for name in RUNS}
    assert [run.log.steps for run in runs.values()] == [2, 2]
    assert [p["think_weight"] for p in runs["CoT"].log.parts] == [1.0, 1.0]          # the standard loss
    assert [p["think_weight"] for p in runs["CoT + PLW"].log.parts] == [1.0, 0.1]    # the schedule
    assert all(run.diagnosis.outputs == 2 for run in runs.values())
    for name, hypotheses in COT_HYPOTHESES.items():
        assert (out / hypotheses).is_file(), name
    with pytest.raises(ValueError, match="unknown CoT run"):
        train_and_score(config, "RLVR", first, data, out)
    rows = {m.name for m in first.metrics() + [m for run in runs.values() for m in run.metrics()]
            + differences(first.baseline, runs)}
    assert {"CoT + PLW minus CoT source_dev [en]", "CoT think right, transcript wrong"} <= rows
    # the claims of this stage compare its hypotheses files: the ones written here
    cot_claims = [c for c in CLAIMS if c.compare and c.compare.system.startswith(COT_STAGE)]
    assert cot_claims and all((tmp_path / c.compare.system).is_file() for c in cot_claims)
