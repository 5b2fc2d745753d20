"""Speech-Hands: the speech LLM decides, with an action token, whether to trust itself, the external ASR, or neither.

- `<internal>`: keep the model's own transcript (its stage-3 decoding, without the external hypotheses);
- `<external>`: take the external ASR's top hypothesis;
- `<rewrite>`: write the transcript anew from the audio and the external N-best (the text the model generates).

Labels follow the paper's builder: the internal transcript is correct -> <internal>; else the external top
hypothesis is correct -> <external>; else <rewrite>; the text after the token is always the gold transcript.
"Correct" means equal after the language's normaliser (WER 0); `tolerance` relaxes it to WER <= tolerance, for
benchmarks where exact matches are rare. The cascaded GER baseline (a text-only LLM correcting the external N-best
without audio) lives here too, since it is trained on the same items.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from speechkit.core.claims import group_name
from speechkit.core.fileio import write_jsonl
from speechkit.core.results import Metric
from speechkit.core.text import normaliser_for
from speechkit.data.audio import load_utterance
from speechkit.data.manifest import Hypothesis, NBest, Utterance
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.evaluation import SystemResult, score
from speechkit.engine.recipes import decode_all, fine_tune
from speechkit.engine.training import TrainConfig, TrainLog, shuffled_batches, train
from speechkit.metrics.scoring import paired_difference, utterance_errors
from speechkit.models.lm import load_lm, target_loss
from speechkit.models.speech_llm import STAGES, Example, SpeechLLM, Stage, TargetSpan
from speechkit.speech_hands.claims import CASCADE_FIGURE, ROUTED_MINUS_BEST, best_single_figure

ACTIONS = ("internal", "external", "rewrite")
ROUTING_TOKENS = tuple(f"<{action}>" for action in ACTIONS)  # the router's own tokens (`SpeechLLMConfig.extra_tokens`)
_ACTION = re.compile(f"<({'|'.join(ACTIONS)})>")  # the emitted routing token
ACTION = "action"  # the action token's name for its loss weight (`Stage.span_weights`)

# Stage 3's configuration (LoRA, tagged output, language prompts) continued with the action token first; the rows of
# the kit's tokens (the routing tokens among them) in the embeddings and LM head train too, since those are new to it.
ROUTING_STAGE = replace(STAGES[3], name="routing", token_rows=True)


def hypotheses_text(hypotheses: Sequence[Hypothesis], nbest: int) -> str:
    """How the external N-best enters the prompt (before the instruction)."""
    listed = " ".join(f"({i}) {h.text}" for i, h in enumerate(hypotheses[:nbest], 1))
    return f"External ASR hypotheses: {listed}"


def word_errors(reference: str, hypothesis: str, language: str) -> tuple[int, int]:
    """(errors, reference length) after the language's normaliser."""
    counts = utterance_errors(reference, hypothesis, normaliser_for(language))
    return counts.errors, counts.reference_length


def is_correct(reference: str, hypothesis: str, language: str, tolerance: float = 0.0) -> bool:
    errors, length = word_errors(reference, hypothesis, language)
    return errors <= tolerance * max(length, 1)


def routing_label(reference: str, internal: str, external: str, language: str, tolerance: float = 0.0) -> str:
    """The paper's label: <internal> if the model is right, else <external> if the external top is, else <rewrite>."""
    if is_correct(reference, internal, language, tolerance):
        return "internal"
    if is_correct(reference, external, language, tolerance):
        return "external"
    return "rewrite"


@dataclass(frozen=True)
class RoutingItem:
    """One labeled utterance: what the router is shown (audio, external N-best) and what it should answer."""
    utterance: Utterance
    internal: str                        # the speech LLM's own transcript (stage 3, no external hypotheses)
    external: tuple[Hypothesis, ...]     # the external ASR's N-best, best first
    label: str                           # the paper's routing label

    def example(self, nbest: int, with_target: bool, audio: np.ndarray) -> Example:
        return Example(audio, self.utterance.language, self.utterance.text if with_target else None,
                       context=hypotheses_text(self.external, nbest),
                       # first and without a leading space: the first generated token is the decision itself
                       spans=(TargetSpan(f"<{self.label}>", ACTION, first=True),) if with_target else ())


