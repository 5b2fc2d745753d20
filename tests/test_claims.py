"""The claims registry decides verdicts from paired differences, in the claimed direction."""

import json

import pytest

from speechkit.core.claims import Claim, Comparison
from speechkit.core.results import Metric
from speechkit.data.manifest import EntitySpan, Utterance
from speechkit.engine.evaluation import difference_metrics, score
from speechkit.engine.recipes import compare
from speechkit.llm_reward import claims as llm_reward_claims
from speechkit.pipeline.claims import CLAIMS, INCONCLUSIVE, NOT_MEASURED, NOT_REPRODUCED, REPRODUCED, judge, verdict_table
from speechkit.pipeline.stages import discover
from speechkit.rehear import claims as rehear_claims
from speechkit.slam_asr import claims as slam_asr_claims
from speechkit.speech_hands import claims as speech_hands_claims
from speechkit.speech_hands.routing import routed_differences


def utterances(domain, manifest, count=30):
    return [Utterance(f"u{i}", "a.wav", 1.0, "en", "s", domain, "test", f"take nifedipine {i} times a day",
                      entities=(EntitySpan(5, 15, "drug"),)) for i in range(count)]


def results(manifest, domain, wrong):
    chosen = utterances(domain, manifest)
    return score(manifest, chosen, [u.text.replace("nifedipine", "nifty pine") if wrong else u.text for u in chosen])


def claim_reading(stage):
    return next(c for c in CLAIMS if c.stages == (stage,))


def test_the_rows_the_library_writes_are_the_rows_the_claims_read(tmp_path):
    """Each metric claim is judged on rows made by the same functions (and names) its notebook uses: a renamed
    key on either side leaves the claim unmeasured here."""
    bad, good = results("medical_test", "medical", True), results("medical_test", "medical", False)
    rehear = difference_metrics(bad, good, rehear_claims.rehear_minus("pseudo-labels"), rehear_claims.round_prefix(1))
    rl = difference_metrics(results("finance_test", "finance", True), results("finance_test", "finance", False),
                            llm_reward_claims.RL_MINUS_SELF_TRAINING, relative=True)
    source_bad, source_good = results("source_test", "source", True), results("source_test", "source", False)
    routed = routed_differences({"routed": source_good, "whisper": source_bad, "GER cascade": source_bad},
                                ["whisper"])
    stage3 = [Metric(f"{slam_asr_claims.STAGE3_MINUS_WHISPER} {key}", d.difference, d.interval.low, d.interval.high)
              for key, d in compare(source_bad, source_good)]
    for stage, metrics in [(rehear_claims.STAGE, rehear), (llm_reward_claims.STAGES["finance"], rl),
                           (speech_hands_claims.STAGE, routed), (slam_asr_claims.STAGE_DIRS[3], stage3)]:
        rows = [{"stage": stage, "name": m.name, "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high}
                for m in metrics]
        claim = claim_reading(stage)
        assert judge(claim, rows, tmp_path).verdict == REPRODUCED, claim.statement  # the system fixed every error
        flipped = [{**r, "value": -r["value"], "ci_low": -r["ci_high"], "ci_high": -r["ci_low"]} for r in rows]
        assert judge(claim, flipped, tmp_path).verdict == NOT_REPRODUCED
        assert judge(claim, [{**r, "ci_low": -0.1, "ci_high": 0.1} for r in rows], tmp_path).verdict == INCONCLUSIVE
        assert judge(claim, [], tmp_path).verdict == NOT_MEASURED
    higher = Claim("p", "t", "s", "f", direction="higher", metric=claim_reading(rehear_claims.STAGE).metric)
    assert judge(higher, [{"stage": rehear_claims.STAGE, "name": rehear[0].name, "value": 0.05, "ci_low": 0.02,
                           "ci_high": 0.08}], tmp_path).verdict == REPRODUCED


def test_every_claim_reads_stages_of_the_default_profile():
    stages = {stage.name for stage in discover("default")}
    for claim in CLAIMS:
        assert set(claim.stages) <= stages, claim.statement


def test_the_papers_figures_are_quoted_from_one_table():
    stage2 = next(c for c in CLAIMS if c.statement.startswith("stage 2"))
    assert stage2.paper_figure == "24.32% -> 18.99% (-5.33 points)"
    assert stage2.paper_difference == pytest.approx(-0.0533)
    assert slam_asr_claims.dev_wer_claim(3) == "paper: 15.48% after stage 3"


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

    stage3 = claim_reading(slam_asr_claims.STAGE_DIRS[3])
    row = {"stage": stage3.stages[0], "name": stage3.metric.partition("::")[2], "value": 0.05, "ci_low": 0.02,
           "ci_high": 0.08}
    judged = [judge(claim, [row], tmp_path) for claim in CLAIMS]
    figure = plot_claims(judged)
    axes = figure.axes[0]
    measured = [line for line in axes.lines if line.get_marker() == "o" and len(line.get_xdata())]
    papers = [line for line in axes.lines if line.get_marker() == "D" and len(line.get_xdata())]
    assert len(measured) == 1 and measured[0].get_xdata()[0] == pytest.approx(5.0)  # only stage 3's claim has that row
    assert measured[0].get_color() == VERDICT_COLOURS[NOT_REPRODUCED]
    assert sorted(line.get_xdata()[0] for line in papers) == pytest.approx(
        sorted(100 * c.paper_difference for c in CLAIMS if c.paper_difference is not None))
    assert len(axes.get_yticklabels()) == len(CLAIMS)


def test_routed_differences_pair_each_manifest_with_itself_whatever_order_the_systems_list_them():
    def scored(manifest, domain, count, wrong):
        chosen = utterances(domain, manifest, count)
        return score(manifest, chosen, [u.text.replace("nifedipine", "nifty pine") if wrong else u.text
                                        for u in chosen])[0]

    source_good, source_bad = scored("source_test", "source", 30, False), scored("source_test", "source", 30, True)
    medical_good = scored("medical_test", "medical", 20, False)
    medical_bad = scored("medical_test", "medical", 20, True)
    systems = {"routed": [source_bad, medical_good], "whisper": [medical_bad, source_good],
               "GER cascade": [source_bad, medical_bad]}
    rows = {m.name: m for m in routed_differences(systems, ["whisper"])}
    medical = rows[f"{speech_hands_claims.ROUTED_MINUS_BEST} medical_test [en]"]
    source = rows[f"{speech_hands_claims.ROUTED_MINUS_BEST} source_test [en]"]
    assert medical.value == pytest.approx(medical_good.wer.rate - medical_bad.wer.rate) and medical.value < 0
    assert source.value == pytest.approx(source_bad.wer.rate - source_good.wer.rate) and source.value > 0
    with pytest.raises(ValueError, match="whisper not scored on medical_test"):
        routed_differences({**systems, "whisper": [source_good]}, ["whisper"])
