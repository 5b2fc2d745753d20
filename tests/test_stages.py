"""Seewo's stages 1-3 in the library: stage 3 against Whisper, which curve a stage shows, the model's tokens."""

import pytest
import torch

from speechkit.data.manifest import read_manifest
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.training import LOG_FILE
from speechkit.models.speech_llm import SpeechLLM, SpeechLLMConfig
from speechkit.slam_asr.claims import STAGE3_MINUS_WHISPER
from speechkit.slam_asr.stages import StageSetup, build, compare_with_whisper, stage_curve


def test_with_an_evaluation_limit_both_systems_are_scored_on_the_same_utterances(tiny_checkpoints, smoke_benchmark):
    """Whisper used to be scored on every test utterance while the speech LLM read the first `eval_limit`: the paired
    comparison then failed ("needs both systems scored on the same references") after a whole stage had trained."""
    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    torch.manual_seed(0)
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32))
    setup = StageSetup(stage=3, init="unused", eval_limit=3)
    assert len(read_manifest(root / "source_test.jsonl")) > 3
    result = compare_with_whisper(model, setup, root, ["source_test"], DecodingConfig(max_new_tokens=4))
    assert [len(r.hypotheses) for r in result.speech_llm + result.whisper] == [3, 3]
    [difference] = result.differences
    assert difference.name == f"{STAGE3_MINUS_WHISPER} source_test [en]"
    rates = {m.name: m.value for m in result.metrics}
    assert abs(difference.value - (rates["test WER source_test [en]"] - rates["test Whisper WER source_test [en]"])
               ) < 1e-9


def test_a_stage_that_trains_no_steps_shows_the_curve_its_init_was_trained_with(tmp_path):
    out = tmp_path / "results" / "default"
    (out / "11_stage2_special_tokens" / "checkpoint").mkdir(parents=True)
    (out / "11_stage2_special_tokens" / "checkpoint" / LOG_FILE).write_text("step,loss\n1,2.0\n")
    setup = StageSetup(stage=3, init="11_stage2_special_tokens")
    own = out / "12_stage3_lora" / "checkpoint"
    assert stage_curve(setup, own, out / "12_stage3_lora") == out / "11_stage2_special_tokens" / "checkpoint" / LOG_FILE
    own.mkdir(parents=True)
    (own / LOG_FILE).write_text("step,loss\n1,1.0\n")
    assert stage_curve(setup, own, out / "12_stage3_lora") == own / LOG_FILE


def test_a_later_stage_keeps_the_tokens_stage_1_built_the_model_with(tiny_checkpoints, tmp_path):
    whisper, llm = tiny_checkpoints
    config = SpeechLLMConfig(str(whisper), str(llm), projector_hidden=16, extra_tokens=("<a>",))
    SpeechLLM.from_pretrained_parts(config).save(tmp_path / "stage1")
    assert build(StageSetup(stage=2, init=str(tmp_path / "stage1"), extra_tokens=["<a>"]), tmp_path).config == config
    assert build(StageSetup(stage=2, init=str(tmp_path / "stage1")), tmp_path).config.extra_tokens == ("<a>",)
    with pytest.raises(ValueError, match=r"built with extra_tokens \['<a>'\], not \['<b>'\]: a model's tokens"):
        build(StageSetup(stage=2, init=str(tmp_path / "stage1"), extra_tokens=["<b>"]), tmp_path)
