"""Training in two processes (`accelerate launch` with the committed DDP config, gloo on the CPU) is training in one:
the same losses and the same weights over the same global batches, for the supervised loop and a GRPO step; a batch
in micro-batches is the batch in one step; the state two processes saved resumes in one; a speech-LLM stage trained
through `speechkit.pipeline.launch` is resumed by its notebook's training cell.

Run as a script (`accelerate launch ... tests/test_distributed.py OUT ENCODER LLM DATA`), this file is the launched
program: each process trains every case and process 0 writes the results to OUT."""

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from speechkit.engine.grpo import GRPOConfig, GRPOStep, Rollout, token_log_probs
from speechkit.engine.recipes import CHECKPOINT
from speechkit.engine.training import LOG_FILE, STATE_FILE, TrainConfig, shuffled_batches, train
from speechkit.models.speech_llm import CONFIG_FILE
from speechkit.pipeline.launch import stage_parameters, train_launched_stage

ROOT = Path(__file__).resolve().parents[1]
DDP_CONFIG = ROOT / "speechkit" / "pipeline" / "accelerate_ddp.yaml"

# Items of 1 to 7 tokens: the shares of a batch hold different token counts, so the mean of their means (what
# averaging over processes gives) is not the batch's token-weighted mean.
ITEMS, BATCH, CLASSES = 15, 5, 3
_data = torch.Generator().manual_seed(2)
TOKENS = [1 + (5 * i) % 7 for i in range(ITEMS)]
FEATURES = [torch.randn(n, 4, generator=_data) for n in TOKENS]
LABELS = [torch.randint(0, CLASSES, (n,), generator=_data) for n in TOKENS]
TOKEN_WEIGHTS = [torch.rand(n, generator=_data) + 0.5 for n in TOKENS]
CONFIG = TrainConfig(learning_rate=0.1, warmup_steps=0, max_steps=3, log_every=1, grad_clip=0.5,
                     checkpoint_minutes=0.0, mixed_precision="no")


def classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(4, CLASSES)


def token_loss(model, items):
    """sum(w * CE) / sum(w) over the items' tokens, as the kit's losses are; the weight is sum(w)."""
    weights = torch.cat([TOKEN_WEIGHTS[i] for i in items])
    cross_entropy = torch.nn.functional.cross_entropy(model(torch.cat([FEATURES[i] for i in items])),
                                                      torch.cat([LABELS[i] for i in items]), reduction="none")
    return (weights * cross_entropy).sum() / weights.sum(), {"unweighted": cross_entropy.mean().item()}, weights.sum()


def supervised(config: TrainConfig, checkpoint=None):
    model = classifier()
    log = train(model, shuffled_batches(ITEMS, BATCH, seed=0), token_loss, config, checkpoint, progress=False)
    return log, model


# GRPO: rollouts fixed by the prompt (the same in any process, which sampling would not be); log-probabilities from
# a table of logits per prompt; 3 prompts a step, so the two processes take 2 and 1.
PROMPTS, LENGTH, VOCAB = 6, 4, 5


class FixedRollouts:
    def sample(self, model, prompts, config):
        rows = [(p, g) for p in prompts for g in range(config.num_generations)]
        ids = torch.tensor([[(p * 3 + g + t) % VOCAB for t in range(LENGTH)] for p, g in rows])
        lengths = torch.tensor([1 + (p + 2 * g) % LENGTH for p, g in rows])
        mask = (torch.arange(LENGTH)[None] < lengths[:, None]).long()
        completions = [" ".join(map(str, row[:n].tolist())) for row, n in zip(ids, lengths, strict=True)]
        return Rollout(completions, ids, mask)

    def log_probs(self, model, prompts, rollout, temperature):
        groups = rollout.completion_ids.shape[0] // len(prompts)
        logits = model(torch.tensor(prompts).repeat_interleave(groups)).view(-1, LENGTH, VOCAB)
        return token_log_probs(logits, rollout.completion_ids, temperature)


def grpo():
    torch.manual_seed(0)
    model = torch.nn.Embedding(PROMPTS, LENGTH * VOCAB)
    step = GRPOStep(model, FixedRollouts(), GRPOConfig(num_generations=2, max_completion_length=LENGTH),
                    {"length": lambda prompts, completions, **_: [len(c) / 7 for c in completions]}, None,
                    prompt=lambda i: i, columns=lambda items: {})
    log = train(model, shuffled_batches(PROMPTS, 3, seed=0), step, replace(CONFIG, learning_rate=0.5), progress=False)
    return log, model


STAGE = "10_stage1_projector"


def speech_llm_stage(out: Path, encoder: str, llm: str, data: str) -> dict:
    """The smoke profile's stage 1 over the tiny checkpoints, 2 steps: the parameters its notebook would run with."""
    overrides = [f"{STAGE}.encoder={encoder}", f"{STAGE}.llm={llm}", f"{STAGE}.max_steps=2", f"{STAGE}.max_batch=4",
                 f"{STAGE}.template='USER: {{speech}} {{prompt}} ASSISTANT:'"]  # the tiny LM has no chat template
    return stage_parameters("smoke", STAGE, out / "results", data, overrides)


