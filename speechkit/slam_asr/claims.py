"""Seewo's claims the kit measures, the paper's figures (once), and the stages, rows and files they are read from:
the notebooks that write them import these names too, so a rename moves both."""

from __future__ import annotations

from speechkit.core.claims import Claim, Comparison, group_name, metric_row, points

PAPER = "Seewo (MLC-SLM), seed 002"
# Table 1's development-set WER/CER after each stage
DEV_WER = {"stage 1": 0.2432, "stage 2": 0.1899, "stage 3": 0.1548, "CoT": 0.3503, "CoT + PLW": 0.1342,
           "RLVR": 0.1273}
STAGE_DIRS = {1: "10_stage1_projector", 2: "11_stage2_special_tokens", 3: "12_stage3_lora"}
COT_STAGE, RLVR_STAGE = "15_cot_sft", "16_rlvr"
DEV_HYPOTHESES = "dev_hypotheses.jsonl"  # each speech-LLM stage's dev decoding (10-12, 16)
# 15_cot_sft's dev decodings: stage 3 (its baseline) and each CoT run
COT_HYPOTHESES = {"stage 3": "stage3_dev_hypotheses.jsonl", "CoT": "CoT_dev_hypotheses.jsonl",
                  "CoT + PLW": "CoT_PLW_dev_hypotheses.jsonl"}
STAGE3_MINUS_WHISPER = "test stage 3 minus Whisper"  # 12_stage3_lora's rows, one per test group


def dev_wer_claim(stage: int) -> str:
    """What a stage's dev rows are read against."""
    return f"paper: {DEV_WER[f'stage {stage}']:.2%} after stage {stage}"


def _table1(statement: str, before: str, after: str, baseline: str, system: str, direction: str = "lower") -> Claim:
    return Claim(PAPER, "Table 1", statement, points(DEV_WER[before], DEV_WER[after]),
                 DEV_WER[after] - DEV_WER[before], direction=direction,
                 compare=Comparison(baseline, system, "source_dev"))


CLAIMS = (
    _table1("stage 2 (special tokens) lowers dev WER below stage 1 (projector)", "stage 1", "stage 2",
            f"{STAGE_DIRS[1]}/{DEV_HYPOTHESES}", f"{STAGE_DIRS[2]}/{DEV_HYPOTHESES}"),
    _table1("stage 3 (LoRA, language prompts) lowers dev WER below stage 2", "stage 2", "stage 3",
            f"{STAGE_DIRS[2]}/{DEV_HYPOTHESES}", f"{STAGE_DIRS[3]}/{DEV_HYPOTHESES}"),
    Claim(PAPER, "Table 1 (vs the challenge baseline)", "the stage-3 speech LLM is at least level with the Whisper "
          "its encoder comes from (source test WER)", "beats the Whisper-based challenge baseline",
          metric=metric_row(STAGE_DIRS[3], f"{STAGE3_MINUS_WHISPER} {group_name('source_test', 'en')}")),
    _table1("CoT SFT without prompt-loss weighting raises dev WER above stage 3", "stage 3", "CoT",
            f"{COT_STAGE}/{COT_HYPOTHESES['stage 3']}", f"{COT_STAGE}/{COT_HYPOTHESES['CoT']}", direction="higher"),
    _table1("prompt-loss weighting lowers the CoT model's dev WER below CoT without it", "CoT", "CoT + PLW",
            f"{COT_STAGE}/{COT_HYPOTHESES['CoT']}", f"{COT_STAGE}/{COT_HYPOTHESES['CoT + PLW']}"),
    _table1("RLVR (format + accuracy + correction rewards) lowers dev WER below CoT + PLW", "CoT + PLW", "RLVR",
            f"{COT_STAGE}/{COT_HYPOTHESES['CoT + PLW']}", f"{RLVR_STAGE}/{DEV_HYPOTHESES}"),
)
