"""Group relative policy optimisation (Dr. GRPO) for policies TRL's GRPOTrainer cannot take.

TRL's trainer builds prompts from token ids (its multimodal path is images only); the kit's policies read audio:
the speech LLM (audio embeddings spliced into the prompt) and Whisper (an encoder-decoder). So the loop is written
here, in TRL's vocabulary (`num_generations`, `temperature`, `beta`, `loss_type`, `scale_rewards`,
`max_completion_length`), with reward functions as plain callables `(prompts, completions, **columns) -> floats`
and the loss checked against TRL's own `dr_grpo` loss (tests/test_grpo.py).

One GRPO step is a loss function for `speechkit.engine.training.train` (the same loop as every supervised stage: bf16,
checkpoints, resume, learning-rate schedule): roll out `num_generations` completions per prompt with the current
weights, score them, take group-relative advantages, and return the clipped-ratio policy loss plus `beta` x KL to
the reference - the weights training started from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

# (prompts, completions, **columns) -> one reward per completion; columns are the batch's extra fields, repeated
# per completion as TRL does (e.g. `reference`, `context`).
RewardFunction = Callable[..., list[float]]
LOSS_TYPES = ("dr_grpo", "grpo")
SCALE_REWARDS = ("none", "group")
ROLLOUTS = ("sample", "beam")


@dataclass(frozen=True)
class GRPOConfig:
    num_generations: int = 4          # completions per prompt: a group
    temperature: float = 0.5          # multinomial sampling of the rollouts (logits are divided by it, as in TRL)
    beta: float = 0.04                # weight of the KL to the reference (the starting weights); 0 drops it
    loss_type: str = "dr_grpo"        # "dr_grpo": token sum / (completions x max_completion_length); "grpo": mean
    scale_rewards: str = "none"       # "none" (Dr. GRPO: advantages are not divided by the group's std) or "group"
    max_completion_length: int = 64   # the rollouts' length limit, and Dr. GRPO's constant normaliser
    epsilon: float = 0.2              # ratio clipping (one update per rollout: the ratio is 1; kept for TRL parity)
    use_bias_correction_kl: bool = True  # KL x ratio (TRL's default): the unbiased reverse-KL gradient on-policy too
    rollout: str = "sample"           # "sample" (multinomial at `temperature`) or "beam": the group is beam search's
                                      # top `num_generations` beams (Seewo's RLVR used both)

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, not {self.loss_type!r}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, not {self.scale_rewards!r}")
        if self.num_generations < 2:
            raise ValueError("num_generations must be at least 2: advantages are relative to the group")
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"rollout must be one of {ROLLOUTS}, not {self.rollout!r}")
        if self.temperature <= 0 or self.beta < 0 or self.max_completion_length < 1:
            raise ValueError(f"invalid GRPO configuration: {self}")

    @property
    def scoring_temperature(self) -> float:
        """The temperature log-probabilities are taken at: the sampling one (as TRL does), 1 for beam rollouts."""
        return self.temperature if self.rollout == "sample" else 1.0

    def generation_options(self) -> dict[str, Any]:
        """`generate` arguments that roll out a group of `num_generations` completions per prompt."""
        if self.rollout == "beam":
            return dict(do_sample=False, num_beams=self.num_generations, num_return_sequences=self.num_generations,
                        temperature=None, top_k=None, top_p=None)
        return dict(do_sample=True, temperature=self.temperature, top_k=None, top_p=None,
                    num_return_sequences=self.num_generations)


@dataclass
class Rollout:
    """`num_generations` completions of each prompt, grouped: rows [g * G, (g + 1) * G) belong to prompt g."""
    completions: list[str]
    completion_ids: torch.Tensor      # [prompts x G, T], right-padded
    completion_mask: torch.Tensor     # [prompts x G, T], 1 up to and including the end-of-sequence token


class Policy(Protocol):
    """What the loop needs from a model: sampling, and per-token log-probabilities of given completions."""

    def sample(self, model: torch.nn.Module, prompts: Sequence[Any], config: GRPOConfig) -> Rollout: ...

    def log_probs(self, model: torch.nn.Module, prompts: Sequence[Any], rollout: Rollout,
                  temperature: float) -> torch.Tensor: ...


def group_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str = "none") -> torch.Tensor:
    """Reward minus its group's mean; divided by the group's std only with `scale_rewards="group"` (Dr. GRPO drops
    it: it up-weights groups whose rewards barely differ)."""
    grouped = rewards.view(-1, num_generations)
    advantages = grouped - grouped.mean(dim=1, keepdim=True)
    if scale_rewards == "group":
        advantages = advantages / (grouped.std(dim=1, keepdim=True) + 1e-4)
    return advantages.flatten()


def policy_loss(log_probs: torch.Tensor, ref_log_probs: torch.Tensor | None, advantages: torch.Tensor,
                mask: torch.Tensor, config: GRPOConfig, old_log_probs: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped-ratio GRPO loss over completion tokens, with the k3 KL estimate to the reference.

    `log_probs` [N, T] carry the gradient; `old_log_probs` are those the rollout was sampled with (the same
    weights in this loop, so the ratio is 1 and the gradient is -A * grad log p)."""
    old = log_probs.detach() if old_log_probs is None else old_log_probs
    ratio = torch.exp(log_probs - old)
    clipped = torch.clamp(ratio, 1 - config.epsilon, 1 + config.epsilon)
    per_token = -torch.min(ratio * advantages[:, None], clipped * advantages[:, None])
    parts = {}
    if config.beta:
        delta = ref_log_probs - log_probs
        kl = torch.exp(delta) - delta - 1
        # the ratio's value is 1 here but its gradient is not: it turns k3's gradient into the reverse KL's
        per_token = per_token + config.beta * (kl * ratio if config.use_bias_correction_kl else kl)
        parts["kl"] = ((kl * mask).sum() / mask.sum().clamp(min=1)).item()
    if config.loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / (per_token.shape[0] * config.max_completion_length)
    else:
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    return loss, parts


