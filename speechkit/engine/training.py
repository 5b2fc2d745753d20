"""One supervised training loop for every model of the kit (speech-LLM stages, routing, the GER cascade, GRPO).

Hand-written around `accelerate` (device placement, bf16 autocast, several processes under `accelerate launch`)
because the kit needs three things Trainer does not give without overriding most of it: batches made by total audio
length, a wall-clock budget that the learning-rate schedule follows, and resumable checkpoints that include where in
the epoch training stopped. Under `accelerate launch` every process takes its share of each batch
(`speechkit.engine.data_parallel`); the step is the same as in one process.
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from tqdm import tqdm

from speechkit.core.fileio import atomic_open
from speechkit.core.results import Metric
from speechkit.data.features import length_batches
from speechkit.engine.data_parallel import broadcast_parameters, from_main, shares, sum_gradients, summed, summed_values
from speechkit.models.device import PRECISIONS, training_precision

STATE_FILE = "training_state.pt"
LOG_FILE = "training_log.csv"  # the loss curve, beside the checkpoint (committed with the results)
STATE_PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# What defines a run's trajectory: a saved state resumes when these agree (bookkeeping such as the checkpoint interval,
# the log interval, the state's precision, the compute precision, the number of processes or of micro-batches may
# change between sessions and machines)
RESUME_FIELDS = ("learning_rate", "min_lr_ratio", "warmup_steps", "max_steps", "max_minutes", "weight_decay",
                 "grad_clip", "seed")


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1       # cosine decay ends at this fraction of the peak
    warmup_steps: int = 100
    max_steps: int = 1000
    max_minutes: float = 0.0        # wall-clock budget, 0 for none; the schedule follows whichever budget ends first
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    checkpoint_minutes: float = 10.0
    log_every: int = 25
    seed: int = 0
    # each process computes its share of a batch in this many micro-batches, their gradients summed before the step:
    # less memory for the same step (a batch is what `batches(epoch)` gives; to train on more per step, make it larger)
    gradient_accumulation_steps: int = 1
    # "auto": bf16 autocast where the hardware computes bf16 natively (CUDA, a CPU with AVX512_BF16 or AMX), float32
    # elsewhere (emulated bf16 was 16-33x slower); "bf16" or "no" force it. Master weights are float32 either way.
    mixed_precision: str = "auto"
    # the optimizer's moments in the saved training state: "bfloat16" halves a state that is committed (the
    # pretraining's, resumed on other machines; the moments come back as float32, rounded to 3 digits)
    state_precision: str = "float32"

    def __post_init__(self):
        if (self.learning_rate <= 0 or self.max_steps < 1 or self.warmup_steps < 0 or self.max_minutes < 0
                or self.gradient_accumulation_steps < 1):
            raise ValueError(f"invalid training configuration: {self}")
        if self.state_precision not in STATE_PRECISIONS:
            raise ValueError(f"state_precision must be one of {STATE_PRECISIONS}, not {self.state_precision!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {PRECISIONS}, not {self.mixed_precision!r}")


@dataclass
class TrainLog:
    """Loss curve: one row every `log_every` steps (means over those steps)."""
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    stopped_by: str = ""
    steps: int = 0                  # steps trained in all (a resumed run included); `step` ends at the last logged one
    minutes: float = 0.0            # wall clock of those steps
    precision: dict[int, str] = field(default_factory=dict)  # first step -> "bf16" | "no" (a resume may change it)

    @property
    def last_precision(self) -> str:
        return self.precision[max(self.precision)] if self.precision else ""


def write_log(log: TrainLog, path: str | Path) -> None:
    """The loss curve as CSV (step, loss, learning_rate, seconds, then each named part): readable without the kit,
    and what the notebooks plot."""
    parts = list(log.parts[0]) if log.parts else []
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["step", "loss", "learning_rate", "seconds", *parts])
        for i, step in enumerate(log.step):
            writer.writerow([step, log.loss[i], log.learning_rate[i], log.seconds[i],
                             *(log.parts[i][name] for name in parts)])


def read_log(path: str | Path) -> TrainLog:
    """A loss curve written by `write_log` (`steps`, `minutes` and `stopped_by` are not in the file)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    fixed = ("step", "loss", "learning_rate", "seconds")
    return TrainLog(step=[int(r["step"]) for r in rows], loss=[float(r["loss"]) for r in rows],
                    learning_rate=[float(r["learning_rate"]) for r in rows],
                    seconds=[float(r["seconds"]) for r in rows],
                    parts=[{k: float(v) for k, v in r.items() if k not in fixed} for r in rows])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device). Call it before building a model that draws new weights (a
    projector, LoRA adapters): a resumed run is recognised by the digest of the weights it started from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_batches_by_epoch(durations: Sequence[float], batch_seconds: float, max_batch: int,
                            seed: int) -> Callable[[int], list[list[int]]]:
    """`batches(epoch)` for `train`: length batches (at most `batch_seconds` of padded audio and `max_batch` items),
    drawn in a seeded order per epoch - what every supervised fine-tuning of the kit trains on."""
    def batches(epoch: int) -> list[list[int]]:
        return length_batches(durations, batch_seconds, max_batch, np.random.default_rng([seed, epoch]))
    return batches


