"""Training precision: bf16 autocast only where the hardware computes bf16 natively, applied around the whole loss."""

import pytest
import torch

from speechkit.engine.training import TrainConfig, train
from speechkit.models import device
from speechkit.models.device import native_bf16, training_precision
from speechkit.models.speech_llm import STAGES, Example, SpeechLLM, SpeechLLMConfig


def simulate_cpu(monkeypatch, avx512_bf16: bool, amx: bool = False):
    """The CPU feature probes torch asks (cpuinfo), answered as a machine of that kind would."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, "no"), (True, False, "bf16"),
                                                        (False, True, "bf16")])
def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, avx512_bf16, amx, expected):
    simulate_cpu(monkeypatch, avx512_bf16, amx)
    assert native_bf16("cpu") == (expected == "bf16")
    assert training_precision("auto", "cpu") == expected
    # an explicit choice wins over the capability
    assert training_precision("bf16", "cpu") == "bf16" and training_precision("no", "cpu") == "no"


def test_auto_follows_the_default_device_and_unknown_settings_are_errors(monkeypatch):
    simulate_cpu(monkeypatch, True)
    monkeypatch.setenv("SPEECHKIT_DEVICE", "cpu")
    assert training_precision() == "bf16"
    assert not native_bf16("meta")
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        training_precision("fp16")
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        TrainConfig(mixed_precision="float16")
    assert TrainConfig().mixed_precision == "auto"


def llm_compute_dtypes(model: SpeechLLM, config: TrainConfig, examples) -> set[torch.dtype]:
    """The dtypes the LLM's first attention projection computed in during one training step of `SpeechLLM.loss`."""
    seen: set[torch.dtype] = set()
    layer = model.llm.base_model.layers[0].self_attn.q_proj
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    try:
        train(model, lambda epoch: [0], lambda m, _: m.loss(examples, STAGES[1]), config, progress=False)
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("setting, native, expected", [("bf16", False, torch.bfloat16), ("no", True, torch.float32),
                                                       ("auto", True, torch.bfloat16),
                                                       ("auto", False, torch.float32)])
def test_the_speech_llm_loss_computes_in_the_precision_chosen(monkeypatch, tiny_checkpoints, smoke_benchmark,
                                                              setting, native, expected):
    """`SpeechLLM.loss` is not `forward`: accelerate's forward wrapping alone left it in float32 under "bf16"."""
    from speechkit.data.audio import load_utterance
    from speechkit.data.manifest import read_manifest

    simulate_cpu(monkeypatch, native)
    whisper, llm = tiny_checkpoints
    torch.manual_seed(0)
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=16))
    model.start_stage(STAGES[1])
    root, _ = smoke_benchmark
    examples = [Example(load_utterance(u, root), u.language, u.text)
                for u in read_manifest(root / "source_train.jsonl")[:2]]
    config = TrainConfig(max_steps=1, warmup_steps=0, mixed_precision=setting)
    assert llm_compute_dtypes(model, config, examples) == {expected}
    assert model.projector.linear1.weight.dtype == torch.float32  # master weights stay float32


def test_a_run_resumed_on_a_machine_of_the_other_kind_continues_in_its_precision(monkeypatch, tmp_path, capsys):
    """The float32 state (weights, optimizer) resumes; only the compute precision changes, and the log says so."""
    def model():
        torch.manual_seed(0)
        return torch.nn.Linear(4, 1)

    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
    dtypes = []

    def loss(m, rows):
        prediction = m(x[rows])
        dtypes.append(prediction.dtype)
        if len(dtypes) == 4 and interrupt:
            raise KeyboardInterrupt  # the session ended; its state was saved after step 3
        return prediction.float().pow(2).mean(), {}

    config = TrainConfig(max_steps=6, warmup_steps=0, log_every=1, checkpoint_minutes=0.0)
    simulate_cpu(monkeypatch, True)
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        train(model(), lambda epoch: [slice(i, i + 8) for i in range(0, 32, 8)], loss, config, tmp_path,
              progress=False)
    simulate_cpu(monkeypatch, False)
    interrupt = False
    log = train(model(), lambda epoch: [slice(i, i + 8) for i in range(0, 32, 8)], loss, config, tmp_path,
                progress=False)
    out = capsys.readouterr().out
    assert "resumed at step 3" in out and "precision bf16 until step 3, no from here" in out
    assert log.steps == 6 and log.precision == {0: "bf16", 3: "no"}
    assert dtypes[:3] == [torch.bfloat16] * 3 and dtypes[4:] == [torch.float32] * 3


def test_the_runner_records_the_precision_in_the_key(monkeypatch):
    from speechkit.pipeline import keys, stages

    simulate_cpu(monkeypatch, False)
    monkeypatch.setenv("SPEECHKIT_DEVICE", "cpu")
    assert keys.stage_precision({}) == "no" and keys.stage_precision({"mixed_precision": "bf16"}) == "bf16"
    stage = stages.discover("smoke")[0]
    keys = {keys.stage_key(stage, {}, {}, "library", precision) for precision in ("no", "bf16")}
    assert len(keys) == 2
    assert device.PRECISIONS == ("auto", "bf16", "no")


def test_the_weights_a_run_starts_from_do_not_depend_on_the_number_of_threads():
    """A long run resumes on another machine only if its starting weights hash alike there. The new token rows of the
    real LLM were drawn from the embeddings' mean and covariance, whose float rounding follows the thread count: a
    run started with one thread was "started from other weights" with two."""
    import os
    import subprocess
    import sys

    script = ("from speechkit.slam_asr.stages import StageSetup, build; "
              "from speechkit.engine.training import parameters_digest; "
              "setup = StageSetup(stage=1, encoder='pkg:whisper-tiny.en', llm='pkg:smollm2-135m-instruct', "
              "early_lora=4); model = build(setup, 'results/x'); model.start_stage(setup.spec); "
              "print(parameters_digest(model))")
    digests = {threads: subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                       env={**os.environ, "OMP_NUM_THREADS": threads}).stdout.split()[-1]
               for threads in ("1", "2")}
    assert digests["1"] == digests["2"]
