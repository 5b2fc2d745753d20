"""What a stage reports: metrics (with intervals and the paper's claim) and the provenance of the run."""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from speechkit.core.fileio import write_json

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]  # speechkit/core/results.py -> the checkout
METRICS_FILE = "metrics.json"


def from_params(cls: type[T], params: dict, **fixed) -> T:
    """Build config dataclass `cls` from a notebook's parameters (its globals): every field is a parameter, or is
    `fixed` by the notebook's code. A field missing from both is an error, not a silent default: a parameter file
    could not set it. (Names that are not fields are the notebook's other globals; the runner refuses a parameter
    the notebook does not declare, and tests/test_notebooks.py that a declared one reaches no config or code.)"""
    names = [spec.name for spec in dataclasses.fields(cls)]
    unknown = sorted(set(fixed) - set(names))
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(unknown)}")
    missing = [name for name in names if name not in params and name not in fixed]
    if missing:
        raise ValueError(f"{cls.__name__} needs {', '.join(missing)}: declare them in the notebook's parameters cell "
                         f"(or pass them to from_params)")
    return cls(**{name: fixed[name] if name in fixed else params[name] for name in names})


def name_list(value: Sequence[str], what: str) -> tuple[str, ...]:
    """A list parameter of names (manifests, systems) as a tuple. A bare string is refused: iterated, it would name
    its characters."""
    if isinstance(value, str) or not value or not all(isinstance(name, str) and name for name in value):
        raise ValueError(f"{what} must be a non-empty list of names, e.g. [\"source_dev\"], not {value!r}")
    return tuple(value)


def repo_path(path: str | Path) -> Path:
    """A path as given, or anchored at the repository root when relative (notebooks run from any folder)."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


@dataclass(frozen=True)
class Metric:
    """One reported number. Rates are fractions (0.125 = 12.5%); `claim` is the paper's corresponding statement."""
    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str = ""           # "rate" (shown as %), "s", "x", "count", ...
    claim: str | None = None


def save_metrics(output_dir: str | Path, metrics: list[Metric]) -> Path:
    names = [m.name for m in metrics]
    if len(names) != len(set(names)):
        raise ValueError(f"metric names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    path = repo_path(output_dir) / METRICS_FILE
    write_json(path, [dataclasses.asdict(m) for m in metrics])
    return path


def load_metrics(stage_dir: str | Path) -> list[Metric]:
    path = Path(stage_dir) / METRICS_FILE
    return [Metric(**row) for row in json.loads(path.read_text(encoding="utf-8"))] if path.is_file() else []


# what runs write into the repository: their changes leave the code of a commit as it was
RUN_OUTPUTS = ("results", "data_manifests")


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.rstrip()
    except (OSError, subprocess.SubprocessError):
        return ""


def code_changes() -> list[str]:
    """Paths with uncommitted changes outside what runs write (`RUN_OUTPUTS`): a stage computed now is computed by
    other code than its commit's."""
    status = _git("status", "--porcelain", "--", ".", *(f":(exclude){folder}" for folder in RUN_OUTPUTS))
    return [line[3:] for line in status.splitlines()]


def provenance() -> dict:
    """Git commit (dirty: code changed since it, `code_changes`), interpreter, library versions and device: written
    next to every stage's results."""
    versions = {}
    for package in ("torch", "transformers", "peft", "trl", "jiwer", "meeteval", "librosa", "numpy", "papermill"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(code_changes()),
            "python": sys.version.split()[0], "platform": platform.platform(), "device": _device(),
            "threads": _threads(), "versions": versions}


def _threads() -> int | None:
    try:
        import torch
        return torch.get_num_threads()
    except ImportError:
        return None


def _device() -> str:
    try:
        import torch
        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"cpu: {platform.processor() or platform.machine()}"


def format_value(metric: Metric) -> str:
    if metric.unit == "count":
        return f"{metric.value:,}"
    scale, suffix = (100, "%") if metric.unit == "rate" else (1, f" {metric.unit}" if metric.unit else "")
    text = f"{metric.value * scale:.2f}{suffix}" if isinstance(metric.value, float) else f"{metric.value}{suffix}"
    if metric.ci_low is not None and metric.ci_high is not None:
        text += f" [{metric.ci_low * scale:.2f}, {metric.ci_high * scale:.2f}]"
    return text
