"""Seewo's stage 4 and RLVR (seed 002): chain-of-thought self-correction and its five verifiable rewards.

A CoT target is built from the stage-3 model's own hypothesis of a training utterance and the alignment of that
hypothesis against the transcript:

    <LANG_en> <think> The speech sounds like: HYP, but it might have some substitution errors ('a' heard as 'b'),
    let me correct it. </think> <transcribe> GOLD </transcribe>

(a fixed wording when HYP is already right). Training may weight the <think> span's loss on a schedule
(`PromptLossSchedule`: the paper's prompt-loss weighting). Inference reads <transcribe>; a malformed output falls back
to the think span's hypothesis. The five RLVR rewards are plain callables `(prompts, completions, **columns)` in
[0, 1], as `speechkit.engine.grpo` takes them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from speechkit.core.text import normalise, normaliser_for
from speechkit.data.audio import load_utterance
from speechkit.data.manifest import Utterance
from speechkit.engine.data_parallel import is_main_process
from speechkit.engine.decoding import DecodingConfig, decode
from speechkit.engine.grpo import GRPOConfig, GRPOStep
from speechkit.engine.policies import SpeechLLMPolicy
from speechkit.engine.recipes import fine_tune
from speechkit.engine.training import TrainConfig, TrainLog, shuffled_batches, train
from speechkit.metrics.scoring import aligned_units, utterance_errors
from speechkit.models.speech_llm import STAGES, Example, SpeechLLM, Stage, TargetSpan

THINK_TOKENS = ("<think>", "</think>")  # the CoT model's own tokens (`SpeechLLMConfig.extra_tokens`)
THINK = "think"  # the <think> span's name for its loss weight (`Stage.span_weights`; logged as think_weight)
# Stage 4, CoT SFT and RLVR: stage 3's adapters and format; the <think> span's weight is set per step (`train_cot`)
COT_TRAINING = replace(STAGES[3], name="cot")
KINDS = ("substitution", "deletion", "insertion")
_OPERATION = {"substitute": "substitution", "delete": "deletion", "insert": "insertion"}
NO_ERROR = "and it sounds right"
# A weak first pass (a runaway hypothesis of 100+ words) would make think spans of thousands of tokens: the memory of
# one training batch grows with them (the CE over a 49k vocabulary per target token). Both bounds are generous for a
# hypothesis anywhere near its reference.
MAX_DETAILS = 8
_SOUNDS_LIKE = re.compile(r"The speech sounds like:\s*(.*?)(?:, but it might have some (.*?), let me correct it\.|"
                          r", and it sounds right\.)", re.S)
# a model that has not yet learnt the whole format (the default run's CoT models after 50 steps wrote "<think> The
# speech sounds like: X </transcribe>"): X, up to the next tag, an unfinished error list or the end, is its hypothesis
_SOUNDS_LIKE_UNFINISHED = re.compile(r"The speech sounds like:\s*(.*?)\s*(?:, but it might have some|</?think>|"
                                     r"</?transcribe>|$)", re.S)
_DETAIL = re.compile(r"'([^']*)' heard as '([^']*)'|'([^']*)' missed|'([^']*)' added")


@dataclass(frozen=True)
class ErrorDetail:
    kind: str          # substitution, deletion or insertion
    reference: str     # the transcript's words ("" for an insertion)
    hypothesis: str    # the hypothesis' words ("" for a deletion)

    def describe(self) -> str:
        if self.kind == "substitution":
            return f"'{self.reference}' heard as '{self.hypothesis}'"
        return f"'{self.reference}' missed" if self.kind == "deletion" else f"'{self.hypothesis}' added"


def error_details(hypothesis: str, reference: str, language: str) -> list[ErrorDetail]:
    """The hypothesis' errors against the reference, from their word alignment (normalised words)."""
    return [ErrorDetail(_OPERATION[op], ref, hyp)
            for op, ref, hyp in aligned_units(reference, hypothesis, normaliser_for(language)) if op != "equal"]


def think_text(hypothesis: str, details: Sequence[ErrorDetail], max_details: int = MAX_DETAILS) -> str:
    """The <think> span: the hypothesis, then its errors grouped by kind (at most `max_details` of them, the count of
    the rest after), or the fixed no-error wording."""
    if not details:
        return f"The speech sounds like: {hypothesis}, {NO_ERROR}."
    listed = details[:max_details]
    groups = [f"{kind} errors ({', '.join(d.describe() for d in listed if d.kind == kind)})"
              for kind in KINDS if any(d.kind == kind for d in listed)]
    if len(details) > len(listed):
        groups.append(f"{len(details) - len(listed)} more errors")
    return f"The speech sounds like: {hypothesis}, but it might have some {'; '.join(groups)}, let me correct it."


