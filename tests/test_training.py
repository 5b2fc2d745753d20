import pytest
import torch

from speechkit.core.results import REPO_ROOT, from_params
from speechkit.engine.training import (LOG_FILE, STATE_FILE, TrainConfig, learning_rate, read_log, same_run,
                                       seed_everything, train, training_metrics)
from speechkit.pipeline.stages import declared_parameters, discover

COMMITTED_STATES = sorted((REPO_ROOT / "results" / "pretrain").glob(f"*/checkpoint/{STATE_FILE}"))


def toy():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 1)


X = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
Y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def batches(epoch):
    return [slice(i, i + 16) for i in range(0, 64, 16)]


def loss(model, rows):
    return torch.nn.functional.mse_loss(model(X[rows]), Y[rows]), {}


def test_schedule_warms_up_then_decays_by_steps_or_wall_clock():
    config = TrainConfig(learning_rate=1.0, warmup_steps=10, max_steps=100, min_lr_ratio=0.1)
    assert learning_rate(config, 0, 0)[0] == pytest.approx(0.1)
    peak, middle, late = (learning_rate(config, step, 0)[0] for step in (9, 50, 99))
    assert 0.95 < peak and middle == pytest.approx(0.55) and late < 0.11
    assert learning_rate(config, 100, 0) == (pytest.approx(0.1), 1.0)
    timed = TrainConfig(learning_rate=1.0, warmup_steps=0, max_steps=10**6, max_minutes=1.0, min_lr_ratio=0.0)
    assert learning_rate(timed, 5, 30.0)[0] == pytest.approx(0.5) and learning_rate(timed, 5, 60.0)[1] == 1.0


def test_training_learns_and_stops_at_the_step_budget():
    model = toy()
    log = train(model, batches, loss, TrainConfig(learning_rate=0.1, warmup_steps=0, max_steps=200, log_every=50),
                progress=False)
    assert log.stopped_by == "max_steps" and log.step == [50, 100, 150, 200]
    assert log.loss[-1] < 0.01 * log.loss[0]


def test_interrupted_training_resumes_where_it_stopped(tmp_path, capsys):
    config = TrainConfig(learning_rate=0.05, warmup_steps=0, max_steps=12, log_every=3)
    straight = toy()
    train(straight, batches, loss, config, progress=False)

    resumed = toy()
    calls = []

    def failing_loss(model, rows):
        calls.append(rows)
        if len(calls) == 7:
            raise KeyboardInterrupt  # killed mid-run, after the state was saved
        return loss(model, rows)

    with pytest.raises(KeyboardInterrupt):
        train(resumed, batches, failing_loss, TrainConfig(**{**config.__dict__, "checkpoint_minutes": 0.0}),
              tmp_path, progress=False)
    assert (tmp_path / STATE_FILE).is_file()
    resumed = toy()
    log = train(resumed, batches, loss, TrainConfig(**{**config.__dict__, "checkpoint_minutes": 0.0}), tmp_path,
                progress=False)
    assert log.step == [3, 6, 9, 12]
    torch.testing.assert_close(resumed.weight, straight.weight)
    assert capsys.readouterr().out.count("resumed at step 6") == 1
    # the loss curve on disk is the whole run's, the interrupted part included
    written = read_log(tmp_path / LOG_FILE)
    assert written.step == log.step and written.loss == pytest.approx(log.loss)


def test_the_loss_curve_is_on_disk_while_training_runs(tmp_path):
    seen = []

    def watching_loss(model, rows):
        if (tmp_path / LOG_FILE).is_file():
            seen.append(read_log(tmp_path / LOG_FILE).step[-1])
        value, _ = loss(model, rows)
        return value, {"half": value.item() / 2}

    log = train(toy(), batches, watching_loss, TrainConfig(learning_rate=0.1, warmup_steps=0, max_steps=8, log_every=2),
                tmp_path, progress=False)
    assert seen[0] == 2 and seen[-1] == 6  # rewritten at each logged step, before the run ends
    written = read_log(tmp_path / LOG_FILE)
    assert written.step == [2, 4, 6, 8] and written.learning_rate == pytest.approx(log.learning_rate)
    assert [p["half"] for p in written.parts] == pytest.approx([p["half"] for p in log.parts])


def test_a_state_saved_under_another_configuration_is_not_resumed(tmp_path):
    train(toy(), batches, loss, TrainConfig(max_steps=4, warmup_steps=0, log_every=2), tmp_path, progress=False)
    log = train(toy(), batches, loss, TrainConfig(max_steps=6, warmup_steps=0, log_every=2), tmp_path, progress=False)
    assert log.step == [2, 4, 6]


