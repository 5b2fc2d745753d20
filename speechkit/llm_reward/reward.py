"""Ling & Ye: an LLM as the reward model of ASR hypotheses, given what is known of the utterance's context.

Two scores, both from one forward pass of the LLM per batch of hypotheses:
- `log_likelihood`: the mean log-probability per token of the hypothesis after a prompt holding the context (the
  domain's description and its entity list): a hypothesis that spells a listed term right, reads fluently and fits
  the domain scores higher;
- `rating`: an instruct LLM is asked whether the transcript is correct given the context; the score is
  P(yes) / (P(yes) + P(no)) at the answer's first token.
Both are exposed as GRPO reward functions (`speechkit.engine.grpo.RewardFunction`) and as N-best rescorers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from speechkit.data.manifest import Context, Hypothesis
from speechkit.models.device import inference_dtype
from speechkit.models.lm import load_lm

SCORES = ("log_likelihood", "rating")


def context_text(context: Context | None) -> str:
    if context is None:
        return "Transcript of a recording."
    terms = f" Terms that may occur: {', '.join(context.entities)}." if context.entities else ""
    return f"{context.description}{terms}"


@dataclass
class LLMRewardModel:
    model: torch.nn.Module
    tokenizer: object
    max_batch: int = 16

    @classmethod
    def load(cls, reference: str, max_batch: int = 16) -> "LLMRewardModel":
        model, tokenizer = load_lm(reference, dtype=inference_dtype())
        return cls(model.eval(), tokenizer, max_batch)

    def _chat(self, text: str) -> str:
        return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)

    @torch.no_grad()
    def log_likelihood(self, hypotheses: Sequence[str], contexts: Sequence[Context | None]) -> list[float]:
        """Mean log-probability per token of each hypothesis after the context prompt (an empty one: -10)."""
        scores: list[float] = []
        for start in range(0, len(hypotheses), self.max_batch):
            hyps, ctxs = hypotheses[start:start + self.max_batch], contexts[start:start + self.max_batch]
            prompts = [self.tokenizer(f"{context_text(c)}\nTranscript:", add_special_tokens=False).input_ids
                       for c in ctxs]
            targets = [self.tokenizer(f" {h.strip()}\n", add_special_tokens=False).input_ids for h in hyps]
            rows = [p + t for p, t in zip(prompts, targets, strict=True)]
            width = max(map(len, rows))
            ids = torch.full((len(rows), width), self.tokenizer.pad_token_id or 0)
            mask = torch.zeros_like(ids)
            for i, row in enumerate(rows):  # right padding: positions start at 0 for every row
                ids[i, :len(row)] = torch.tensor(row)
                mask[i, :len(row)] = 1
            device = self.model.device
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
            token = F.log_softmax(logits, -1).gather(-1, ids[:, 1:, None].to(device)).squeeze(-1)
            for i, (p, t, h) in enumerate(zip(prompts, targets, hyps, strict=True)):
                scores.append(float(token[i, len(p) - 1:len(p) + len(t) - 1].mean()) if h.strip() else -10.0)
        return scores

    @torch.no_grad()
    def rating(self, hypotheses: Sequence[str], contexts: Sequence[Context | None]) -> list[float]:
        """P(yes) / (P(yes) + P(no)) for "is this transcript correct?", given the context."""
        yes = [self.tokenizer(w, add_special_tokens=False).input_ids[0] for w in ("Yes", "yes", " Yes")]
        no = [self.tokenizer(w, add_special_tokens=False).input_ids[0] for w in ("No", "no", " No")]
        scores: list[float] = []
        self.tokenizer.padding_side = "left"
        for start in range(0, len(hypotheses), self.max_batch):
            texts = [self._chat(f"Context: {context_text(c)}\nSpeech recognition output: \"{h.strip()}\"\n"
                                "Is this output a correct, correctly spelled transcript for this context? "
                                "Answer Yes or No.")
                     for h, c in zip(hypotheses[start:start + self.max_batch], contexts[start:start + self.max_batch],
                                     strict=True)]
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                self.model.device)
            probs = self.model(**batch).logits[:, -1].float().softmax(-1)
            p_yes, p_no = probs[:, yes].sum(-1), probs[:, no].sum(-1)
            scores += (p_yes / (p_yes + p_no).clamp(min=1e-12)).tolist()
        return scores

    def score(self, kind: str, hypotheses: Sequence[str], contexts: Sequence[Context | None]) -> list[float]:
        if kind not in SCORES:
            raise ValueError(f"unknown LLM score {kind!r}; choose one of {', '.join(SCORES)}")
        return getattr(self, kind)(hypotheses, contexts)

    def reward(self, kind: str):
        """The score as a GRPO reward function: `(prompts, completions, context, **_) -> floats`."""
        if kind not in SCORES:
            raise ValueError(f"unknown LLM score {kind!r}; choose one of {', '.join(SCORES)}")

        def llm_reward(prompts, completions, context, **_):
            return self.score(kind, completions, context)
        llm_reward.__name__ = f"llm_{kind}"
        return llm_reward

    def group_scores(self, kind: str, groups: Sequence[Sequence[str]],
                     contexts: Sequence[Context | None]) -> list[list[float]]:
        """The score of every text of every group (one context per group), scored in one pass over all texts."""
        scores = iter(self.score(kind, [text for group in groups for text in group],
                                 [c for group, c in zip(groups, contexts, strict=True) for _ in group]))
        return [[next(scores) for _ in group] for group in groups]

    def rescore(self, kind: str, nbests: Sequence[Sequence[Hypothesis]], contexts: Sequence[Context | None],
                weight: float = 1.0) -> list[str]:
        """N-best rescoring at inference: argmax of ASR score + `weight` x LLM score, per utterance."""
        llm = self.group_scores(kind, [[h.text for h in nbest] for nbest in nbests], contexts)
        chosen = []
        for nbest, scores in zip(nbests, llm, strict=True):
            scored = [(h.score + weight * s, h.text) for h, s in zip(nbest, scores, strict=True)]
            chosen.append(max(scored, key=lambda s: s[0])[1] if scored else "")
        return chosen
