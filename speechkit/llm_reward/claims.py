"""Ling & Ye's claim the kit measures (on two domains), the paper's figure and the rows it is read from."""

from __future__ import annotations

from speechkit.core.claims import Claim, metric_row
from speechkit.engine.evaluation import difference_name

PAPER = "Ling & Ye, seed 001"
RELATIVE_ENTITY_WER = -0.21  # the abstract's one figure: entity WER relative to self-training
RL_MINUS_SELF_TRAINING = "RL minus self-training"
FIGURE = f"paper: {RELATIVE_ENTITY_WER:.0%} relative entity WER vs self-training"
STAGES = {"medical": "30_llm_reward", "finance": "31_llm_reward_finance"}


def _claim(domain: str) -> Claim:
    return Claim(PAPER, "abstract", "RL with an LLM reward lowers entity WER below self-training "
                 f"({domain} test, relative change)", f"{RELATIVE_ENTITY_WER:.0%} relative entity WER",
                 RELATIVE_ENTITY_WER, unit="relative",
                 metric=metric_row(STAGES[domain], difference_name(RL_MINUS_SELF_TRAINING, f"{domain}_test", "en",
                                                                   kind="entity WER", relative=True)))


CLAIMS = tuple(_claim(domain) for domain in STAGES)