@dataclass(frozen=True)
class CoTOutput:
    """A CoT completion, parsed."""
    hypothesis: str | None         # the think span's "sounds like" hypothesis
    details: tuple[ErrorDetail, ...]
    transcription: str | None      # inside <transcribe> ... </transcribe>
    well_formed: bool              # <think> ... </think> then <transcribe> ... </transcribe>, each once
    raw: str = ""                  # the completion as generated

    @property
    def final(self) -> str:
        """The transcript: <transcribe>'s, else the think hypothesis (a malformed output's fallback), else ""."""
        if self.transcription is not None:
            return self.transcription
        return self.hypothesis or ""


def parse_cot(raw: str) -> CoTOutput:
    think = re.search(r"<think>(.*?)</think>", raw, re.S)
    transcribe = re.search(r"<transcribe>(.*?)</transcribe>", raw, re.S)
    well_formed = (think is not None and transcribe is not None and think.end() <= transcribe.start()
                   and raw.count("<think>") == raw.count("<transcribe>") == 1)
    hypothesis, details = None, ()
    span = think.group(1) if think else raw
    sounds = _SOUNDS_LIKE.search(span)
    if sounds:
        hypothesis = " ".join(sounds.group(1).split())
        details = tuple(_parse_detail(m) for m in _DETAIL.finditer(sounds.group(2) or ""))
    elif unfinished := _SOUNDS_LIKE_UNFINISHED.search(span):
        hypothesis = " ".join(unfinished.group(1).split()) or None
    text = " ".join(transcribe.group(1).split()) if transcribe else None
    return CoTOutput(hypothesis, details, text, well_formed, raw)


def _parse_detail(match: re.Match) -> ErrorDetail:
    substituted, heard, missed, added = match.groups()
    if substituted is not None:
        return ErrorDetail("substitution", substituted, heard)
    return ErrorDetail("deletion", missed, "") if missed is not None else ErrorDetail("insertion", "", added)


@dataclass(frozen=True)
class PromptLossSchedule:
    """The <think> span's loss weight by step: `start` decaying linearly to `end` over `decay_steps`, then `end`
    (the paper: 1.0 -> 0.1 over its first 300 steps; scale `decay_steps` with the step budget)."""
    start: float = 1.0
    end: float = 0.1
    decay_steps: int = 300

    def __post_init__(self):
        if self.decay_steps < 0 or min(self.start, self.end) < 0:
            raise ValueError(f"invalid prompt-loss schedule: {self}")

    def weight(self, step: int) -> float:
        if step >= self.decay_steps:
            return self.end
        return self.start + (self.end - self.start) * step / self.decay_steps


# -- the five RLVR rewards, each in [0, 1] ---------------------------------------------------------------------------

def _wer(reference: str, hypothesis: str, language: str) -> float:
    return utterance_errors(reference, hypothesis, normaliser_for(language)).rate


def format_reward(prompts, completions, **_) -> list[float]:
    """1 for <think> ... </think> <transcribe> ... </transcribe> with a readable hypothesis, 0.5 for the tags
    alone, 0 otherwise."""
    rewards = []
    for completion in completions:
        parsed = parse_cot(completion)
        rewards.append(0.0 if not parsed.well_formed else 1.0 if parsed.hypothesis is not None else 0.5)
    return rewards


def accuracy_reward(prompts, completions, reference, **_) -> list[float]:
    """1 - WER of the final transcript, clipped to [0, 1]."""
    return [max(0.0, 1.0 - _wer(ref, parse_cot(c).final, p.language))
            for p, c, ref in zip(prompts, completions, reference, strict=True)]


def _true_details(parsed: CoTOutput, reference: str, language: str) -> set[tuple[str, str, str]]:
    return {(d.kind, d.reference, d.hypothesis) for d in error_details(parsed.hypothesis or "", reference, language)}


def _overlap(claimed: set, true: set, f1: bool) -> float:
    if not claimed and not true:
        return 1.0
    common = len(claimed & true)
    if not f1:
        return common / len(claimed | true)
    return 2 * common / (len(claimed) + len(true))


def error_type_reward(prompts, completions, reference, **_) -> list[float]:
    """Jaccard overlap of the error kinds the think span names with those its hypothesis really has."""
    rewards = []
    for p, c, ref in zip(prompts, completions, reference, strict=True):
        parsed = parse_cot(c)
        true = {kind for kind, _, _ in _true_details(parsed, ref, p.language)}
        rewards.append(_overlap({d.kind for d in parsed.details}, true, f1=False) if parsed.hypothesis else 0.0)
    return rewards