def test_a_state_saved_by_a_run_from_other_weights_is_not_resumed(tmp_path, capsys):
    """A rerun of a stage whose previous stage was retrained: same configuration, other starting weights."""
    config = TrainConfig(max_steps=4, warmup_steps=0, log_every=2)
    train(toy(), batches, loss, config, tmp_path, progress=False)
    same = train(toy(), batches, loss, config, tmp_path, progress=False)  # resumes the finished run: no new steps
    assert same.step == [2, 4] and "afresh" not in capsys.readouterr().out
    other = toy()
    with torch.no_grad():
        other.bias.add_(1.0)
    log = train(other, batches, loss, config, tmp_path, progress=False)
    assert log.step == [2, 4] and "started from other weights" in capsys.readouterr().out
    assert log.loss[0] != same.loss[0]


def test_nothing_to_train_is_an_error():
    model = toy().requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter of the model requires grad"):
        train(model, batches, loss, TrainConfig(), progress=False)


def test_training_metrics_report_the_steps_trained_not_the_last_logged_step():
    log = train(toy(), batches, loss, TrainConfig(max_steps=10, warmup_steps=0, log_every=4), progress=False)
    assert log.step == [4, 8]
    steps, minutes = training_metrics(log)
    assert steps.value == 10 and minutes.value >= 0


def test_seed_everything_makes_a_new_model_reproducible():
    seed_everything(3)
    first = torch.nn.Linear(4, 1)
    seed_everything(3)
    torch.testing.assert_close(torch.nn.Linear(4, 1).weight, first.weight)


def test_a_state_resumes_when_only_bookkeeping_changed_and_a_bfloat16_state_keeps_its_moments_in_bfloat16(tmp_path, capsys):
    """Sessions and machines change the checkpoint interval, the log interval, the state's precision: the run is the
    same. A state saved before an option existed resumes with the option at its default."""
    config = TrainConfig(learning_rate=0.05, warmup_steps=0, max_steps=8, log_every=2, checkpoint_minutes=0.0)
    straight = toy()
    train(straight, batches, loss, config, progress=False)

    def interrupted():  # a loss that is killed at its fifth step, after the state of step 4 was saved
        calls = []

        def killed(model, rows):
            calls.append(rows)
            if len(calls) == 5:
                raise KeyboardInterrupt
            return loss(model, rows)
        return killed

    with pytest.raises(KeyboardInterrupt):
        train(toy(), batches, interrupted(), config, tmp_path / "full", progress=False)
    compact = TrainConfig(**{**config.__dict__, "state_precision": "bfloat16"})
    with pytest.raises(KeyboardInterrupt):
        train(toy(), batches, interrupted(), compact, tmp_path / "half", progress=False)
    saved = torch.load(tmp_path / "half" / STATE_FILE, weights_only=False)
    assert {v.dtype for entry in saved["optimizer"]["state"].values() for k, v in entry.items() if k != "step"} == {
        torch.bfloat16}
    resumed = toy()
    later = TrainConfig(**{**compact.__dict__, "log_every": 4, "checkpoint_minutes": 5.0})
    log = train(resumed, batches, loss, later, tmp_path / "half", progress=False)
    assert "resumed at step 4" in capsys.readouterr().out and log.steps == 8
    torch.testing.assert_close(resumed.weight, straight.weight, rtol=1e-2, atol=1e-3)
    older = torch.load(tmp_path / "full" / STATE_FILE, weights_only=False)
    for option in ("state_precision", "gradient_accumulation_steps"):  # saved before these options existed
        del older["config"][option]
    torch.save(older, tmp_path / "full" / STATE_FILE)
    train(toy(), batches, loss, config, tmp_path / "full", progress=False)
    assert "resumed at step 4" in capsys.readouterr().out
    with pytest.raises(ValueError, match="state_precision"):
        TrainConfig(state_precision="float16")


@pytest.mark.parametrize("path", COMMITTED_STATES, ids=lambda path: path.parents[1].name)
def test_a_committed_pretraining_state_belongs_to_the_run_its_parameters_describe(path):
    """The pretraining resumes these states on other machines and sessions: options added since they were saved
    must not make them another run."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    stage = next(s for s in discover("pretrain") if s.name == path.parents[1].name)
    assert same_run(saved["config"], from_params(TrainConfig, {**declared_parameters(stage.notebook),
                                                               **stage.parameters}))
