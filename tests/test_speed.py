import torch

from speechkit.models.speech_llm import SpeechLLM, SpeechLLMConfig
from speechkit.pipeline.speed import measure


def test_speed_report_measures_every_ratio(tiny_checkpoints, smoke_benchmark):
    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    torch.manual_seed(0)
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32))
    report = measure(model, root, "source_train", utterances=6, batch_seconds=8.0, naive_batch=2, decode_batch=3,
                     grpo_prompts=2, grpo_generations=2)
    assert report.utterances == 6 and report.grpo_prompts == 2
    # the same utterances padded to Whisper's 30-s window cost several times the encoder work of length batches:
    # a ratio in one run, so it holds on any machine's speed
    assert report.train_speedup > 1
    for value in (report.decode_speedup, report.grpo_step_ratio, report.grpo_rollout_tokens_per_second):
        assert value > 0
    assert report.grpo_step_seconds > 0 and report.supervised_step_seconds > 0


def test_too_few_utterances_to_time_are_refused(tiny_checkpoints, smoke_benchmark):
    import pytest

    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32))
    with pytest.raises(ValueError, match="two or more"):
        measure(model, root, "source_train", utterances=1)
