"""ReHear's claim the kit measures and the row it is read from (the notebook writes it with these names)."""

from __future__ import annotations

from speechkit.core.claims import Claim, metric_row
from speechkit.engine.evaluation import difference_name

PAPER = "ReHear, seed 000"
STAGE = "20_rehear"


def round_prefix(round: int) -> str:
    """Every row of round k starts with this."""
    return f"round {round} "


def rehear_minus(baseline: str) -> str:
    """The difference rows of the ASR fine-tuned on ReHear's labels against a baseline system's."""
    return f"ReHear minus {baseline}"


CLAIMS = (
    Claim(PAPER, "Tables 1-2", "ASR fine-tuned on refined pseudo-labels beats plain pseudo-labels "
          "(round 1, medical test WER)", "better in every round; best after round 2 of 3",
          metric=metric_row(STAGE, difference_name(rehear_minus("pseudo-labels"), "medical_test", "en",
                                                   prefix=round_prefix(1)))),
)