def transcripts(model: SpeechLLM, stage: Stage, utterances: Sequence[Utterance], data_dir: str | Path,
                decoding: DecodingConfig | None = None, max_batch: int = 16, desc: str = "internal",
                progress: bool = True) -> dict[str, str]:
    """The speech LLM's own transcripts (no external hypotheses in the prompt), by utterance id."""
    data_dir = Path(data_dir)
    decoded = decode_all(model, stage, [u.duration for u in utterances],
                         lambda i: Example(load_utterance(utterances[i], data_dir), utterances[i].language),
                         decoding or DecodingConfig(), max_batch, desc, progress)
    return {u.id: d[0].text for u, d in zip(utterances, decoded, strict=True)}


def routing_items(utterances: Sequence[Utterance], internal: dict[str, str], external: dict[str, NBest],
                  tolerance: float = 0.0) -> list[RoutingItem]:
    """Label every utterance that has an internal transcript and an external N-best."""
    missing = [u.id for u in utterances if u.id not in internal or u.id not in external]
    if missing:
        raise ValueError(f"{len(missing)} utterances lack an internal or external hypothesis, e.g. {missing[:3]}")
    return [RoutingItem(u, internal[u.id], external[u.id].hypotheses,
                        routing_label(u.text, internal[u.id], external[u.id].hypotheses[0].text, u.language,
                                      tolerance)) for u in utterances]


def label_counts(items: Sequence[RoutingItem]) -> dict[str, int]:
    counts = Counter(item.label for item in items)
    return {action: counts.get(action, 0) for action in ACTIONS}


def train_router(model: SpeechLLM, stage: Stage, items: Sequence[RoutingItem], data_dir: str | Path,
                 train_config: TrainConfig, checkpoint: str | Path, nbest: int = 5, batch_seconds: float = 60.0,
                 max_batch: int = 16, progress: bool = True) -> TrainLog:
    """Fine-tune the speech LLM to emit the action token and the gold transcript; saves it to `checkpoint`."""
    model.require_tokens(ROUTING_TOKENS, "routing")
    return fine_tune(model, stage, [item.utterance for item in items], data_dir, train_config, checkpoint,
                     example=lambda i, audio: items[i].example(nbest, True, audio), batch_seconds=batch_seconds,
                     max_batch=max_batch, progress=progress)


@dataclass(frozen=True)
class Decision:
    """What the router did with one test utterance."""
    id: str
    manifest: str
    domain: str
    language: str
    reference: str
    internal: str
    external: tuple[Hypothesis, ...]
    label: str                           # the paper's label for this utterance (what routing should have chosen)
    action: str                          # the token the model emitted
    action_probability: float            # its probability at the first generated position
    rewrite: str                         # the transcript the model generated after the token
    output: str                          # what the system outputs: internal, external top, or rewrite

    @property
    def right(self) -> bool:
        return self.action == self.label

    def candidates(self) -> dict[str, str]:
        return {"internal": self.internal, "external": self.external[0].text, "rewrite": self.rewrite}

    def oracle(self) -> str:
        """The candidate with the fewest errors (oracle routing: the upper bound of any router over these three)."""
        candidates = self.candidates()
        return min(candidates.values(), key=lambda text: word_errors(self.reference, text, self.language)[0])


def route(model: SpeechLLM, stage: Stage, items: Sequence[RoutingItem], manifest: str, data_dir: str | Path,
          nbest: int = 5, decoding: DecodingConfig | None = None, max_batch: int = 16,
          progress: bool = True) -> list[Decision]:
    """Decode each item with its external N-best in the prompt and apply the emitted action (in item order)."""
    model.require_tokens(ROUTING_TOKENS, "routing")
    data_dir = Path(data_dir)
    decoded = decode_all(model, stage, [item.utterance.duration for item in items],
                         lambda i: items[i].example(nbest, False, load_utterance(items[i].utterance, data_dir)),
                         decoding or DecodingConfig(), max_batch, f"routing {manifest}", progress)
    decisions = []
    for item, nbest_list in zip(items, decoded, strict=True):
        best = nbest_list[0]
        found = _ACTION.search(best.raw)
        # no action token: the model wrote a transcript of its own, which is what <rewrite> means
        action = found.group(1) if found else "rewrite"
        first = found is not None and best.raw.lstrip().startswith(found.group(0))
        output = {"internal": item.internal, "external": item.external[0].text, "rewrite": best.text}[action]
        u = item.utterance
        decisions.append(Decision(u.id, manifest, u.domain, u.language, u.text, item.internal, item.external,
                                  item.label, action, best.first_token_probability if first else 0.0, best.text,
                                  output))
    return decisions


