"""Speech-Hands' claim the kit measures, the paper's figures (once) and the rows they are read from."""

from __future__ import annotations

from speechkit.core.claims import Claim, group_name, metric_row

PAPER = "Speech-Hands, seed 003"
STAGE = "41_routing"
# Table 1's average WERs: routing, the best single system, the GER cascade
ROUTED_WER, BEST_SINGLE_WER, CASCADE_WER = 0.0569, 0.0647, 0.0833
ROUTED_MINUS_BEST = "routed minus the best single system"  # a stable name: which system it was goes in the claim


def best_single_figure(best: str) -> str:
    return f"paper: {1 - ROUTED_WER / BEST_SINGLE_WER:.1%} relative better than the best single system ({best})"


CASCADE_FIGURE = f"paper: routing beats the GER cascade ({100 * ROUTED_WER:.2f} vs {CASCADE_WER:.2%} avg)"

CLAIMS = (
    Claim(PAPER, "Table 1", "routing beats the best single system (source test WER)",
          f"{ROUTED_WER:.2%} vs {BEST_SINGLE_WER:.2%} avg WER ({100 * (ROUTED_WER - BEST_SINGLE_WER):+.2f} points; "
          f"{1 - ROUTED_WER / BEST_SINGLE_WER:.1%} relative)", ROUTED_WER - BEST_SINGLE_WER,
          metric=metric_row(STAGE, f"{ROUTED_MINUS_BEST} {group_name('source_test', 'en')}")),
)
