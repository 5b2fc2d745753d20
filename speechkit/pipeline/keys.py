"""When a stage's results are current. A stage's key is a digest of what its results depend on: its notebook's code,
its parameters, the training precision this machine gives it, the keys of the stages it reads, the provenance of any
published checkpoint it names, and the source of the speechkit modules its code can import. A change to one paper's
package therefore leaves the other papers' stages current, while a change to the training loop reruns every stage
that trains. The runner records the key in the stage's `stage.json` when it finishes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path

from speechkit.models.published import PREFIX as PUBLISHED_PREFIX
from speechkit.models.published import provenance_record
from speechkit.pipeline.stages import Stage

PACKAGE = Path(__file__).resolve().parents[1]  # the speechkit package (this is pipeline/)
STAGE_FILE = "stage.json"
# IPython magics and shell lines are not Python: they are blanked before parsing a notebook's code
MAGIC = re.compile(r"^\s*[%!].*$", re.MULTILINE)


def module_file(module: str, package: Path = PACKAGE) -> Path | None:
    """The source file of `speechkit.a.b` (a/b.py or a/b/__init__.py), None when it is not a module of the package."""
    parts = module.split(".")
    if parts[0] != package.name:
        return None
    base = package.joinpath(*parts[1:])
    for path in (base.with_suffix(".py") if len(parts) > 1 else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def imported_modules(source: str, package: Path = PACKAGE) -> list[str]:
    """The package's modules `source` can import: the closure of its import statements, function-level ones
    included, with every parent package (importing `speechkit.a.b` runs `speechkit/__init__.py` and
    `speechkit/a/__init__.py`). Read from the code before anything runs, so a run's plan is known up front; it can
    only over-count (an import in a function never called), and the library imports none of its modules by name
    at run time."""
    found: set[str] = set()
    pending = [("", source)]  # (the module's package, for relative imports; its source)
    while pending:
        parent, text = pending.pop()
        for node in ast.walk(ast.parse(MAGIC.sub("", text))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # `from ..core import x` inside speechkit.engine
                    anchor = parent.split(".")[:len(parent.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # `from speechkit.engine import recipes` imports the submodule recipes
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):
                    module = ".".join(parts[:depth])
                    path = module_file(module, package)
                    if path is not None and module not in found:
                        found.add(module)
                        is_package = path.name == "__init__.py"
                        pending.append((module if is_package else module.rpartition(".")[0],
                                        path.read_text(encoding="utf-8")))
    return sorted(found)


def modules_hash(modules: list[str], package: Path = PACKAGE) -> str:
    """SHA-256 of the modules' source, by path relative to the package."""
    digest = hashlib.sha256()
    for module in sorted(modules):
        path = module_file(module, package)
        digest.update(path.relative_to(package).as_posix().encode() + b"\x00" + path.read_bytes() + b"\x00")
    return digest.hexdigest()


def library_hash(stage: Stage, package: Path | None = None) -> str:
    """The digest of the library code `stage`'s notebook can reach."""
    package = package or PACKAGE
    return modules_hash(imported_modules("\n".join(stage.code_cells()), package), package)


def stage_precision(parameters: dict) -> str:
    """The precision the stage's trainings compute in on this machine ("bf16" or "no"): its `mixed_precision`
    parameter where it has one, else "auto" resolved by the hardware (`speechkit.models.device`)."""
    from speechkit.models.device import training_precision  # imports torch: not needed for `--help`
    return training_precision(str(parameters.get("mixed_precision", "auto")))


def stage_key(stage: Stage, parameters: dict, input_keys: dict[str, str], library: str, precision: str) -> str:
    """Notebook code, parameters, the hash of the library code it reaches, the training precision, the keys of the
    stages it reads and the provenance of any published checkpoint it names: numbers computed in another precision
    are another run."""
    # a published checkpoint a parameter names counts by its provenance (its files' digests): republished, it is
    # another input
    published = {value: provenance_record(value) for value in parameters.values()
                 if isinstance(value, str) and value.startswith(PUBLISHED_PREFIX)}
    record = json.dumps({"code": stage.code_hash(), "parameters": parameters, "inputs": input_keys,
                         "library": library, "precision": precision} | ({"published": published} if published else {}),
                        sort_keys=True)
    return hashlib.sha256(record.encode()).hexdigest()


def recorded_key(stage_dir: Path) -> str | None:
    marker = stage_dir / STAGE_FILE
    return json.loads(marker.read_text()).get("key") if marker.is_file() else None


def recorded_seconds(stage_dir: Path) -> float | None:
    """The wall time of the stage's last finished run (params.json, committed with the results; else stage.json)."""
    for name in ("params.json", STAGE_FILE):
        seconds = json.loads((stage_dir / name).read_text()).get("seconds") if (stage_dir / name).is_file() else None
        if seconds is not None:
            return float(seconds)
    return None
