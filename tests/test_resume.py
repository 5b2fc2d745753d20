"""A speech-LLM stage killed with SIGKILL resumes in a new process; its saved model is never half-written."""

import signal
import subprocess
import sys

import pytest

from speechkit.models import speech_llm
from speechkit.slam_asr.stages import StageSetup, build

# One training process: builds the stage's model as the stage notebooks do, trains it with a checkpoint folder and
# kills itself (SIGKILL: nothing runs after it) at the loss call `kill_at` (0: never).
SCRIPT = """
import os, signal, sys
from speechkit.slam_asr.stages import StageSetup, build
from speechkit.engine.training import TrainConfig, seed_everything, train

encoder, llm, out, stage, kill_at = sys.argv[1:]
seed_everything(0)
setup = StageSetup(stage=int(stage), encoder=encoder, llm=llm, projector_hidden=16)
model = build(setup, out)
model.start_stage(setup.spec)
calls = 0

def loss(model, batch):
    global calls
    calls += 1
    if calls == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
    return sum((p.float() ** 2).mean() for p in model.parameters() if p.requires_grad), {}

config = TrainConfig(max_steps=4, warmup_steps=0, log_every=1, checkpoint_minutes=0.0)
log = train(model, lambda epoch: [0, 1, 2], loss, config, os.path.join(out, "checkpoint"), progress=False)
print("steps trained", log.steps)
"""


@pytest.mark.parametrize("stage", [1, 3])  # stage 1 draws a new projector, stage 3 new LoRA adapters
def test_a_stage_killed_with_sigkill_resumes_in_a_new_process(tiny_checkpoints, tmp_path, stage):
    encoder, llm = tiny_checkpoints
    script = tmp_path / "stage.py"
    script.write_text(SCRIPT)

    def run(kill_at: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(encoder), str(llm), str(tmp_path), str(stage),
                               str(kill_at)], capture_output=True, text=True, timeout=300)

    killed = run(kill_at=3)  # after two steps, each saved (checkpoint_minutes 0)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run(kill_at=0)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step 2" in resumed.stdout and "afresh" not in resumed.stdout
    assert "steps trained 4" in resumed.stdout


def test_trained_weights_are_written_atomically(tiny_checkpoints, tmp_path, monkeypatch):
    encoder, llm = tiny_checkpoints
    setup = StageSetup(stage=1, encoder=str(encoder), llm=str(llm), projector_hidden=16)
    model = build(setup, tmp_path)
    model.start_stage(setup.spec)
    folder = tmp_path / "checkpoint"
    model.save(folder)
    before = (folder / speech_llm.WEIGHTS_FILE).read_bytes()

    def interrupted(tensors, filename, *args, **kwargs):  # killed half-way through writing
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(speech_llm, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save(folder)
    assert (folder / speech_llm.WEIGHTS_FILE).read_bytes() == before
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
