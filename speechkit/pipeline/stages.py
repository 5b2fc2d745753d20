"""A profile's stages: the notebooks that have a parameter file `notebooks/params/<profile>/<stage>.yaml`, their
parameter files read and checked against each notebook's `parameters` cell (papermill itself only warns about unknown
names), `--set` overrides, and which earlier stages each one reads."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

from speechkit.core.results import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
PROFILES = ("smoke", "default", "full")
# Set by the runner in every notebook; each notebook declares them in its parameters cell.
INJECTED = ("profile", "output_dir", "data_dir")
NOTEBOOK_KEY = "notebook"  # in a parameter file: the notebook it runs, when not the file's own name


class ParameterError(ValueError):
    pass


@dataclass(frozen=True)
class Stage:
    name: str                # notebook stem, e.g. "00_data"
    notebook: Path
    parameters: dict

    def code_cells(self) -> list[str]:
        """The notebook's code cells, in order (outputs and markdown are not code)."""
        return [cell.source for cell in nbformat.read(self.notebook, as_version=4).cells if cell.cell_type == "code"]

    def code_hash(self) -> str:
        """Hash of the code cells only: editing outputs or markdown does not invalidate results."""
        return hashlib.sha256("\n\x00".join(self.code_cells()).encode()).hexdigest()


def discover(profile: str, notebooks: Path = NOTEBOOKS) -> list[Stage]:
    """The stages of `profile`, in notebook order, with their parameter files loaded (not yet validated)."""
    params_dir = notebooks / "params" / profile
    if not params_dir.is_dir():
        known = sorted(p.name for p in (notebooks / "params").iterdir() if p.is_dir())
        raise ParameterError(f"unknown profile {profile!r}; known profiles: {', '.join(known)}")
    stages = []
    for path in sorted(params_dir.glob("*.yaml")):
        try:
            parameters = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ParameterError(f"{path}: not valid YAML: {error}") from error
        if not isinstance(parameters, dict):
            raise ParameterError(f"{path}: expected a mapping of parameter names to values")
        # `notebook: 20_rehear` runs another stage's notebook again (pseudo-label round k is `round: k`)
        notebook = notebooks / f"{parameters.pop(NOTEBOOK_KEY, path.stem)}.ipynb"
        if not notebook.is_file():
            raise ParameterError(f"{path}: no notebook {notebook.name} for this parameter file")
        stages.append(Stage(path.stem, notebook, parameters))
    if not stages:
        raise ParameterError(f"profile {profile!r} has no parameter files in {params_dir}")
    return stages


def declared_parameters(notebook: Path) -> dict[str, object]:
    """Names and default values of the notebook's `parameters` cell (which must hold plain literals)."""
    cells = [c for c in nbformat.read(notebook, as_version=4).cells
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{notebook.name}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ParameterError(f"{notebook.name}: the parameters cell may only assign literals to names "
                                 f"(line {node.lineno})")
        try:
            defaults[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as error:
            raise ParameterError(f"{notebook.name}: parameter {node.targets[0].id!r} is not a literal") from error
    missing = [name for name in INJECTED if name not in defaults]
    if missing:
        raise ParameterError(f"{notebook.name}: the parameters cell must declare {', '.join(missing)}")
    return defaults


def validate(stage: Stage) -> None:
    """Unknown names and values whose type differs from the declared default are errors (int is accepted as float)."""
    defaults = declared_parameters(stage.notebook)
    problems = []
    for name, value in stage.parameters.items():
        if name in INJECTED:
            problems.append(f"{name!r} is set by the runner, not by parameter files")
        elif name not in defaults:
            close = [d for d in defaults if d.lower().replace("_", "") == name.lower().replace("_", "")]
            problems.append(f"unknown parameter {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        elif not _same_type(defaults[name], value):
            hint = " (a YAML list: [a, b])" if isinstance(defaults[name], list) and isinstance(value, str) else ""
            problems.append(f"{name!r} should be {type(defaults[name]).__name__} like its default "
                            f"{defaults[name]!r}, got {value!r}{hint}")
    if problems:
        raise ParameterError(f"{stage.name}: " + "; ".join(problems))


def _same_type(default: object, value: object) -> bool:
    if default is None:
        return True
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return True
    if isinstance(default, list) and isinstance(value, list) and default:
        # items like the default's: beam sizes [8, 10], not ["8", "10"]
        return all(_same_type(default[0], item) for item in value)
    return type(default) is type(value)


def apply_overrides(stages: list[Stage], overrides: list[str]) -> list[Stage]:
    """Stages with `STAGE.NAME=VALUE` settings applied (STAGE by name or number; VALUE read as YAML: 100, 1e-3,
    [a, b], text). They enter the stage's key, so a stage reruns when an override changes it."""
    stages = list(stages)
    for override in overrides:
        target, separator, text = override.partition("=")
        stage_name, dot, name = target.partition(".")
        if not separator or not dot or not name:
            raise ParameterError(f"--set {override!r}: expected STAGE.NAME=VALUE, e.g. 12_stage3_lora.max_steps=100")
        index = select(stages, stage_name, stage_name)[0]
        position = stages.index(index)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ParameterError(f"--set {override!r}: the value is not valid YAML: {error}") from error
        if isinstance(value, str):  # YAML 1.1 reads 2e-3 as text; a command line means the number
            try:
                value = float(value)
            except ValueError:
                pass
        stages[position] = dataclasses.replace(index, parameters={**index.parameters, name: value})
    return stages


def select(stages: list[Stage], first: str | None, last: str | None) -> list[Stage]:
    """Stages from `first` to `last` inclusive; a stage may be named by its stem or its number (e.g. "00")."""
    def index(name: str) -> int:
        matches = [i for i, s in enumerate(stages) if name in (s.name, s.name.split("_")[0])]
        if not matches:
            raise ParameterError(f"no stage {name!r}; stages: {', '.join(s.name for s in stages)}")
        return matches[0]
    start = index(first) if first else 0
    stop = index(last) if last else len(stages) - 1
    if start > stop:
        raise ParameterError(f"--from {first} comes after --to {last}")
    return stages[start:stop + 1]


def inputs(stage: Stage, earlier: list[Stage]) -> list[str]:
    """The earlier stages `stage` reads: the first stage (the benchmark every stage reads) and each stage a parameter
    names (`init: 12_stage3_lora`, `routing: 41_routing`; the notebook's defaults count too)."""
    names = {s.name for s in earlier}
    values = {**declared_parameters(stage.notebook), **stage.parameters}.values()
    named = [v for v in values if isinstance(v, str) and v in names]
    return list(dict.fromkeys(([earlier[0].name] if earlier else []) + named))