def completion_mask(ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 up to and including each row's first end-of-sequence token (everything when there is none)."""
    is_eos = ids == eos_token_id
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(ids[:, 0], ids.shape[1]))
    return (torch.arange(ids.shape[1], device=ids.device)[None, :] <= first[:, None]).long()


def token_log_probs(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """log p(ids) under softmax(logits / temperature), per token ([N, T, V], [N, T] -> [N, T])."""
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, ids[..., None]).squeeze(-1)


@contextlib.contextmanager
def swapped(parameters: dict[str, torch.nn.Parameter], values: dict[str, torch.Tensor]) -> Iterator[None]:
    """The parameters temporarily hold `values` (storage swapped, no copy): the reference model for free.

    Why not peft's disabled adapter: the reference is the model RL starts from (a trained LoRA, projector and
    embeddings, or a fully fine-tuned Whisper), not the base model under the adapter."""
    current = {name: p.data for name, p in parameters.items()}
    try:
        for name, p in parameters.items():
            p.data = values[name]
        yield
    finally:
        for name, p in parameters.items():
            p.data = current[name]


def weighted_rewards(functions: dict[str, RewardFunction], weights: dict[str, float], prompts: Sequence[Any],
                     completions: Sequence[str], columns: dict[str, Sequence[Any]]) -> tuple[torch.Tensor,
                                                                                            dict[str, float]]:
    """The weighted sum of every reward function, and each function's mean (what the training log plots)."""
    total = torch.zeros(len(completions))
    means = {}
    for name, function in functions.items():
        values = torch.tensor(function(prompts, completions, **columns), dtype=torch.float32)
        if values.shape != total.shape:
            raise ValueError(f"reward {name!r} returned {tuple(values.shape)} values for {len(completions)} "
                             "completions")
        total += weights.get(name, 1.0) * values
        means[f"reward {name}"] = values.mean().item()
    return total, means


class GRPOStep:
    """One GRPO update as a `speechkit.engine.training.train` loss function: `step(model, batch)` -> (loss, parts).

    `batch` is a list of items; `prompt(item)` builds the policy's prompt and `columns(items)` the reward
    functions' extra fields (e.g. {"reference": [...]}, {"context": [...]}), one per item. Split across processes or
    micro-batches, each share rolls out whole groups of its own prompts, and the loss (a mean over completions) is
    weighted by its prompts: `train`'s default."""

    def __init__(self, model: torch.nn.Module, policy: Policy, config: GRPOConfig,
                 rewards: dict[str, RewardFunction], weights: dict[str, float] | None,
                 prompt: Callable[[Any], Any], columns: Callable[[Sequence[Any]], dict[str, list]]):
        if not rewards:
            raise ValueError("GRPO needs at least one reward function")
        unknown = set(weights or {}) - set(rewards)
        if unknown:
            raise ValueError(f"weights for unknown rewards {sorted(unknown)}; rewards are {sorted(rewards)}")
        self.policy, self.config, self.rewards, self.weights = policy, config, rewards, weights or {}
        self.prompt, self.columns = prompt, columns
        self.trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        # the weights training starts from (a resumed run restores the trained ones after this: still the start)
        self.reference = {name: p.detach().clone() for name, p in self.trainable.items()} if config.beta else {}

    def __call__(self, model: torch.nn.Module, items: Sequence[Any]) -> tuple[torch.Tensor, dict[str, float]]:
        config, G = self.config, self.config.num_generations
        prompts = [self.prompt(item) for item in items]
        model.eval()  # rollouts without dropout
        with torch.no_grad():
            rollout = self.policy.sample(model, prompts, config)
        repeated = [p for p in prompts for _ in range(G)]
        columns = {k: [v for v in values for _ in range(G)] for k, values in self.columns(items).items()}
        rewards, parts = weighted_rewards(self.rewards, self.weights, repeated, rollout.completions, columns)
        advantages = group_advantages(rewards, G, config.scale_rewards)
        ref = None
        if config.beta:
            with torch.no_grad(), swapped(self.trainable, self.reference):
                ref = self.policy.log_probs(model, prompts, rollout, config.scoring_temperature)
        model.train()
        log_probs = self.policy.log_probs(model, prompts, rollout, config.scoring_temperature)
        mask = rollout.completion_mask.to(log_probs.device)
        loss, loss_parts = policy_loss(log_probs, ref, advantages.to(log_probs.device), mask, config)
        return loss, {**parts, **loss_parts, "reward": rewards.mean().item(),
                      "completion tokens": mask.sum(1).float().mean().item()}