def error_detail_reward(prompts, completions, reference, **_) -> list[float]:
    """F1 of the (kind, words) details the think span names against its hypothesis' true errors (normalised)."""
    rewards = []
    for p, c, ref in zip(prompts, completions, reference, strict=True):
        parsed = parse_cot(c)
        normaliser = normaliser_for(p.language)
        # the claimed words normalised as the alignment's are
        claimed = {(d.kind, normalise(d.reference, normaliser), normalise(d.hypothesis, normaliser))
                   for d in parsed.details}
        rewards.append(_overlap(claimed, _true_details(parsed, ref, p.language), f1=True) if parsed.hypothesis
                       else 0.0)
    return rewards


def correction_reward(prompts, completions, reference, first_pass, min_similarity: float = 0.8,
                      **_) -> list[float]:
    """1 when the transcript is better than the think span's hypothesis (or both are right), else 0 - earned only
    while the think hypothesis stays close to the model's own first-pass transcript (1 - WER >= `min_similarity`):
    otherwise the model learns to write a worse hypothesis to "correct" (the hacking the paper saw)."""
    rewards = []
    for p, c, ref, first in zip(prompts, completions, reference, first_pass, strict=True):
        parsed = parse_cot(c)
        if parsed.hypothesis is None or parsed.transcription is None:
            rewards.append(0.0)
            continue
        if first is not None and 1.0 - _wer(first, parsed.hypothesis, p.language) < min_similarity:
            rewards.append(0.0)
            continue
        before, after = _wer(ref, parsed.hypothesis, p.language), _wer(ref, parsed.transcription, p.language)
        rewards.append(1.0 if after < before or after == before == 0 else 0.0)
    return rewards


def unconstrained_correction_reward(prompts, completions, reference, **_) -> list[float]:
    """The correction reward without the first-pass constraint: the variant the paper saw hacked."""
    return correction_reward(prompts, completions, reference, [None] * len(prompts))


def think_similarity(prompts, completions, first_pass, **_) -> list[float]:
    """1 - WER of the think span's hypothesis against the model's first pass: logged during RLVR (weight 0), it shows
    whether the correction reward is being hacked by a drifting hypothesis."""
    return [max(0.0, 1 - _wer(f, parse_cot(c).hypothesis or "", p.language)) if f is not None else 0.0
            for p, c, f in zip(prompts, completions, first_pass, strict=True)]


REWARDS = {"format": format_reward, "accuracy": accuracy_reward, "error_type": error_type_reward,
           "error_detail": error_detail_reward, "correction": correction_reward}
REWARD_WEIGHTS = {"accuracy": 0.8, "format": 0.5, "error_type": 0.5, "error_detail": 0.5, "correction": 0.5}
THINK_SIMILARITY = "think similarity"


@dataclass(frozen=True)
class RLVRConfig:
    """Seewo's RLVR (seed 002, section 3.3): which rewards, their weights, and the anti-hacking constraint."""
    rewards: tuple[str, ...] = ("format", "accuracy", "correction")
    reward_weights: dict[str, float] = field(default_factory=lambda: dict(REWARD_WEIGHTS))
    constrained: bool = True          # the correction reward only while the think hypothesis stays near the first pass
    min_similarity: float = 0.8       # ... 1 - WER(first pass, think hypothesis) at least this
    prompts_per_step: int = 2         # utterances per step, each sampled `num_generations` times

    def __post_init__(self):
        object.__setattr__(self, "rewards", tuple(self.rewards))  # notebooks give a list; frozen
        unknown = set(self.rewards) - set(REWARDS)
        if unknown or not self.rewards:
            raise ValueError(f"unknown rewards {sorted(unknown)}; choose one or more of {sorted(REWARDS)}")
        if not 0 <= self.min_similarity <= 1 or self.prompts_per_step < 1:
            raise ValueError(f"min_similarity must be in [0, 1] and prompts_per_step >= 1: {self}")

    def reward_functions(self) -> tuple[dict, dict[str, float]]:
        """(reward callables, weights) for `grpo.GRPOStep`, the think similarity logged beside them at weight 0."""
        functions = {name: REWARDS[name] for name in self.rewards}
        if "correction" in functions:
            functions["correction"] = (functools.partial(correction_reward, min_similarity=self.min_similarity)
                                       if self.constrained else unconstrained_correction_reward)
        weights = {name: self.reward_weights.get(name, 1.0) for name in self.rewards}
        return {**functions, THINK_SIMILARITY: think_similarity}, {**weights, THINK_SIMILARITY: 0.0}


# -- training and decoding ---------------------------------------------------------------------------------------------

def cot_think(utterance: Utterance, hypothesis: str) -> str:
    """The <think> text of one training utterance from the model's own hypothesis of it (a hypothesis more than
    twice as long as the transcript is cut there first: a runaway first pass)."""
    words = hypothesis.split()
    hypothesis = " ".join(words[:2 * len(utterance.text.split()) + 5])
    return think_text(hypothesis, error_details(hypothesis, utterance.text, utterance.language))


