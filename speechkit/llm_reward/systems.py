"""Ling & Ye's comparison (seed 001), the systems notebook 30 runs on the same unlabeled pool and step budget:
- `unadapted_systems`: Whisper as it is, and its N-best rescored by the reward LLM at inference (no training);
- `self_training`: fine-tuning on Whisper's own 1-best of the pool, the usual baseline;
- `llm_reward_rl`: Dr. GRPO with the LLM's score of each sampled transcript, given its utterance's context, as reward;
- `differences`: each system minus its baseline, paired on the same utterances (the claim's row among them).
Each system's transcripts go to `<system>_hypotheses.jsonl`, the trained ones' states to `checkpoints/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from speechkit.core.results import Metric, name_list
from speechkit.data.manifest import read_manifest
from speechkit.engine.adaptation import DECODER, Labeled, finetune, read_pool, reinforce, transcribe_pool
from speechkit.engine.evaluation import SystemResult, difference_metrics, evaluate, result_metrics, save_hypotheses
from speechkit.engine.evaluation import score as score_transcripts
from speechkit.engine.grpo import GRPOConfig
from speechkit.engine.training import TrainConfig, TrainLog, training_metrics
from speechkit.llm_reward.claims import FIGURE, RL_MINUS_SELF_TRAINING
from speechkit.llm_reward.reward import SCORES, LLMRewardModel
from speechkit.models import asr as whisper
from speechkit.models.freezing import freeze_except

UNADAPTED, RESCORING, SELF_TRAINING, RL = "unadapted", "N-best rescoring", "self-training", "LLM-reward RL"
CHECKPOINTS_DIR = "checkpoints"


@dataclass(frozen=True)
class LLMRewardConfig:
    """Ling & Ye's options: the models and the data, the LLM's score, the N-best rescoring baseline, and the RL
    budget (self-training gets the same steps and batch size)."""
    asr: str = "pkg:whisper-tiny.en"              # the ASR to adapt: a packaged model, a path, or a hub id
    reward_llm: str = "pkg:smollm2-135m-instruct"  # the reward model
    domain: str = "medical"                       # the target domain: its <domain>_pool, _dev and _test manifests
    score: str = "log_likelihood"                 # the LLM's score: one of SCORES
    pool_limit: int = 0                           # pool utterances used (0: all)
    eval_limit: int = 0                           # utterances per dev/test manifest (0: all)
    train: tuple[str, ...] = DECODER              # regexes of the ASR parameters that adapt
    nbest: int = 8                                # beam size and N-best of the rescoring baseline
    rescoring_weight: float = 1.0                 # ASR score + weight x LLM score (both per token)
    num_generations: int = 4                      # sampled transcripts per utterance (a GRPO group)
    temperature: float = 0.7                      # Whisper's sampling temperature in the rollouts
    rollout: str = "sample"                       # "sample" (at temperature) or "beam" (the top num_generations)
    beta: float = 0.04                            # KL weight to the starting ASR
    max_completion_length: int = 64               # tokens per sampled transcript, and Dr. GRPO's normaliser
    prompts_per_step: int = 4                     # pool utterances per RL step
    learning_rate: float = 1e-5
    warmup_steps: int = 2
    max_steps: int = 4                            # RL steps; self-training gets as many of the same batch size
    max_minutes: float = 0.0                      # a cap only: budgets are steps
    checkpoint_minutes: float = 10.0              # training state saved this often (a stopped run resumes)
    seed: int = 0                                 # the order of the pool's batches

    def __post_init__(self):
        if self.score not in SCORES:
            raise ValueError(f"unknown LLM score {self.score!r}; choose one of {', '.join(SCORES)}")
        if self.nbest < 1 or self.rescoring_weight < 0 or self.prompts_per_step < 1:
            raise ValueError(f"nbest >= 1, rescoring_weight >= 0 and prompts_per_step >= 1 needed: {self}")
        object.__setattr__(self, "train", name_list(self.train, "train"))  # notebooks give a list; frozen

    @property
    def test_manifests(self) -> list[str]:
        return [f"{self.domain}_dev", f"{self.domain}_test"]

    @property
    def grpo(self) -> GRPOConfig:
        """Dr. GRPO: group-relative advantages without std scaling, token sums over a constant length."""
        return GRPOConfig(num_generations=self.num_generations, temperature=self.temperature, beta=self.beta,
                          loss_type="dr_grpo", scale_rewards="none", max_completion_length=self.max_completion_length,
                          rollout=self.rollout)

    @property
    def training(self) -> TrainConfig:
        return TrainConfig(learning_rate=self.learning_rate, warmup_steps=self.warmup_steps, max_steps=self.max_steps,
                           max_minutes=self.max_minutes, log_every=max(1, self.max_steps // 20),
                           checkpoint_minutes=self.checkpoint_minutes, seed=self.seed)


@dataclass(frozen=True)
class SystemRun:
    name: str
    results: list[SystemResult]   # WER and entity WER on the domain's dev and test manifests
    metrics: list[Metric]         # training steps and minutes (the trained systems), then the scores
    log: TrainLog | None = None   # the trained systems' curve (RL: its rewards)


def hypotheses_file(output_dir: Path, system: str) -> Path:
    return output_dir / f"{system.replace(' ', '_')}_hypotheses.jsonl"


def scored(system: str, results: list[SystemResult], output_dir: Path, log: TrainLog | None = None,
           training_prefix: str = "") -> SystemRun:
    """A system's run: its transcripts saved, its metrics (with the training's, when it trained) named by it."""
    save_hypotheses(hypotheses_file(output_dir, system), results)
    training = training_metrics(log, training_prefix) if log is not None else []
    return SystemRun(system, results, training + result_metrics(results, prefix=f"{system} "), log)


def evaluate_asr(config: LLMRewardConfig, model: whisper.WhisperASR, tokenizer: PreTrainedTokenizerFast,
                 data_dir: Path) -> list[SystemResult]:
    return evaluate(whisper.transcriber(model, tokenizer), data_dir, config.test_manifests, limit=config.eval_limit)


def unadapted_systems(config: LLMRewardConfig, reward_model: LLMRewardModel, data_dir: Path,
                      output_dir: Path) -> list[SystemRun]:
    """Whisper as it is, and its N-best of each test utterance rescored with the reward LLM given the utterance's
    context: argmax of ASR score + `rescoring_weight` x LLM score."""
    model, tokenizer = whisper.load_asr(config.asr)
    unadapted = evaluate_asr(config, model, tokenizer, data_dir)
    rescored = []
    for manifest in config.test_manifests:
        utterances = read_manifest(data_dir / f"{manifest}.jsonl")[:config.eval_limit or None]
        nbests = transcribe_pool(model, tokenizer, utterances, data_dir, nbest=config.nbest, num_beams=config.nbest,
                                 desc=f"{manifest} N-best")
        chosen = reward_model.rescore(config.score, nbests, [u.context for u in utterances], config.rescoring_weight)
        rescored += score_transcripts(manifest, utterances, chosen)
    return [scored(UNADAPTED, unadapted, output_dir), scored(RESCORING, rescored, output_dir)]


def self_training(config: LLMRewardConfig, data_dir: Path, output_dir: Path) -> SystemRun:
    """Whisper fine-tuned on its own 1-best of the pool, with the RL's steps and batch size (prompts x samples)."""
    pool = read_pool(data_dir, f"{config.domain}_pool", config.pool_limit)
    model, tokenizer = whisper.load_asr(config.asr)
    hypotheses = [nbest[0].text for nbest in transcribe_pool(model, tokenizer, pool, data_dir, desc="pool 1-best")]
    freeze_except(model, config.train)
    log = finetune(model, tokenizer, [Labeled(u, h) for u, h in zip(pool, hypotheses, strict=True)], data_dir,
                   config.training, output_dir / CHECKPOINTS_DIR / "self_training",
                   max_batch=config.prompts_per_step * config.num_generations)
    return scored(SELF_TRAINING, evaluate_asr(config, model, tokenizer, data_dir), output_dir, log, "self-training ")


