"""Data parallelism for `speechkit.engine.training.train` under `accelerate launch`: every process holds the whole
model, computes its share of each global batch, and the gradients are summed over the processes once per step.

Why not torch's DistributedDataParallel, which `accelerator.prepare` would wrap the model in: the kit's loss functions
call the model's own methods (`SpeechLLM.loss`, `generate` in GRPO rollouts), which the wrapper hides and whose
gradients it synchronises only through its `forward`; a share may be empty (3 utterances on 4 GPUs); and an exact
token-weighted mean needs the weight of the whole global batch, known only after every share's forward. What DDP
would add is the overlap of that sum with the backward: one all-reduce a step of the trainable parameters' gradients,
small for adapters and projectors.

In one process every function here leaves its input as it is: no collective runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """Process 0 of a launch, or the only process: the one that writes checkpoints, logs and progress bars."""
    return not distributed() or dist.get_rank() == 0


def shares(batch: Any, processes: int, micro_batches: int, rank: int) -> list[Any]:
    """Process `rank`'s micro-batches of a global batch (a list of items). Item i goes to part i mod (processes x
    micro_batches), so that every part holds each length of a length-sorted batch (no process waits for the one
    given the longest utterances); micro-batch m of process `rank` is part m x processes + rank; None where a part
    is empty. With one process and one micro-batch, the batch as it is (any description `batches(epoch)` gives)."""
    parts = processes * micro_batches
    if parts == 1:
        return [batch]
    if not isinstance(batch, (list, tuple)):
        raise TypeError("a batch shared by processes or micro-batches must be a list of items, not "
                        f"{type(batch).__name__}")
    return [list(batch[m * processes + rank::parts]) or None for m in range(micro_batches)]


def summed(value: float, device: torch.device) -> float:
    """`value` summed over the processes."""
    if not distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.item()


def from_main(value: float, device: torch.device) -> float:
    """Process 0's `value` on every process (the wall clock a time budget reads: every process stops on the same
    step, and the learning rate, which follows that budget, stays the same everywhere)."""
    if not distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.item()


def summed_values(values: dict[str, float]) -> dict[str, float]:
    """Name-wise sums over the processes of dicts that may name different things (a process whose shares were all
    empty has none)."""
    if not distributed():
        return values
    gathered: list[dict[str, float]] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, values)
    total: dict[str, float] = {}
    for entry in gathered:
        for name, value in entry.items():
            total[name] = total.get(name, 0.0) + value
    return total


def sum_gradients(parameters: Sequence[torch.nn.Parameter], device: torch.device) -> None:
    """Every process's gradients summed, in one collective. A parameter no process computed a gradient for keeps
    None, so that the optimizer skips it as it does in one process."""
    if not distributed():
        return
    present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float() for p in parameters]
                     + [present])
    dist.all_reduce(flat)
    offset = 0
    for parameter, anyone in zip(parameters, flat[-len(parameters):].tolist(), strict=True):
        size = parameter.numel()
        parameter.grad = flat[offset:offset + size].view_as(parameter).to(parameter.dtype) if anyone else None
        offset += size


def broadcast_parameters(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Process 0's values of `parameters` on every process: weights drawn anew on each (a projector, LoRA) could
    differ in their last bits, and replicas must start equal to stay equal."""
    if not distributed():
        return
    for parameter in parameters:
        dist.broadcast(parameter.data, src=0)