def think_span(think: str) -> TargetSpan:
    """The reasoning between the language tag and the transcript."""
    return TargetSpan(f" <think> {think} </think>", THINK)


def train_cot(model: SpeechLLM, stage: Stage, utterances: Sequence[Utterance], hypotheses: Sequence[str],
              data_dir: str | Path, config: TrainConfig, checkpoint: str | Path,
              schedule: PromptLossSchedule | None = None, batch_seconds: float = 60.0, max_batch: int = 16,
              progress: bool = True) -> TrainLog:
    """Stage 4: SFT on CoT targets. Without `schedule` every completion token weighs 1 (the standard loss); with it
    the <think> span weighs `schedule.weight(step)` (the prompt itself is never in the loss)."""
    model.require_tokens(THINK_TOKENS, "CoT SFT")
    thinks = [think_span(cot_think(u, h)) for u, h in zip(utterances, hypotheses, strict=True)]
    return fine_tune(model, stage, utterances, data_dir, config, checkpoint,
                     example=lambda i, audio: Example(audio, utterances[i].language, utterances[i].text,
                                                      spans=(thinks[i],)),
                     batch_seconds=batch_seconds, max_batch=max_batch, progress=progress,
                     weights=lambda step: {THINK: schedule.weight(step) if schedule else 1.0})


def train_rlvr(model: SpeechLLM, stage: Stage, utterances: Sequence[Utterance], first_pass: dict[str, str],
               data_dir: str | Path, config: RLVRConfig, grpo: GRPOConfig, train_config: TrainConfig,
               checkpoint: str | Path, progress: bool = True) -> TrainLog:
    """RLVR of the CoT model with Dr. GRPO: `config.prompts_per_step` utterances a step, in a seeded order per epoch;
    `first_pass` (utterance id -> the model's own stage-3 transcript) is what the constrained correction reward and
    the think similarity compare against. Saves the model to `checkpoint`."""
    model.require_tokens(THINK_TOKENS, "RLVR of the CoT model")
    functions, weights = config.reward_functions()
    audio: dict[int, np.ndarray] = {}

    def prompt(i: int) -> Example:
        if i not in audio:  # each utterance is read once; an epoch revisits it
            audio[i] = load_utterance(utterances[i], data_dir)
        return Example(audio[i], utterances[i].language)

    def columns(items: Sequence[int]) -> dict[str, list]:
        return {"reference": [utterances[i].text for i in items],
                "first_pass": [first_pass.get(utterances[i].id) for i in items]}

    step = GRPOStep(model, SpeechLLMPolicy(stage), grpo, functions, weights, prompt=prompt, columns=columns)

    batches = shuffled_batches(len(utterances), config.prompts_per_step, train_config.seed)
    log = train(model, batches, step, train_config, checkpoint, progress)
    if is_main_process():
        model.save(checkpoint)
    return log


@dataclass
class CoTTranscriber:
    """An `evaluation.Transcriber` of a CoT model: the <transcribe> span, the think hypothesis when malformed; keeps
    every parsed output (by utterance id) for the diagnosis."""
    model: SpeechLLM
    stage: Stage
    decoding: DecodingConfig
    outputs: dict[str, CoTOutput] = field(default_factory=dict)

    def __post_init__(self):
        self.model.require_tokens(THINK_TOKENS, "a CoT model's decoding")

    def __call__(self, utterances, audios) -> list[str]:
        decoded = decode(self.model, [Example(a, u.language) for u, a in zip(utterances, audios, strict=True)],
                         self.stage, self.decoding)
        parsed = [parse_cot(nbest[0].raw) for nbest in decoded]
        self.outputs.update({u.id: p for u, p in zip(utterances, parsed, strict=True)})
        return [p.final for p in parsed]


@dataclass(frozen=True)
class CoTDiagnosis:
    outputs: int
    malformed: int                  # fell back to the think hypothesis (or nothing)
    right_then_wrong: int           # think hypothesis exact, transcript not: the paper's diagnosis of CoT without PLW
    wrong_then_right: int           # think hypothesis wrong, transcript exact: corrections


def diagnose(outputs: dict[str, CoTOutput], utterances: Sequence[Utterance]) -> CoTDiagnosis:
    malformed = right_wrong = wrong_right = 0
    for u in utterances:
        if u.id not in outputs:
            continue
        parsed = outputs[u.id]
        malformed += not parsed.well_formed
        think_ok = parsed.hypothesis is not None and _wer(u.text, parsed.hypothesis, u.language) == 0
        final_ok = _wer(u.text, parsed.final, u.language) == 0
        right_wrong += think_ok and not final_ok
        wrong_right += final_ok and not think_ok
    return CoTDiagnosis(sum(u.id in outputs for u in utterances), malformed, right_wrong, wrong_right)
