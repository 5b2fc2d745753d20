"""The kit's own speech-LLM checkpoints, published inside the repository (the pretraining's stages), as model zoos
publish theirs: named `published:<name>` in parameter files, as packaged models are `pkg:<name>`, and loaded through
the same path as any saved speech LLM once every file's SHA-256 matches the one recorded when it was published.

A published checkpoint is a saved speech LLM's configuration and trained parameters (projector, LoRA, token rows),
its training curve, and `provenance.json`: the stage's run record (commit, device, threads, precision, wall time),
the metrics it measured, the data's seed and manifest digest, the command that made it, and the files' digests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from speechkit.core.fileio import sha256_file, write_json
from speechkit.core.results import REPO_ROOT

PREFIX = "published:"
PUBLISHED = REPO_ROOT / "results" / "pretrain" / "published"
PROVENANCE = "provenance.json"
# what is published of a stage's checkpoint folder: the model's configuration and trained parameters, and its loss
# curve. Not the tokenizer (the LLM's own with the kit's tokens added, rebuilt on loading: 3.5 MB a stage for
# SmolLM2) nor the resumable training state (the optimizer's moments double the size).
MODEL_FILES = ("speech_llm.json", "trained.safetensors", "training_log.csv")


def publish(stage_dir: str | Path, name: str, data_dir: str | Path, command: str,
            root: str | Path | None = None) -> Path:
    """Copy the checkpoint of a finished stage (`stage_dir`: its metrics.json, params.json and checkpoint/) into
    `root/name` with its provenance; an existing publication of that name is replaced only once the new one is whole."""
    stage_dir, data_dir, root = Path(stage_dir), Path(data_dir), Path(root or PUBLISHED)
    missing = [p for p in (stage_dir / "metrics.json", stage_dir / "params.json", stage_dir / "checkpoint" /
                           "trained.safetensors", data_dir / "benchmark.json") if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"cannot publish {stage_dir}: missing {', '.join(map(str, missing))} (run the stage "
                                "to its end first)")
    staging = root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    files = {}
    for file in MODEL_FILES:
        source = stage_dir / "checkpoint" / file
        if source.is_file():
            shutil.copyfile(source, staging / file)
            files[file] = sha256_file(staging / file)
    benchmark = json.loads((data_dir / "benchmark.json").read_text())
    write_json(staging / PROVENANCE, {
        "name": name, "stage": stage_dir.name, "command": command,
        "run": json.loads((stage_dir / "params.json").read_text()),
        "metrics": json.loads((stage_dir / "metrics.json").read_text()),
        "data": {"seed": benchmark["config"]["seed"], "manifests_sha256": benchmark["sha256"]},
        "files": files})
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def provenance_record(reference: str, root: str | Path | None = None) -> str:
    """The provenance file's text of `published:<name>` ("" when it is not published)."""
    path = Path(root or PUBLISHED) / reference.removeprefix(PREFIX) / PROVENANCE
    return path.read_text() if path.is_file() else ""


def published_path(reference: str, root: str | Path | None = None) -> Path:
    """`published:<name>` -> its folder, after checking every file against the digest in its provenance."""
    root = Path(root or PUBLISHED)
    name = reference.removeprefix(PREFIX)
    folder = root / name
    if not (folder / PROVENANCE).is_file():
        known = sorted(p.parent.name for p in root.glob(f"*/{PROVENANCE}"))
        raise FileNotFoundError(f"no published checkpoint {name!r}; published: {', '.join(known) or 'none'}")
    files = json.loads((folder / PROVENANCE).read_text())["files"]
    for file, digest in files.items():
        if not (folder / file).is_file() or sha256_file(folder / file) != digest:
            raise ValueError(f"{folder / file}: missing or not the published file (SHA-256 differs from "
                             f"{PROVENANCE}); restore it with git checkout")
    return folder