def save_decisions(path: str | Path, decisions: Sequence[Decision]) -> None:
    write_jsonl(path, (asdict(d) for d in decisions))


def read_decisions(path: str | Path) -> list[Decision]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Decision(**{**row, "external": tuple(Hypothesis(**h) for h in row["external"])}) for row in rows]


def system_results(outputs: dict[str, dict[str, str]], utterances: dict[str, Sequence[Utterance]]
                   ) -> dict[str, list[SystemResult]]:
    """Score each system's transcripts (system -> {id: text}) on each manifest's utterances."""
    return {system: [r for manifest, chosen in utterances.items()
                     for r in score(manifest, chosen, [texts[u.id] for u in chosen])]
            for system, texts in outputs.items()}


def routed_differences(systems: dict[str, list[SystemResult]], singles: Sequence[str],
                       cascade: str = "GER cascade", routed: str = "routed") -> list[Metric]:
    """Paired bootstrap differences, per (manifest, language) of the routed system: routed minus the best single
    system there, and routed minus the GER cascade (negative: routing is better). Results are matched by (manifest,
    language), whatever order each system lists them in; a system not scored on one of them is an error."""
    scored = {name: {(r.manifest, r.language): r for r in results} for name, results in systems.items()}
    metrics = []
    for result in systems[routed]:
        key = (result.manifest, result.language)
        missing = [name for name in (*singles, cascade) if key not in scored[name]]
        if missing:
            raise ValueError(f"{', '.join(missing)} not scored on {group_name(*key)}: nothing to pair routing with")
        best = min(singles, key=lambda name: scored[name][key].wer.rate)
        for baseline, name, claim in ((best, ROUTED_MINUS_BEST, best_single_figure(best)),
                                      (cascade, f"routed minus {cascade}", CASCADE_FIGURE)):
            d = paired_difference(scored[baseline][key].wer, result.wer)
            metrics.append(Metric(f"{name} {group_name(*key)}", d.difference, d.interval.low, d.interval.high,
                                  unit="rate", claim=claim))
    return metrics


@dataclass(frozen=True)
class RoutingReport:
    labels: tuple[str, ...]
    confusion: np.ndarray                # rows: gold label, columns: predicted action
    precision: dict[str, float]
    recall: dict[str, float]
    f1: dict[str, float]
    support: dict[str, int]
    accuracy: float
    macro_f1: float


def routing_report(decisions: Sequence[Decision]) -> RoutingReport:
    gold, predicted = [d.label for d in decisions], [d.action for d in decisions]
    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, labels=list(ACTIONS),
                                                                     zero_division=0)

    def per_action(values, kind=float) -> dict:
        return {action: kind(value) for action, value in zip(ACTIONS, values, strict=True)}

    return RoutingReport(ACTIONS, confusion_matrix(gold, predicted, labels=list(ACTIONS)), per_action(precision),
                         per_action(recall), per_action(f1), per_action(support, int),
                         float(np.mean([g == p for g, p in zip(gold, predicted, strict=True)])) if gold else 0.0,
                         float(np.mean(f1)))


def plot_routing(train_counts: dict[str, int], report: RoutingReport) -> plt.Figure:
    """Training label distribution, and the test confusion matrix (gold label x emitted token)."""
    figure, (labels, matrix) = plt.subplots(1, 2, figsize=(10, 3.8))
    labels.bar(list(train_counts), list(train_counts.values()), color=["tab:blue", "tab:orange", "tab:green"])
    labels.set(title="training labels", ylabel="utterances")
    matrix.imshow(report.confusion, cmap="Blues")
    for (row, column), value in np.ndenumerate(report.confusion):
        matrix.text(column, row, str(value), ha="center", va="center",
                    color="white" if value > report.confusion.max() / 2 else "black")
    ticks = [f"<{a}>" for a in report.labels]
    matrix.set(xticks=range(len(ticks)), xticklabels=ticks, yticks=range(len(ticks)), yticklabels=ticks,
               xlabel="emitted token", ylabel="label", title=f"routing on test (accuracy {report.accuracy:.0%})")
    figure.tight_layout()
    return figure


