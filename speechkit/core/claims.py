"""What a paper's claim is and where the kit reads its measurement: a metric row a notebook wrote, or two stages'
saved hypotheses. Each paper package declares its own claims beside the names of the rows and files they read (one
definition, used by the notebook that writes them too); `speechkit.pipeline.claims` judges them."""

from __future__ import annotations

from dataclasses import dataclass


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
    metric: str = ""           # `metric_row(stage, name)` of a difference row with an interval (already relative
                               # when `unit` is "relative"), or
    compare: Comparison | None = None

    def __post_init__(self):
        if self.direction not in ("lower", "higher") or self.unit not in ("absolute", "relative"):
            raise ValueError(f"{self.statement}: direction is 'lower' or 'higher', unit 'absolute' or 'relative'")
        if bool(self.metric) == (self.compare is not None):
            raise ValueError(f"{self.statement}: give exactly one of `metric` and `compare`")

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages whose outputs the claim is read from."""
        if self.compare is not None:
            return tuple(dict.fromkeys(path.split("/")[0] for path in (self.compare.baseline, self.compare.system)))
        return (self.metric.split("::", 1)[0],)


def metric_row(stage: str, name: str) -> str:
    """How a claim names the metric row `name` of `stage` (its metrics.json)."""
    return f"{stage}::{name}"


def group_name(manifest: str, language: str) -> str:
    """The suffix of every per-group metric row: a manifest and a language, e.g. "source_test [en]"."""
    return f"{manifest} [{language}]"


def points(before: float, after: float) -> str:
    """A paper's two rates and their difference, as its claims quote them: "20.00% -> 17.50% (-2.50 points)"."""
    return f"{before:.2%} -> {after:.2%} ({100 * (after - before):+.2f} points)"
