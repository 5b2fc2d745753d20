"""What limits Ling & Ye's claim on this benchmark: RL with an LLM reward can only move the ASR towards spellings its
rollouts contain, and only when the reward prefers them. On the domain's labeled dev utterances (the pool has no
transcripts; nothing here trains), Whisper's rollouts, drawn as the RL draws them (`num_generations` samples at its
temperature, or the top beams), are scored three ways:
- greedy: Whisper's own transcript, what the RL starts from;
- reward's pick: in each group, the rollout the LLM reward scores highest given the utterance's context, what the RL
  moves towards;
- oracle pick: in each group, the rollout with the fewest entity errors, the most any choice among rollouts reaches.
An oracle pick close to greedy means the rollouts rarely contain the right spelling; a reward's pick no better than
greedy while the oracle's is means the reward does not recognise it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from speechkit.core.results import Metric
from speechkit.core.text import normaliser_for
from speechkit.data.manifest import Utterance, read_manifest
from speechkit.engine.adaptation import transcribe_pool
from speechkit.engine.evaluation import SystemResult, result_metrics, score
from speechkit.engine.grpo import ROLLOUTS
from speechkit.llm_reward.reward import LLMRewardModel
from speechkit.llm_reward.systems import LLMRewardConfig
from speechkit.metrics.scoring import entity_error_rate
from speechkit.models import asr as whisper

GREEDY, REWARD_PICK, ORACLE_PICK = "greedy", "reward's pick", "oracle pick"


def entity_errors(utterance: Utterance, hypothesis: str) -> int:
    """Entity word errors of one transcript (entity WER's numerator for this utterance alone)."""
    rate = entity_error_rate([utterance.text], [utterance.entities], [hypothesis],
                             normaliser_for(utterance.language), resamples=1)
    return rate.per_utterance[0].errors


def picks(utterances: Sequence[Utterance], groups: Sequence[Sequence[str]],
          rewards: Sequence[Sequence[float]]) -> dict[str, list[str]]:
    """Each group's rollout the reward scores highest, and the one with the fewest entity errors (the first such)."""
    if not len(utterances) == len(groups) == len(rewards):
        raise ValueError("one group of rollouts and of rewards per utterance")
    chosen = [group[int(np.argmax(scores))] for group, scores in zip(groups, rewards, strict=True)]
    oracle = [min(group, key=partial(entity_errors, u)) for u, group in zip(utterances, groups, strict=True)]
    return {REWARD_PICK: chosen, ORACLE_PICK: oracle}


def rollout_reach(config: LLMRewardConfig, reward_model: LLMRewardModel, data_dir: Path,
                  rollouts: Sequence[str] = ROLLOUTS) -> dict[str, list[SystemResult]]:
    """Greedy, then each kind of rollout's reward's pick and oracle pick, on the domain's dev utterances (the first
    `config.eval_limit`), each scored as a system."""
    unknown = [kind for kind in rollouts if kind not in ROLLOUTS]
    if unknown:
        raise ValueError(f"rollouts are {', '.join(ROLLOUTS)}, not {', '.join(unknown)}")
    manifest = f"{config.domain}_dev"
    utterances = read_manifest(data_dir / f"{manifest}.jsonl")[:config.eval_limit or None]
    model, tokenizer = whisper.load_asr(config.asr)
    greedy = [nbest[0].text for nbest in transcribe_pool(model, tokenizer, utterances, data_dir, desc="greedy")]
    systems = {GREEDY: score(manifest, utterances, greedy)}
    for kind in rollouts:
        torch.manual_seed(config.seed)  # the samples, as a rerun draws them
        groups = [[h.text for h in nbest] for nbest in transcribe_pool(
            model, tokenizer, utterances, data_dir, nbest=config.num_generations, num_beams=config.num_generations,
            do_sample=kind == "sample", temperature=config.temperature, desc=f"{kind} rollouts")]
        rewards = reward_model.group_scores(config.score, groups, [u.context for u in utterances])
        systems |= {f"{kind} rollouts, {pick}": score(manifest, utterances, texts)
                    for pick, texts in picks(utterances, groups, rewards).items()}
    return systems


def reach_metrics(reach: dict[str, list[SystemResult]]) -> list[Metric]:
    return [m for name, results in reach.items() for m in result_metrics(results, prefix=f"reach, {name}: ")]


def plot_reach(reach: dict[str, list[SystemResult]]) -> plt.Figure:
    """Entity WER (95% intervals) of greedy and of each pick among each kind of rollout."""
    rates = [results[0].entity_wer for results in reach.values()]
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(rates) + 1.2))
    axes.barh(np.arange(len(rates)), [100 * r.rate for r in rates], capsize=3,
              xerr=[[100 * (r.rate - r.interval.low) for r in rates], [100 * (r.interval.high - r.rate) for r in rates]])
    axes.set_yticks(np.arange(len(rates)), list(reach))
    axes.invert_yaxis()
    axes.set(xlabel="entity WER (%)", title="what a choice among the rollouts can reach (dev)")
    figure.tight_layout()
    return figure