def launched(out: Path, encoder: str, llm: str, data: str) -> None:
    """What each launched process runs; process 0 writes each case's losses, reward means and weights."""
    cases = {"supervised": supervised(CONFIG, out / "checkpoint"),
             "micro-batches": supervised(replace(CONFIG, gradient_accumulation_steps=2)),
             "grpo": grpo()}
    train_launched_stage(speech_llm_stage(out, encoder, llm, data))
    if torch.distributed.get_rank() == 0:
        torch.save({name: {"loss": log.loss, "reward": [p.get("reward") for p in log.parts],
                           "weights": model.state_dict()} for name, (log, model) in cases.items()}, out / "results.pt")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, tiny_checkpoints, smoke_benchmark):
    """The cases trained by `accelerate launch` with the committed config, in 2 processes: (results, folder, the
    launched stage's parameters)."""
    out = tmp_path_factory.mktemp("two_processes")
    arguments = [str(out), *map(str, tiny_checkpoints), str(smoke_benchmark[0])]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_CONFIG),
               "--num_processes", "2", "--main_process_port", str(free_port()), __file__, *arguments]
    # this checkout's speechkit, whichever one the environment installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return torch.load(out / "results.pt"), out, speech_llm_stage(out, *arguments[1:])


def assert_same_training(log, model, result):
    assert log.loss == pytest.approx(result["loss"], rel=1e-5)
    for name, weight in model.state_dict().items():
        torch.testing.assert_close(weight, result["weights"][name], rtol=1e-5, atol=1e-6)


def test_two_processes_train_as_one_over_the_same_global_batches(two_processes):
    results, *_ = two_processes
    log, model = supervised(CONFIG)
    assert_same_training(log, model, results["supervised"])
    assert results["supervised"]["weights"]["weight"].ne(classifier().weight).all()  # it did train
    # the shares' plain mean, what averaging over processes would log, is another number
    first = shuffled_batches(ITEMS, BATCH, seed=0)(0)[0]
    plain = (token_loss(classifier(), first[0::2])[0] + token_loss(classifier(), first[1::2])[0]) / 2
    assert abs(plain.item() - log.loss[0]) > 1e-3


def test_two_processes_with_micro_batches_train_as_one(two_processes):
    results, *_ = two_processes
    log, model = supervised(CONFIG)
    assert_same_training(log, model, results["micro-batches"])


def test_a_grpo_step_in_two_processes_is_the_one_process_step(two_processes):
    results, *_ = two_processes
    log, model = grpo()
    assert_same_training(log, model, results["grpo"])
    assert [p["reward"] for p in log.parts] == pytest.approx(results["grpo"]["reward"])


def test_the_state_two_processes_saved_resumes_in_one(two_processes, capsys):
    results, out, _ = two_processes
    checkpoint = out / "checkpoint"
    assert sorted(p.name for p in checkpoint.iterdir()) == [LOG_FILE, STATE_FILE]  # process 0's, no temporary file
    log, model = supervised(replace(CONFIG, gradient_accumulation_steps=2), checkpoint)  # bookkeeping: the same run
    assert "resumed at step 3" in capsys.readouterr().out
    assert log.loss == results["supervised"]["loss"]
    for name, weight in model.state_dict().items():
        torch.testing.assert_close(weight, results["supervised"]["weights"][name], rtol=0, atol=0)


def test_a_stage_launched_in_two_processes_is_resumed_by_its_notebook(two_processes, capsys):
    """What `accelerate launch -m speechkit.pipeline.launch` trained, the notebook's training cell (one process,
    the same parameters) finds finished: it resumes the state, trains no step, and saves the model again."""
    *_, parameters = two_processes
    checkpoint = Path(parameters["output_dir"]) / CHECKPOINT
    assert (checkpoint / STATE_FILE).is_file() and (checkpoint / CONFIG_FILE).is_file()
    log = train_launched_stage(parameters)
    out = capsys.readouterr().out
    assert "resumed at step 2" in out and "afresh" not in out and log.steps == 2


def test_a_batch_in_micro_batches_is_the_batch_in_one_step():
    """A batch of 4 in one step, and in 2 micro-batches of 2: the same losses and weights (one process)."""
    config = replace(CONFIG, max_steps=4)
    batches = shuffled_batches(12, 4, seed=1)
    whole, split = classifier(), classifier()
    whole_log = train(whole, batches, token_loss, config, progress=False)
    split_log = train(split, batches, token_loss, replace(config, gradient_accumulation_steps=2), progress=False)
    assert split_log.loss == pytest.approx(whole_log.loss, rel=1e-6)
    torch.testing.assert_close(split.weight, whole.weight)
    torch.testing.assert_close(split.bias, whole.bias)


def test_a_batch_that_is_not_a_list_cannot_be_shared():
    with pytest.raises(TypeError, match="must be a list of items"):
        train(classifier(), lambda epoch: [slice(0, 4)], lambda model, rows: (model.weight.sum(), {}),
              replace(CONFIG, gradient_accumulation_steps=2), progress=False)


if __name__ == "__main__":
    launched(Path(sys.argv[1]), *sys.argv[2:])
