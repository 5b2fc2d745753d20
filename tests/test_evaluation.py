"""Evaluation helpers: paired difference rows between two systems' results, and the plots of rates and rewards."""

import pytest

from speechkit.data.manifest import EntitySpan, Utterance
from speechkit.engine.evaluation import difference_metrics, evaluate, score


def utterance(i, text, entity=None):
    spans = (EntitySpan(text.index(entity), text.index(entity) + len(entity), "drug"),) if entity else ()
    return Utterance(f"u{i}", "a.wav", 1.0, "en", "s", "medical", "test", text, entities=spans)


def test_difference_rows_are_system_minus_baseline_with_the_relative_change():
    utterances = [utterance(i, f"take nifedipine {i} times a day", "nifedipine") for i in range(30)]
    baseline = score("medical_test", utterances, [u.text.replace("nifedipine", "nifty pine") for u in utterances])
    system = score("medical_test", utterances, [u.text for u in utterances])
    rows = {m.name: m for m in difference_metrics(baseline, system, "RL minus self-training", relative=True,
                                                  claim="paper: -21%")}
    entity = rows["entity WER RL minus self-training medical_test [en]"]
    assert entity.value == pytest.approx(-1.0) and entity.ci_high < 0  # every entity word fixed
    relative = rows["entity WER relative change, RL minus self-training medical_test [en]"]
    assert relative.value == pytest.approx(-1.0) and relative.claim == "paper: -21%"
    assert rows["WER RL minus self-training medical_test [en]"].value == pytest.approx(-2 / 6)
    assert len(rows) == 4
    # a prefix names the round; results without entities give WER rows only; unmatched manifests give none
    plain = score("source_test", [utterance(0, "a b c")], ["a b"])
    assert [m.name for m in difference_metrics(plain, plain, "x minus y", "round 2 ")] == [
        "round 2 WER x minus y source_test [en]"]
    assert difference_metrics(baseline, plain, "x minus y") == []


def test_plot_rates_puts_the_papers_figure_beside_the_measured_bar():
    from speechkit.ui.display import plot_rates

    utterances = [utterance(i, f"take nifedipine {i} times a day") for i in range(10)]
    rates = {"context: none": score("t", utterances, [u.text.replace("take", "bake") for u in utterances])[0].wer,
             "context: oracle": score("t", utterances, [u.text for u in utterances])[0].wer}
    axes = plot_rates(rates, "WER", paper={"context: none": 0.1548}).axes[0]
    assert [bar.get_height() for bar in axes.patches] == pytest.approx([100 / 6, 0.0])
    diamonds = [line for line in axes.lines if line.get_marker() == "D"]
    assert len(diamonds) == 1 and list(diamonds[0].get_xdata()) == [0]
    assert diamonds[0].get_ydata()[0] == pytest.approx(15.48)


def test_evaluate_refuses_a_bare_string_of_manifests():
    with pytest.raises(ValueError, match=r"manifests must be a non-empty list of names.*not 'source_dev'"):
        evaluate(lambda utterances, audios: [], "data_manifests/smoke", "source_dev")


def test_plot_rewards_draws_each_reward_and_the_kl_beside_them_when_logged():
    from speechkit.engine.training import TrainLog
    from speechkit.ui.display import plot_rewards

    parts = [{"reward accuracy": 0.2 * s, "reward format": 1.0, "kl": 0.01 * s} for s in range(1, 4)]
    rewards, kl = plot_rewards(TrainLog(step=[1, 2, 3], loss=[0.0] * 3, parts=parts)).axes
    assert sorted(line.get_label() for line in rewards.lines) == ["accuracy", "format"]
    assert list(kl.lines[0].get_ydata()) == pytest.approx([0.01, 0.02, 0.03])
    without_kl = [{k: v for k, v in p.items() if k != "kl"} for p in parts]
    assert len(plot_rewards(TrainLog(step=[1, 2, 3], loss=[0.0] * 3, parts=without_kl)).axes) == 1
