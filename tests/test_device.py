import pytest
import torch

from speechkit.models import device
from speechkit.models.asr import load_asr
from speechkit.models.device import default_device
from speechkit.models.lm import load_lm
from speechkit.models.speech_llm import SpeechLLM, SpeechLLMConfig


def test_default_device_is_the_override_else_the_accelerator(monkeypatch):
    monkeypatch.delenv("SPEECHKIT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == "cpu"
    monkeypatch.setenv("SPEECHKIT_DEVICE", "cuda:1")
    assert default_device() == "cuda:1"


@pytest.mark.parametrize("device", [None, "meta"])
def test_loaders_put_models_on_the_default_or_the_given_device(tiny_checkpoints, tmp_path, monkeypatch, device):
    # "meta" stands in for an accelerator on this CPU-only machine: a model the loaders left on the CPU would show it
    monkeypatch.setenv("SPEECHKIT_DEVICE", "meta" if device is None else "cpu")
    whisper, llm = tiny_checkpoints
    SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32),
                                    device="cpu").save(tmp_path / "model")
    models = [load_asr(str(whisper), device=device)[0], load_lm(str(llm), device=device)[0],
              SpeechLLM.load(tmp_path / "model", device=device)]
    for model in models:
        assert {p.device.type for p in model.parameters()} == {"meta"}


def test_decoding_only_paths_use_bfloat16_on_a_gpu_with_native_bf16_only(monkeypatch):
    assert device.inference_dtype("cpu") == torch.float32
    monkeypatch.setattr(device, "native_bf16", lambda device_type: device_type == "cuda")
    assert device.inference_dtype("cuda") == torch.bfloat16 and device.inference_dtype("cpu") == torch.float32
    monkeypatch.setattr(device, "native_bf16", lambda device_type: False)
    assert device.inference_dtype("cuda") == torch.float32  # a GPU without native bf16 (e.g. a V100)
