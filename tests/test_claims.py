"""The claims registry decides verdicts from paired differences, in the claimed direction."""

import json

import pytest

from speechkit.pipeline.claims import (CLAIMS, INCONCLUSIVE, NOT_MEASURED, NOT_REPRODUCED, REPRODUCED, Claim,
                                       Comparison, judge, verdict_table)


def row(value, low, high, stage="12_stage3_lora", name="test stage 3 minus Whisper source_test [en]"):
    return {"stage": stage, "name": name, "value": value, "ci_low": low, "ci_high": high}


def test_a_metric_claim_is_judged_by_where_its_interval_lies(tmp_path):
    claim = CLAIMS[2]
    assert judge(claim, [row(-0.05, -0.08, -0.02)], tmp_path).verdict == REPRODUCED
    assert judge(claim, [row(0.05, 0.02, 0.08)], tmp_path).verdict == NOT_REPRODUCED
    assert judge(claim, [row(0.01, -0.02, 0.04)], tmp_path).verdict == INCONCLUSIVE
    assert judge(claim, [], tmp_path).verdict == NOT_MEASURED
    higher = Claim("p", "t", "s", "f", direction="higher", metric=claim.metric)
    assert judge(higher, [row(0.05, 0.02, 0.08)], tmp_path).verdict == REPRODUCED


def write(path, hypotheses):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"u{i}", "manifest": "source_dev", "language": "en", "reference": ref,
                                        "hypothesis": hyp}) + "\n" for i, (ref, hyp) in enumerate(hypotheses)))


def test_a_comparison_of_two_stages_reads_their_hypotheses(tmp_path):
    references = [f"the cat sat on mat number {i}" for i in range(40)]
    write(tmp_path / "a" / "dev.jsonl", [(r, "a dog stood near the door") for r in references])
    write(tmp_path / "b" / "dev.jsonl", [(r, r) for r in references])
    better = Claim("p", "t", "b beats a", "f", compare=Comparison("a/dev.jsonl", "b/dev.jsonl", "source_dev"))
    verdict = judge(better, [], tmp_path)
    assert verdict.verdict == REPRODUCED and verdict.value < 0 and verdict.high < 0
    relative = Claim("p", "t", "b beats a", "f", unit="relative", compare=better.compare)
    assert judge(relative, [], tmp_path).value == pytest.approx(-1.0)  # all errors removed
    worse = Claim("p", "t", "a beats b", "f", compare=Comparison("b/dev.jsonl", "a/dev.jsonl", "source_dev"))
    assert judge(worse, [], tmp_path).verdict == NOT_REPRODUCED
    missing = Claim("p", "t", "s", "f", compare=Comparison("a/dev.jsonl", "c/dev.jsonl", "source_dev"))
    assert judge(missing, [], tmp_path).verdict == NOT_MEASURED
    assert "**reproduced**" in "\n".join(verdict_table([verdict]))


def test_a_claim_needs_one_measure_and_known_words():
    with pytest.raises(ValueError, match="exactly one"):
        Claim("p", "t", "s", "f")
    with pytest.raises(ValueError, match="direction"):
        Claim("p", "t", "s", "f", direction="down", metric="a::b")


def test_the_claims_figure_shows_each_measured_difference_beside_the_papers(tmp_path):
    from speechkit.ui.display import VERDICT_COLOURS, plot_claims

    judged = [judge(claim, [row(0.05, 0.02, 0.08)], tmp_path) for claim in CLAIMS]
    figure = plot_claims(judged)
    axes = figure.axes[0]
    measured = [line for line in axes.lines if line.get_marker() == "o" and len(line.get_xdata())]
    papers = [line for line in axes.lines if line.get_marker() == "D" and len(line.get_xdata())]
    assert len(measured) == 1 and measured[0].get_xdata()[0] == pytest.approx(5.0)  # only CLAIMS[2] has that row
    assert measured[0].get_color() == VERDICT_COLOURS[NOT_REPRODUCED]
    assert sorted(line.get_xdata()[0] for line in papers) == pytest.approx(
        sorted(100 * c.paper_difference for c in CLAIMS if c.paper_difference is not None))
    assert len(axes.get_yticklabels()) == len(CLAIMS)
