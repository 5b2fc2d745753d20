"""The claims registry: each paper's claim the kit measures, how it is measured, and how its verdict is decided.

A claim is read against a paired difference (system minus baseline, on the same utterances) with a 95% bootstrap
interval: either a metric row a notebook wrote (`metric`), or a comparison of two stages' saved hypotheses
(`compare`), computed here when the summary is written. The verdict:
- "reproduced" when the interval excludes zero in the claimed direction,
- "not reproduced" when it excludes zero the other way,
- "inconclusive" otherwise, and "not measured" when the run has no such row or hypotheses.
Sign convention: differences are system minus baseline, so a negative WER difference means the system is better.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from speechkit.core.text import normaliser_for
from speechkit.metrics.scoring import error_rate, paired_difference

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_MEASURED = "reproduced", "not reproduced", "inconclusive", "not measured"


@dataclass(frozen=True)
class Comparison:
    """Two stages' hypotheses (`<stage>/<file>.jsonl`, as `evaluation.save_hypotheses` writes them) on one manifest."""
    baseline: str
    system: str
    manifest: str
    language: str = "en"


@dataclass(frozen=True)
class Claim:
    paper: str
    table: str
    statement: str
    paper_figure: str          # what the paper reports, once per claim
    paper_difference: float | None = None  # the paper's system minus baseline in this claim's unit, where it gives one
    direction: str = "lower"   # the sign the difference should have: "lower" (< 0) or "higher" (> 0)
    unit: str = "absolute"     # "absolute" (rate points) or "relative" (difference / baseline rate)
    metric: str = ""           # "<stage>::<metric name>" of a difference row with an interval (already relative
                               # when `unit` is "relative"), or
    compare: Comparison | None = None

    def __post_init__(self):
        if self.direction not in ("lower", "higher") or self.unit not in ("absolute", "relative"):
            raise ValueError(f"{self.statement}: direction is 'lower' or 'higher', unit 'absolute' or 'relative'")
        if bool(self.metric) == (self.compare is not None):
            raise ValueError(f"{self.statement}: give exactly one of `metric` and `compare`")


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    value: float | None = None  # the difference (a fraction: 0.05 = 5 points, or 5% relative)
    low: float | None = None
    high: float | None = None
    verdict: str = NOT_MEASURED


SEEWO = "Seewo (MLC-SLM), seed 002"
CLAIMS = (
    Claim(SEEWO, "Table 1", "stage 2 (special tokens) lowers dev WER below stage 1 (projector)",
          "24.32% -> 18.99% (-5.33 points)", -0.0533,
          compare=Comparison("10_stage1_projector/dev_hypotheses.jsonl",
                             "11_stage2_special_tokens/dev_hypotheses.jsonl", "source_dev")),
    Claim(SEEWO, "Table 1", "stage 3 (LoRA, language prompts) lowers dev WER below stage 2",
          "18.99% -> 15.48% (-3.51 points)", -0.0351,
          compare=Comparison("11_stage2_special_tokens/dev_hypotheses.jsonl",
                             "12_stage3_lora/dev_hypotheses.jsonl", "source_dev")),
    Claim(SEEWO, "Table 1 (vs the challenge baseline)", "the stage-3 speech LLM is at least level with the Whisper "
          "its encoder comes from (source test WER)", "beats the Whisper-based challenge baseline",
          metric="12_stage3_lora::test stage 3 minus Whisper source_test [en]"),
    Claim(SEEWO, "Table 1", "CoT SFT without prompt-loss weighting raises dev WER above stage 3",
          "15.48% -> 35.03% (+19.55 points)", 0.1955, direction="higher",
          compare=Comparison("15_cot_sft/stage3_dev_hypotheses.jsonl", "15_cot_sft/CoT_dev_hypotheses.jsonl",
                             "source_dev")),
    Claim(SEEWO, "Table 1", "prompt-loss weighting lowers the CoT model's dev WER below CoT without it",
          "35.03% -> 13.42% (-21.61 points)", -0.2161,
          compare=Comparison("15_cot_sft/CoT_dev_hypotheses.jsonl", "15_cot_sft/CoT_PLW_dev_hypotheses.jsonl",
                             "source_dev")),
    Claim(SEEWO, "Table 1", "RLVR (format + accuracy + correction rewards) lowers dev WER below CoT + PLW",
          "13.42% -> 12.73% (-0.69 points)", -0.0069,
          compare=Comparison("15_cot_sft/CoT_PLW_dev_hypotheses.jsonl", "16_rlvr/dev_hypotheses.jsonl",
                             "source_dev")),
    Claim("ReHear, seed 000", "Tables 1-2", "ASR fine-tuned on refined pseudo-labels beats plain pseudo-labels "
          "(round 1, medical test WER)", "better in every round; best after round 2 of 3",
          metric="20_rehear::round 1 WER ReHear minus pseudo-labels medical_test [en]"),
    Claim("Speech-Hands, seed 003", "Table 1", "routing beats the best single system (source test WER)",
          "5.69% vs 6.47% avg WER (-0.78 points; 12.1% relative)", -0.0078,
          metric="41_routing::routed minus the best single system source_test [en]"),
    Claim("Ling & Ye, seed 001", "abstract", "RL with an LLM reward lowers entity WER below self-training "
          "(medical test, relative change)", "-21% relative entity WER", -0.21, unit="relative",
          metric="30_llm_reward::entity WER relative change, RL minus self-training medical_test [en]"),
    Claim("Ling & Ye, seed 001", "abstract", "RL with an LLM reward lowers entity WER below self-training "
          "(finance test, relative change)", "-21% relative entity WER (the abstract's one figure)", -0.21, unit="relative",
          metric="31_llm_reward_finance::entity WER relative change, RL minus self-training finance_test [en]"),
)