def llm_reward_rl(config: LLMRewardConfig, reward_model: LLMRewardModel, data_dir: Path,
                  output_dir: Path) -> SystemRun:
    """Whisper adapted by Dr. GRPO on the pool: groups of sampled transcripts per utterance, each scored by the
    reward LLM given the utterance's context, with a KL to the starting ASR."""
    pool = read_pool(data_dir, f"{config.domain}_pool", config.pool_limit)
    model, tokenizer = whisper.load_asr(config.asr)
    freeze_except(model, config.train)
    log = reinforce(model, tokenizer, pool, data_dir, {config.score: reward_model.reward(config.score)}, None,
                    config.grpo, config.training, output_dir / CHECKPOINTS_DIR / "llm_reward_rl",
                    config.prompts_per_step)
    return scored(RL, evaluate_asr(config, model, tokenizer, data_dir), output_dir, log, "RL ")


def differences(systems: dict[str, Sequence[SystemResult]]) -> list[Metric]:
    """Paired differences, system minus baseline: the claim's (RL minus self-training, also relative to
    self-training's rate), then RL, self-training and rescoring each minus the unadapted ASR."""
    metrics = difference_metrics(systems[SELF_TRAINING], systems[RL], RL_MINUS_SELF_TRAINING, relative=True,
                                 claim=FIGURE)
    for name, system in [("RL minus unadapted", RL), ("self-training minus unadapted", SELF_TRAINING),
                         ("rescoring minus unadapted", RESCORING)]:
        metrics += difference_metrics(systems[UNADAPTED], systems[system], name)
    return metrics
