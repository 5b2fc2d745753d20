"""Speed benchmark of the speech LLM: ratios measured in one process, against baselines run right beside them.

    python -m speechkit.pipeline.speed --model results/default/12_stage3_lora/checkpoint --data data_manifests/default

- training throughput (utterances/s) of the kit's length-bucketed batches against the common recipe that pads every
  utterance to Whisper's 30 s window (fixed batch size, random order); target: at least 4x;
- inference RTFx (audio seconds per second) of batched decoding against one utterance at a time; target: 3x;
- the cost of one GRPO step (RLVR: rollouts, rewards, reference and policy passes) against one supervised step on the
  same utterances, and the rollouts' generated tokens per second.
Timings on shared machines are noisy; the ratio of two runs made back to back in one process is what is reported.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from speechkit.core.fileio import write_json
from speechkit.data.audio import load_utterance
from speechkit.data.features import length_batches
from speechkit.data.manifest import SAMPLE_RATE, read_manifest
from speechkit.engine.decoding import DecodingConfig, decode
from speechkit.models.speech_llm import STAGES, Example, SpeechLLM

WHISPER_WINDOW_SECONDS = 30


@dataclass(frozen=True)
class SpeedReport:
    utterances: int
    train_utterances_per_second: float
    train_padded_30s_utterances_per_second: float
    train_speedup: float
    decode_rtfx_batched: float
    decode_rtfx_single: float
    decode_speedup: float
    grpo_prompts: int
    grpo_generations: int
    grpo_step_seconds: float
    supervised_step_seconds: float
    grpo_step_ratio: float
    grpo_rollout_tokens_per_second: float
    device: str
    threads: int


def _train_rate(model: SpeechLLM, batches: list[list[Example]]) -> float:
    """Utterances per second over `batches` (forward + backward + optimizer step), after one warm-up batch."""
    if len(batches) < 2:
        raise ValueError(f"{len(batches)} training batch(es): timing needs two or more (the first warms up); "
                         "give more utterances or smaller batches")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    for index, batch in enumerate(batches):
        if index == 1:
            started, count = time.perf_counter(), 0
        loss, _ = model.loss(batch, STAGES[3])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if index >= 1:
            count += len(batch)
    return count / (time.perf_counter() - started)


def _decode_rtfx(model: SpeechLLM, batches: list[list[Example]], config: DecodingConfig) -> float:
    decode(model, batches[0], STAGES[3], config)  # warm-up
    started = time.perf_counter()
    audio = 0.0
    for batch in batches:
        decode(model, batch, STAGES[3], config)
        audio += sum(len(e.audio) for e in batch) / SAMPLE_RATE
    return audio / (time.perf_counter() - started)


def _step_costs(model: SpeechLLM, examples: list[Example], generations: int, steps: int = 2
                ) -> tuple[float, float, float]:
    """(GRPO step seconds, supervised step seconds, rollout tokens per second) on the same examples, each after a
    warm-up step; the GRPO step rewards accuracy (1 - WER), the supervised one is stage 3's loss."""
    from speechkit.engine.grpo import GRPOConfig, GRPOStep
    from speechkit.engine.policies import SpeechLLMPolicy
    # the RLVR reward; imported here, the rest of the benchmark needs none
    from speechkit.slam_asr.cot import accuracy_reward

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    step = GRPOStep(model, SpeechLLMPolicy(STAGES[3]), GRPOConfig(num_generations=generations,
                                                                  max_completion_length=64),
                    {"accuracy": accuracy_reward}, None, prompt=lambda e: Example(e.audio, e.language),
                    columns=lambda items: {"reference": [e.target for e in items]})

    def timed(loss_fn) -> tuple[float, float]:
        tokens = 0.0
        for index in range(steps + 1):
            if index == 1:
                started, tokens = time.perf_counter(), 0.0
            loss, parts = loss_fn()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += parts.get("completion tokens", 0.0) * len(examples) * generations
        return (time.perf_counter() - started) / steps, tokens

    model.train()
    grpo, tokens = timed(lambda: step(model, examples))
    supervised, _ = timed(lambda: model.loss(examples, STAGES[3]))
    return grpo, supervised, tokens / (grpo * steps)


def measure(model: SpeechLLM, data_dir: str | Path, manifest: str = "source_dev", utterances: int = 48,
            batch_seconds: float = 60.0, naive_batch: int = 8, decode_batch: int = 16, grpo_prompts: int = 4,
            grpo_generations: int = 4) -> SpeedReport:
    data_dir = Path(data_dir)
    chosen = read_manifest(data_dir / f"{manifest}.jsonl")[:utterances]
    audios = [load_utterance(u, data_dir) for u in chosen]
    examples = [Example(a, u.language, u.text) for u, a in zip(chosen, audios, strict=True)]
    durations = [u.duration for u in chosen]
    model.start_stage(STAGES[3])

    # the kit: batches of similar length, sized by padded audio; naive: 30 s windows, fixed size, shuffled
    kit = [[examples[i] for i in b] for b in length_batches(durations, batch_seconds, 32, np.random.default_rng(0))]
    window = WHISPER_WINDOW_SECONDS * SAMPLE_RATE
    padded = [Example(np.pad(e.audio, (0, window - len(e.audio))), e.language, e.target) for e in examples]
    order = np.random.default_rng(0).permutation(len(padded))
    naive = [[padded[i] for i in order[s:s + naive_batch]] for s in range(0, len(order), naive_batch)]
    kit_rate, naive_rate = _train_rate(model, kit), _train_rate(model, naive)

    config = DecodingConfig(max_new_tokens=64)
    inputs = [Example(e.audio, e.language) for e in examples]
    sorted_inputs = [inputs[i] for i in np.argsort(durations)]
    batched = [sorted_inputs[s:s + decode_batch] for s in range(0, len(sorted_inputs), decode_batch)]
    single = [[e] for e in inputs]
    batched_rtfx, single_rtfx = _decode_rtfx(model, batched, config), _decode_rtfx(model, single, config)
    grpo, supervised, tokens_per_second = _step_costs(model, examples[:grpo_prompts], grpo_generations)
    device = str(next(model.parameters()).device)
    return SpeedReport(len(chosen), round(kit_rate, 3), round(naive_rate, 3), round(kit_rate / naive_rate, 2),
                       round(batched_rtfx, 2), round(single_rtfx, 2), round(batched_rtfx / single_rtfx, 2),
                       grpo_prompts, grpo_generations, round(grpo, 2), round(supervised, 2),
                       round(grpo / supervised, 1), round(tokens_per_second, 1), device, torch.get_num_threads())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speechkit.pipeline.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved speech LLM (a stage's checkpoint folder)")
    parser.add_argument("--data", required=True, help="benchmark folder")
    parser.add_argument("--manifest", default="source_dev")
    parser.add_argument("--utterances", type=int, default=48)
    parser.add_argument("--decode-batch", type=int, default=16, help="utterances per batch in batched decoding")
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args(argv)
    report = measure(SpeechLLM.load(args.model), args.data, args.manifest, args.utterances,
                     decode_batch=args.decode_batch)
    print(json.dumps(asdict(report), indent=2))
    print(f"training: {report.train_speedup}x the utterances/s of padding to 30 s (target >= 4x); "
          f"decoding: batched RTFx {report.decode_speedup}x batch size 1 (target >= 3x); "
          f"a GRPO step ({report.grpo_prompts} prompts x {report.grpo_generations} generations) costs "
          f"{report.grpo_step_ratio}x a supervised step on the same utterances")
    if args.out:
        write_json(args.out, asdict(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