def _hypotheses(path: Path, manifest: str, language: str) -> dict[str, tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["id"]: (r["reference"], r["hypothesis"]) for r in rows
            if r["manifest"] == manifest and r["language"] == language}


def _difference(compare: Comparison, out_dir: Path) -> tuple[float, float, float, float] | None:
    """(difference, low, high, relative) of system minus baseline on their common utterances, or None."""
    paths = [out_dir / compare.baseline, out_dir / compare.system]
    if not all(p.is_file() for p in paths):
        return None
    baseline, system = (_hypotheses(p, compare.manifest, compare.language) for p in paths)
    ids = sorted(baseline.keys() & system.keys())
    if not ids:
        return None
    normaliser = normaliser_for(compare.language)
    a = error_rate([baseline[i][0] for i in ids], [baseline[i][1] for i in ids], normaliser)
    b = error_rate([system[i][0] for i in ids], [system[i][1] for i in ids], normaliser)
    d = paired_difference(a, b)
    return d.difference, d.interval.low, d.interval.high, a.rate


def judge(claim: Claim, rows: list[dict], out_dir: Path) -> Verdict:
    """The claim's verdict from the summary rows (metric claims) or the stages' hypotheses (comparisons)."""
    if claim.compare is not None:
        measured = _difference(claim.compare, out_dir)
        if measured is None:
            return Verdict(claim)
        value, low, high, base = measured
    else:
        stage, name = claim.metric.split("::", 1)
        row = next((r for r in rows if r["stage"] == stage and r["name"] == name), None)
        if row is None or row.get("ci_low") is None:
            return Verdict(claim)
        value, low, high, base = row["value"], row["ci_low"], row["ci_high"], None
    if claim.unit == "relative" and base is not None:  # a comparison: relative to the baseline's rate
        value, low, high = value / base, low / base, high / base
    sign = -1 if claim.direction == "lower" else 1
    if sign * low > 0 and sign * high > 0:
        verdict = REPRODUCED
    elif sign * low < 0 and sign * high < 0:
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return Verdict(claim, value, low, high, verdict)


def verdicts(rows: list[dict], out_dir: str | Path) -> list[Verdict]:
    return [judge(claim, rows, Path(out_dir)) for claim in CLAIMS]


def verdict_table(results: list[Verdict]) -> list[str]:
    """Markdown lines: claim, paper's figure, measured difference with its interval, verdict."""
    lines = ["| paper | claim | paper's figure | measured: system - baseline [95% CI] | verdict |",
             "| --- | --- | --- | --- | --- |"]
    for v in results:
        c = v.claim
        if v.value is None:
            measured = "-"
        elif c.unit == "relative":
            measured = f"{100 * v.value:+.1f}% relative [{100 * v.low:+.1f}, {100 * v.high:+.1f}]"
        else:
            measured = f"{100 * v.value:+.2f} points [{100 * v.low:+.2f}, {100 * v.high:+.2f}]"
        lines.append(f"| {c.paper}, {c.table} | {c.statement} | {c.paper_figure} | {measured} | **{v.verdict}** |")
    return lines
