"""What training precision costs on this machine: the speech LLM's training step in float32, in bf16 autocast, and in
the kit's default ("auto"), each timed in its own process, back to back.

    python -m speechkit.pipeline.precision --data data_manifests/smoke [--steps 3] [--batch 4] [--out FILE]

bf16 is fast only where the hardware computes it (CUDA, a CPU with AVX512_BF16 or AMX); elsewhere torch emulates it,
which made a step 16x slower on an AVX2 CPU. The report says what torch reports of the CPU and what "auto" chose.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

SETTINGS = ("no", "bf16", "auto")


@dataclass(frozen=True)
class PrecisionReport:
    device: str
    cpu_capability: str            # torch.backends.cpu.get_cpu_capability()
    native_bf16: bool
    auto_chooses: str              # "bf16" or "no" (float32)
    seconds_per_step: dict[str, float]  # setting -> mean step time after a warm-up step
    bf16_over_float32: float       # > 1: bf16 is slower here
    auto_over_float32: float       # the default configuration against float32 (<= 1 + noise is the goal)
    utterances_per_step: int
    steps: int
    threads: int


def time_steps(setting: str, data_dir: str, steps: int, batch: int, encoder: str, llm: str) -> float:
    """Mean seconds of a stage-1 training step (`train`, as every stage runs it) after one warm-up step."""
    import torch

    from speechkit.data.audio import load_utterance
    from speechkit.data.manifest import read_manifest
    from speechkit.engine.training import TrainConfig, train
    from speechkit.models.speech_llm import STAGES, Example, SpeechLLM, SpeechLLMConfig

    torch.manual_seed(0)
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(encoder, llm, template="chat"))
    model.start_stage(STAGES[1])
    utterances = read_manifest(Path(data_dir) / "source_dev.jsonl")[:batch]
    if len(utterances) < batch:
        raise SystemExit(f"{data_dir}/source_dev.jsonl has {len(utterances)} utterances, {batch} needed")
    examples = [Example(load_utterance(u, data_dir), u.language, u.text) for u in utterances]
    config = TrainConfig(max_steps=steps + 1, warmup_steps=0, log_every=1, mixed_precision=setting)
    log = train(model, lambda epoch: [0] * (steps + 1), lambda m, _: m.loss(examples, STAGES[1]), config,
                progress=False)
    return (log.seconds[-1] - log.seconds[0]) / steps


def measure(data_dir: str, steps: int = 3, batch: int = 4, encoder: str = "pkg:whisper-tiny.en",
            llm: str = "pkg:smollm2-135m-instruct") -> PrecisionReport:
    import torch

    from speechkit.models.device import default_device, native_bf16, training_precision

    seconds = {}
    for setting in SETTINGS:  # one process each: nothing one leaves behind (caches, threads) helps the next
        command = [sys.executable, "-m", "speechkit.pipeline.precision", "--data", data_dir, "--steps", str(steps),
                   "--batch", str(batch), "--encoder", encoder, "--llm", llm, "--time", setting]
        result = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        if result.returncode:
            raise RuntimeError(f"timing {setting!r} failed:\n{result.stderr[-2000:]}")
        seconds[setting] = round(float(result.stdout.split()[-1]), 3)
    device = default_device()
    kind = torch.device(device).type
    return PrecisionReport(device, torch.backends.cpu.get_cpu_capability(), native_bf16(kind),
                           training_precision("auto", kind), seconds, round(seconds["bf16"] / seconds["no"], 2),
                           round(seconds["auto"] / seconds["no"], 2), batch, steps, torch.get_num_threads())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speechkit.pipeline.precision",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a benchmark folder (its source_dev utterances are used)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting (after one warm-up step)")
    parser.add_argument("--batch", type=int, default=4, help="utterances per step")
    parser.add_argument("--encoder", default="pkg:whisper-tiny.en")
    parser.add_argument("--llm", default="pkg:smollm2-135m-instruct")
    parser.add_argument("--out", help="write the report as JSON here")
    parser.add_argument("--time", choices=SETTINGS, help=argparse.SUPPRESS)  # the child process of one setting
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1:
        parser.error("--steps and --batch must be at least 1")
    if args.time:
        print(time_steps(args.time, args.data, args.steps, args.batch, args.encoder, args.llm))
        return 0
    report = measure(args.data, args.steps, args.batch, args.encoder, args.llm)
    print(json.dumps(asdict(report), indent=2))
    names = {"no": "float32", "bf16": "bf16"}
    print(f"{report.device} ({report.cpu_capability}, native bf16: {report.native_bf16}): a speech-LLM step takes "
          f"{report.seconds_per_step['no']} s in float32, {report.seconds_per_step['bf16']} s in bf16 autocast "
          f"({report.bf16_over_float32}x); \"auto\" chose {names[report.auto_chooses]}: "
          f"{report.auto_over_float32}x float32")
    if args.out:
        from speechkit.core.fileio import write_json
        write_json(args.out, asdict(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