def shuffled_batches(count: int, size: int, seed: int) -> Callable[[int], list[list[int]]]:
    """`batches(epoch)` for `train`: groups of `size` item indices in a seeded random order per epoch (GRPO's
    prompts per step, the GER cascade's text batches)."""
    def batches(epoch: int) -> list[list[int]]:
        order = np.random.default_rng([seed, epoch]).permutation(count).tolist()
        return [order[i:i + size] for i in range(0, count, size)]
    return batches


def learning_rate(config: TrainConfig, step: int, elapsed: float) -> tuple[float, float]:
    """(learning rate, progress in [0, 1]): linear warmup, then cosine decay over steps or wall clock."""
    progress = step / config.max_steps
    if config.max_minutes:
        progress = max(progress, elapsed / (60 * config.max_minutes))
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    cosine = config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.learning_rate * warmup * cosine, progress


# sharded training keeps part of the model in each process: `train` keeps a whole replica in each
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)


def train(model: torch.nn.Module, batches: Callable[[int], Sequence[Any]],
          loss_fn: Callable[[torch.nn.Module, Any], tuple], config: TrainConfig,
          checkpoint_dir: str | Path | None = None, progress: bool = True,
          on_step: Callable[[int], None] | None = None) -> TrainLog:
    """Train the parameters of `model` that require grad.

    `batches(epoch)` lists the epoch's batch descriptions (deterministic per epoch); `loss_fn(model, batch)` builds
    the tensors on `model`'s device and returns (loss, named parts to log), or (loss, parts, weight) for a loss that
    is a mean over `weight` (sum(w) of its target tokens; without it, a mean over the batch's items). With several
    processes or `gradient_accumulation_steps`, a batch must be a list of items: `loss_fn` gets parts of it, and the
    weights make the step the whole batch's. With `checkpoint_dir`, the state is saved every `checkpoint_minutes`
    and at the end, and a rerun with the same configuration from the same starting weights resumes where the last
    one stopped. `on_step(step)` is called before each step (e.g. a loss-weight schedule; a resumed run calls it
    with the resumed step numbers). With `checkpoint_dir`, the loss curve is also rewritten there as CSV
    (`LOG_FILE`) at every logged step, so a long run can be watched and plotted as it trains.

    Under `accelerate launch` every process calls this with the same arguments and computes its share of each
    batch; the steps, losses and logs are those of the whole batches, and only process 0 writes the state, the loss
    curve and a progress bar.
    """
    # train where the model was loaded (models.device): a model kept on the CPU must not move to a GPU
    device_type = next(model.parameters()).device.type
    precision = training_precision(config.mixed_precision, device_type)
    # autocast is entered here around the whole loss (below), not by accelerate's `mixed_precision`: that wraps
    # `model.forward` only (a loss through SpeechLLM.loss or a GRPO step ran in float32 under "bf16"), and it fixes
    # one precision per process (a later run asking another one fails)
    accelerator = Accelerator(mixed_precision="no", cpu=device_type == "cpu")
    autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if accelerator.distributed_type in SHARDED:
        raise ValueError(f"train() keeps a whole replica of the model in each process; {accelerator.distributed_type} "
                         "shards it: launch with data parallelism (speechkit/pipeline/accelerate_ddp.yaml)")
    writes = accelerator.is_main_process
    model.to(accelerator.device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if not parameters:
        raise ValueError("no parameter of the model requires grad: nothing to train")
    broadcast_parameters(parameters)
    start = parameters_digest(model) if checkpoint_dir else None
    # each process its own random stream (dropout, sampled rollouts); process 0's is the one-process run's
    torch.manual_seed(config.seed + accelerator.process_index)
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    optimizer = accelerator.prepare(optimizer)
    state = {"step": 0, "epoch": 0, "batch": 0, "elapsed": 0.0, "log": TrainLog()}
    path = Path(checkpoint_dir) / STATE_FILE if checkpoint_dir else None
    log_file = Path(checkpoint_dir) / LOG_FILE if checkpoint_dir and writes else None
    saved = torch.load(path, map_location="cpu", weights_only=False) if path and path.is_file() else None
    if saved is not None and not same_run(saved["config"], config):
        accelerator.print(f"{path}: saved by a run with another configuration; starting afresh")
        saved = None
    if saved is not None and saved.get("start") != start:
        # e.g. a stage rerun on a retrained previous stage: same configuration, other starting weights
        accelerator.print(f"{path}: saved by a run that started from other weights; starting afresh")
        saved = None
    if saved is not None:
        model.load_state_dict(saved["model"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        state = {**saved["state"], "log": TrainLog(**saved["state"]["log"])}
        if writes:
            torch.set_rng_state(saved["rng"])
        else:  # the state holds process 0's generator: the others draw on from a seed of their own and the step
            torch.manual_seed(config.seed + accelerator.process_index + accelerator.num_processes * state["step"])
        accelerator.print(f"resumed at step {state['step']}")
        if state["log"].last_precision and state["log"].last_precision != precision:
            # float32 master weights and optimizer either way: only the compute changes
            accelerator.print(f"precision {state['log'].last_precision} until step {state['step']}, {precision} from "
                              f"here (mixed_precision {config.mixed_precision!r} on this machine)")

    def save():
        if path is None or not writes:
            return
        with atomic_open(path, "wb") as handle:
            # only what trains: the frozen rest (most of a real LLM) is rebuilt from its checkpoint on resume
            trained = {k: v for k, v in model.state_dict().items() if k in trainable}
            torch.save({"model": trained, "optimizer": optimizer_state(optimizer, config.state_precision),
                        "rng": torch.get_rng_state(), "config": asdict(config), "start": start,
                        "state": {**state, "log": asdict(state["log"])}}, handle)

    log: TrainLog = state["log"]
    if log.last_precision != precision:
        log.precision[state["step"]] = precision
    started = time.perf_counter() - state["elapsed"]
    last_save = time.perf_counter()
    window: list[tuple[float, dict[str, float]]] = []
    bar = tqdm(total=config.max_steps, initial=state["step"], desc="training", unit="step", mininterval=10,
               disable=not (progress and writes))
    model.train()
    while not log.stopped_by:
        epoch_batches = batches(state["epoch"])
        if not epoch_batches:
            raise ValueError("no training batches")
        for batch in epoch_batches[state["batch"]:]:
            elapsed = from_main(time.perf_counter() - started, accelerator.device)
            rate, done = learning_rate(config, state["step"], elapsed)
            if done >= 1.0:
                log.stopped_by = "max_steps" if state["step"] >= config.max_steps else "max_minutes"
                break
            for group in optimizer.param_groups:
                group["lr"] = rate
            if on_step is not None:
                on_step(state["step"])
            loss, parts = backpropagate(model, batch, loss_fn, autocast, accelerator, parameters,
                                        config.gradient_accumulation_steps)
            if config.grad_clip:
                accelerator.clip_grad_norm_(parameters, config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["batch"] += 1
            window.append((loss, parts))
            bar.update()
            if state["step"] % config.log_every == 0:
                log.step.append(state["step"])
                log.loss.append(sum(w[0] for w in window) / len(window))
                log.parts.append({k: sum(w[1][k] for w in window) / len(window) for k in window[0][1]})
                log.learning_rate.append(rate)
                log.seconds.append(round(time.perf_counter() - started, 1))
                bar.set_postfix(loss=f"{log.loss[-1]:.3f}")
                window.clear()
                if log_file is not None:
                    write_log(log, log_file)
            if time.perf_counter() - last_save > 60 * config.checkpoint_minutes:
                state["elapsed"] = time.perf_counter() - started
                save()
                last_save = time.perf_counter()
        else:
            state["epoch"] += 1
            state["batch"] = 0
    bar.close()
    state["elapsed"] = time.perf_counter() - started
    log.steps, log.minutes = state["step"], state["elapsed"] / 60
    save()
    if log_file is not None:
        write_log(log, log_file)
    model.eval()
    return log


def backpropagate(model: torch.nn.Module, batch: Any, loss_fn: Callable[[torch.nn.Module, Any], tuple],
                  autocast: torch.autocast, accelerator: Accelerator, parameters: Sequence[torch.nn.Parameter],
                  micro_batches: int) -> tuple[float, dict[str, float]]:
    """The gradient of one batch's loss into `parameters`' grads, from this process's micro-batches of it and the
    other processes' (summed); returns that loss and its parts, the whole batch's, on every process."""
    processes = accelerator.num_processes
    split = processes * micro_batches > 1
    total, mean_loss, mean_parts = 0.0, 0.0, {}
    for share in shares(batch, processes, micro_batches, accelerator.process_index):
        loss, weight = None, 0.0
        if share is not None:
            with autocast:
                loss, parts, *reported = loss_fn(model, share)
            weight = float(reported[0]) if reported else (len(share) if split else 1.0)
        # A loss is a weighted mean (sum(w * CE) / sum(w)), so the batch's loss is the shares' losses weighted by
        # their weights - not their plain mean, which averaging over processes (DDP) gives. A weight is known after
        # its share's forward: the gradient accumulated so far, a mean over the weight seen so far (every process's),
        # is rescaled to the new total, and each share adds its loss x weight / total. One share: the loss as it is.
        seen, total = total, total + summed(weight, accelerator.device)
        if seen:
            ratio = seen / total
            for parameter in parameters:
                if parameter.grad is not None:
                    parameter.grad.mul_(ratio)
            mean_loss *= ratio
            mean_parts = {name: value * ratio for name, value in mean_parts.items()}
        if loss is not None:
            factor = weight / total if total else 1.0  # no weight yet (a share of weight 0): the loss as it is
            accelerator.backward(loss * factor)
            mean_loss += loss.item() * factor
            for name, value in parts.items():
                mean_parts[name] = mean_parts.get(name, 0.0) + value * factor
    sum_gradients(parameters, accelerator.device)
    return summed(mean_loss, accelerator.device), summed_values(mean_parts)


def same_run(saved: dict, config: TrainConfig) -> bool:
    """Whether a state saved under configuration `saved` (a dict; options it predates take their defaults) belongs
    to the run `config` describes."""
    saved = {**asdict(TrainConfig()), **saved}
    return all(saved[name] == getattr(config, name) for name in RESUME_FIELDS)


def optimizer_state(optimizer: torch.optim.Optimizer, precision: str) -> dict:
    """The optimizer's state dict with its floating-point tensors (Adam's moments) in `precision`; loading casts
    them back to the parameters' float32."""
    state = optimizer.state_dict()
    dtype = STATE_PRECISIONS[precision]
    if dtype != torch.float32:
        state["state"] = {index: {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() and k != "step" else v
                                  for k, v in entry.items()} for index, entry in state["state"].items()}
    return state


def parameters_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer (one tensor at a time on the CPU): identifies the weights a run
    started from, so that only a run from the same weights is resumed."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def training_metrics(log: TrainLog, prefix: str = "") -> list[Metric]:
    """Steps and minutes a run trained (a wall-clock budget gives fewer steps on a loaded machine: keep both)."""
    return [Metric(f"{prefix}training steps", log.steps, unit="count"),
            Metric(f"{prefix}training minutes", round(log.minutes, 1), unit="min")]
