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

from speechkit.core.claims import Claim, Comparison
from speechkit.core.text import normaliser_for
from speechkit.llm_reward import claims as llm_reward_claims
from speechkit.metrics.scoring import error_rate, paired_difference
from speechkit.rehear import claims as rehear_claims
from speechkit.slam_asr import claims as slam_asr_claims
from speechkit.slam_asr import diarization_claims
from speechkit.speech_hands import claims as speech_hands_claims

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_MEASURED = "reproduced", "not reproduced", "inconclusive", "not measured"


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    value: float | None = None  # the difference (a fraction: 0.05 = 5 points, or 5% relative)
    low: float | None = None
    high: float | None = None
    verdict: str = NOT_MEASURED


# every paper's claims, each declared in its own package beside the rows and files it reads
CLAIMS = (*slam_asr_claims.CLAIMS, *diarization_claims.CLAIMS, *rehear_claims.CLAIMS, *speech_hands_claims.CLAIMS,
          *llm_reward_claims.CLAIMS)


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
