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
    # an utterance of the benchmark lasts over a second: over 10 audio embeddings (10 Hz) besides its prompt tokens
    assert report.train_tokens_per_second > 10 * report.train_utterances_per_second
    assert report.train_mfu is None and report.device == "cpu"  # no known peak on a CPU


def test_the_bf16_peak_is_looked_up_by_gpu_name(monkeypatch):
    from speechkit.pipeline.speed import peak_bf16_flops

    assert peak_bf16_flops(torch.device("cpu")) is None
    for name, peak in (("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
                       ("Tesla V100-SXM2-16GB", None)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert peak_bf16_flops(torch.device("cuda")) == peak, name


def test_too_few_utterances_to_time_are_refused(tiny_checkpoints, smoke_benchmark):
    import pytest

    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32))
    with pytest.raises(ValueError, match="two or more"):
        measure(model, root, "source_train", utterances=1)
