"""Speed benchmark of the speech LLM: ratios measured in one process, against baselines run right beside them.

    python -m speechkit.pipeline.speed --model published:stage3 --data data_manifests/default

- training throughput (utterances/s) of the kit's length-bucketed batches against the common recipe that pads every
  utterance to Whisper's 30 s window (fixed batch size, random order); target: at least 4x;
- inference RTFx (audio seconds per second) of batched decoding against one utterance at a time; target: 3x;
- the cost of one GRPO step (RLVR: rollouts, rewards, reference and policy passes) against one supervised step on the
  same utterances, and the rollouts' generated tokens per second;
- training tokens per second (the LLM's input positions, audio embeddings included) and, on a GPU whose bf16 peak is
  known, the model FLOPs utilisation (MFU): the FLOPs the step needs per token over the device's dense bf16 peak.
  Training runs in the precision the kit trains in there (`models.device.training_precision`: bf16 autocast on a GPU).
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
from speechkit.models.device import training_precision
from speechkit.models.published import PREFIX as PUBLISHED_PREFIX
from speechkit.models.published import published_path
from speechkit.models.speech_llm import STAGES, Example, SpeechLLM

WHISPER_WINDOW_SECONDS = 30
# dense bf16 peaks (FLOP/s) of common training GPUs, by a substring of torch.cuda.get_device_name (vendor sheets;
# the SXM parts; a PCIe H100 is lower and listed first so it matches first)
PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12,
                   "A10G": 70e12, "L4": 121e12}


def peak_bf16_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def training_flops_per_token(model: SpeechLLM) -> float:
    """FLOPs of one training step per LLM input position: the forward pass through the LLM (2 per parameter), the
    gradients of its activations on the way back (2 more, needed to reach the adapters and the projector below) and
    the weight gradients of what trains (2 per trained parameter); the encoder and the projector run once per 100 ms
    frame and are counted per audio embedding by their size, forward only when frozen."""
    llm = sum(p.numel() for p in model.llm.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # one audio embedding covers `downsample` encoder frames: the encoder's cost lands on those positions
    encoder = sum(p.numel() for p in model.encoder.parameters()) * model.config.downsample
    return 4 * llm + 2 * trained + 2 * encoder


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
    train_tokens_per_second: float
    train_mfu: float | None             # None: the device's bf16 peak is not in `PEAK_BF16_FLOPS`
    device: str
    threads: int


def _train_rate(model: SpeechLLM, batches: list[list[Example]]) -> tuple[float, float]:
    """(utterances, LLM input positions) per second over `batches` (forward + backward + optimizer step, in the
    precision the kit trains in on this device), after one warm-up batch."""
    if len(batches) < 2:
        raise ValueError(f"{len(batches)} training batch(es): timing needs two or more (the first warms up); "
                         "give more utterances or smaller batches")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=training_precision(device_type=device.type)
                              == "bf16")
    model.train()
    for index, batch in enumerate(batches):
        if index == 1:
            started, count, tokens = time.perf_counter(), 0, 0
        with autocast:
            loss, _ = model.loss(batch, STAGES[3])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if index >= 1:
            count += len(batch)
            tokens += int(model.build_inputs(batch, STAGES[3], with_targets=False)["attention_mask"].sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return count / seconds, tokens / seconds


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
    (kit_rate, tokens_per_second), (naive_rate, _) = _train_rate(model, kit), _train_rate(model, naive)
    device = next(model.parameters()).device
    peak = peak_bf16_flops(device)
    mfu = round(tokens_per_second * training_flops_per_token(model) / peak, 4) if peak else None

    config = DecodingConfig(max_new_tokens=64)
    inputs = [Example(e.audio, e.language) for e in examples]
    sorted_inputs = [inputs[i] for i in np.argsort(durations)]
    batched = [sorted_inputs[s:s + decode_batch] for s in range(0, len(sorted_inputs), decode_batch)]
    single = [[e] for e in inputs]
    batched_rtfx, single_rtfx = _decode_rtfx(model, batched, config), _decode_rtfx(model, single, config)
    grpo, supervised, rollout_rate = _step_costs(model, examples[:grpo_prompts], grpo_generations)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    return SpeedReport(len(chosen), round(kit_rate, 3), round(naive_rate, 3), round(kit_rate / naive_rate, 2),
                       round(batched_rtfx, 2), round(single_rtfx, 2), round(batched_rtfx / single_rtfx, 2),
                       grpo_prompts, grpo_generations, round(grpo, 2), round(supervised, 2),
                       round(grpo / supervised, 1), round(rollout_rate, 1), round(tokens_per_second, 1), mfu, name,
                       torch.get_num_threads())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speechkit.pipeline.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved speech LLM: a stage's checkpoint folder or "
                                                        "published:NAME")
    parser.add_argument("--data", required=True, help="benchmark folder")
    parser.add_argument("--manifest", default="source_dev")
    parser.add_argument("--utterances", type=int, default=48)
    parser.add_argument("--decode-batch", type=int, default=16, help="utterances per batch in batched decoding")
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args(argv)
    model = args.model if not args.model.startswith(PUBLISHED_PREFIX) else published_path(args.model)
    report = measure(SpeechLLM.load(model), args.data, args.manifest, args.utterances,
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