# -- the cascaded GER baseline: a text-only LLM corrects the external N-best (no audio) ----------------------------

GER_LORA_TARGETS = r".*\.(q_proj|k_proj|v_proj|o_proj)$"


def ger_prompt(hypotheses: Sequence[Hypothesis], nbest: int) -> str:
    return f"{hypotheses_text(hypotheses, nbest)} Corrected transcript:"


@dataclass
class GERCorrector:
    """A causal LM with LoRA adapters that reads an N-best and writes the corrected transcript."""
    model: torch.nn.Module
    tokenizer: object
    nbest: int = 5

    @classmethod
    def from_llm(cls, checkpoint: str, nbest: int = 5, rank: int = 16, alpha: int = 32) -> "GERCorrector":
        llm, tokenizer = load_lm(checkpoint)
        adapters = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.05, target_modules=GER_LORA_TARGETS)
        return cls(get_peft_model(llm, adapters), tokenizer, nbest)

    def batch(self, items: Sequence[RoutingItem]) -> dict[str, torch.Tensor]:
        """Prompt + gold transcript per item, right-padded; only the transcript (and end token) is in the loss."""
        rows, labels = [], []
        for item in items:
            prompt = self.tokenizer(ger_prompt(item.external, self.nbest), add_special_tokens=False).input_ids
            target = self.tokenizer(f" {item.utterance.text}{self.tokenizer.eos_token}",
                                    add_special_tokens=False).input_ids
            rows.append(prompt + target)
            labels.append([-100] * len(prompt) + target)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id)
        label_tensor = torch.full((len(rows), width), -100)
        for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
            ids[i, :len(row)], label_tensor[i, :len(row)] = torch.tensor(row), torch.tensor(label)
        return {"input_ids": ids, "attention_mask": (torch.arange(width)[None] < torch.tensor(
            [len(r) for r in rows])[:, None]).long(), "labels": label_tensor}

    def train(self, items: Sequence[RoutingItem], train_config: TrainConfig, checkpoint: str | Path,
              batch_size: int = 16, progress: bool = True) -> TrainLog:
        def loss(model, indices):
            batch = {k: v.to(model.device) for k, v in self.batch([items[i] for i in indices]).items()}
            value, _, weight = target_loss(model.get_base_model(), **batch)
            return value, {}, weight

        batches = shuffled_batches(len(items), batch_size, train_config.seed)
        log = train(self.model, batches, loss, train_config, checkpoint, progress)
        self.model.save_pretrained(checkpoint)
        return log

    @torch.no_grad()
    def correct(self, nbests: Sequence[Sequence[Hypothesis]], max_new_tokens: int = 96,
                batch_size: int = 32) -> list[str]:
        """Greedy corrections, batched with left padding."""
        self.model.eval()
        self.tokenizer.padding_side = "left"
        texts = []
        for start in range(0, len(nbests), batch_size):
            prompts = [ger_prompt(h, self.nbest) for h in nbests[start:start + batch_size]]
            inputs = self.tokenizer(prompts, return_tensors="pt", padding=True,
                                    add_special_tokens=False).to(self.model.device)
            # the runaway guard: a correction is about as long as the hypotheses it corrects
            longest = max(len(self.tokenizer(h[0].text).input_ids) for h in nbests[start:start + batch_size])
            output = self.model.generate(**inputs, max_new_tokens=min(max_new_tokens, 2 * longest + 8),
                                         do_sample=False,
                                         pad_token_id=self.tokenizer.pad_token_id,
                                         eos_token_id=self.tokenizer.eos_token_id)
            generated = self.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            texts += [" ".join(text.split()) for text in generated]
        return texts
