"""The headless face of the kit: run the numbered notebooks of a profile in order with papermill.

    python -m speechkit run --profile default [--from STAGE] [--to STAGE] [--out DIR] [--data DIR] [--force]
    python -m speechkit validate MANIFEST.jsonl [...] [--strict-format]
    python -m speechkit publish STAGE_DIR --as NAME --data DIR

A profile is the set of notebooks that have a parameter file `notebooks/params/<profile>/<stage>.yaml`. Before any
notebook starts, every parameter file is checked against its notebook's `parameters` cell (papermill itself only
warns about unknown names). Each stage writes its executed notebook and outputs to `<out>/<profile>/<stage>/`; a
stage whose `stage.json` records the same key (notebook code, parameters, the library's code, the training
precision this machine gives it, and the keys of the stages it reads: the data stage and any stage a parameter names)
is skipped. While a stage runs, a line every few
minutes gives its elapsed time and, from its last recorded wall time, what is left. `--from` needs every stage the
chosen ones read recorded with its current key, and a checkpoint another profile writes must exist; a stage after
the data stage starts only when the manifests it names validate, audio included. The run ends with
`<out>/<profile>/summary.json`, `summary.md` and `claims.png`.
"""

from __future__ import annotations

import argparse
import ast
import base64
import dataclasses
import hashlib
import io
import json
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

from speechkit.core.fileio import atomic_path, write_json, write_text
from speechkit.core.results import REPO_ROOT, Metric, format_value, load_metrics, provenance, repo_path
from speechkit.models.published import PREFIX as PUBLISHED_PREFIX
from speechkit.models.published import provenance_record, publish
from speechkit.pipeline import transcribe
from speechkit.pipeline.claims import verdict_table, verdicts

NOTEBOOKS = REPO_ROOT / "notebooks"
PROFILES = ("smoke", "default", "full")
# Set by the runner in every notebook; each notebook declares them in its parameters cell.
INJECTED = ("profile", "output_dir", "data_dir")
STAGE_FILE = "stage.json"
NOTEBOOK_KEY = "notebook"  # in a parameter file: the notebook it runs, when not the file's own name
CHECKPOINT = "checkpoint"  # the folder a training stage saves its model to (`speechkit.engine.recipes.CHECKPOINT`)
PACKAGE = Path(__file__).resolve().parents[1]  # the speechkit package, all its subpackages (this is pipeline/)
HEARTBEAT_SECONDS = 300.0  # how often a running stage reports progress
PRECISION_NAMES = {"bf16": "bf16", "no": "float32"}
CLAIMS_PLOT = "claims.png"  # beside summary.md


class ParameterError(ValueError):
    pass


class StageFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Stage:
    name: str                # notebook stem, e.g. "00_data"
    notebook: Path
    parameters: dict

    def code_hash(self) -> str:
        """Hash of the code cells only: editing outputs or markdown does not invalidate results."""
        cells = nbformat.read(self.notebook, as_version=4).cells
        code = "\n\x00".join(cell.source for cell in cells if cell.cell_type == "code")
        return hashlib.sha256(code.encode()).hexdigest()


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


def library_hash(package: Path = PACKAGE) -> str:
    """SHA-256 of the library's source (every .py file, by relative path): a change to the library reruns every
    stage, since any notebook may call the changed code."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\x00" + path.read_bytes() + b"\x00")
    return digest.hexdigest()


def stage_precision(parameters: dict) -> str:
    """The precision the stage's trainings compute in on this machine ("bf16" or "no"): its `mixed_precision`
    parameter where it has one, else "auto" resolved by the hardware (`speechkit.models.device`)."""
    from speechkit.models.device import training_precision  # imports torch: not needed for `--help`
    return training_precision(str(parameters.get("mixed_precision", "auto")))


def stage_key(stage: Stage, parameters: dict, input_keys: dict[str, str], library: str, precision: str) -> str:
    """Notebook code, parameters, the library's hash, the training precision, the keys of the stages it reads and the
    provenance of any published checkpoint it names: editing one paper's notebook leaves another paper's stages
    current, and numbers computed in another precision are another run."""
    # a published checkpoint a parameter names counts by its provenance (its files' digests): republished, it is
    # another input
    published = {value: provenance_record(value) for value in parameters.values()
                 if isinstance(value, str) and value.startswith(PUBLISHED_PREFIX)}
    record = json.dumps({"code": stage.code_hash(), "parameters": parameters, "inputs": input_keys,
                         "library": library, "precision": precision} | ({"published": published} if published else {}),
                        sort_keys=True)
    return hashlib.sha256(record.encode()).hexdigest()


def progress_line(prefix: str, elapsed: float, previous: float | None) -> str:
    """`elapsed` seconds into a stage whose last run took `previous` seconds (None: never recorded)."""
    line = f"{prefix}: still running, {elapsed / 60:.1f} min"
    if previous:
        left = previous - elapsed
        line += f" (last run {previous / 60:.1f} min: " + (f"about {left / 60:.0f} min left)" if left > 0
                                                            else "longer than then)")
    return line


@contextmanager
def heartbeat(prefix: str, previous: float | None, log: Callable[[str], None],
              every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Log `progress_line` every `every` seconds while the block runs (papermill blocks until a notebook ends)."""
    stop, started = threading.Event(), time.perf_counter()

    def beat():
        while not stop.wait(every):
            log(progress_line(prefix, time.perf_counter() - started, previous))

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run(profile: str, first: str | None = None, last: str | None = None, out: str | Path = "results",
        data: str | Path | None = None, force: bool = False, notebooks: Path = NOTEBOOKS,
        log=print, overrides: list[str] = (), heartbeat_seconds: float = HEARTBEAT_SECONDS) -> Path:
    """Run the profile's stages; returns the summary path. Raises StageFailed naming the stage, cell and error.
    `overrides` are `STAGE.NAME=VALUE` settings on top of the parameter files (`--set`), validated alike."""
    import papermill  # imported here: `--help` and parameter errors should not wait for it

    all_stages = apply_overrides(discover(profile, notebooks), overrides)
    for stage in all_stages:  # validate every stage before running any
        validate(stage)
    chosen = {s.name for s in select(all_stages, first, last)}
    out_dir = Path(out).resolve() / profile
    data_dir = Path(data).resolve() if data else REPO_ROOT / "data_manifests" / profile
    planned, keys, reads, library = [], {}, {}, library_hash()
    for index, stage in enumerate(all_stages):
        parameters = {**stage.parameters, "profile": profile, "output_dir": str(out_dir / stage.name),
                      "data_dir": str(data_dir)}
        reads[stage.name] = inputs(stage, all_stages[:index])
        keys[stage.name] = stage_key(stage, parameters, {name: keys[name] for name in reads[stage.name]}, library,
                                     stage_precision(parameters))
        planned.append((stage, parameters, keys[stage.name]))

    def rerun(stage: str, of: str = profile, last: str | None = last, into: Path = out_dir.parent) -> str:
        return rerun_command(of, stage.split("_")[0], last, into, data if of == profile else None)

    check_upstream(planned, chosen, reads, out_dir, rerun)
    started = time.perf_counter()
    validated: dict[Path, list[str]] = {}  # manifests checked in this run, with their problems
    for number, (stage, parameters, key) in enumerate(planned, start=1):
        if stage.name not in chosen:
            continue
        stage_dir = out_dir / stage.name
        prefix = f"[{number}/{len(all_stages)}] {stage.name}"
        marker = stage_dir / STAGE_FILE
        if not force and recorded_key(stage_dir) == key:
            log(f"{prefix}: outputs exist for these parameters, skipped (--force reruns)")
            continue
        if number > 1:  # the first stage writes the benchmark: its manifests do not exist before it runs
            check_data(stage, parameters, data_dir, validated)
        log(f"{prefix}: running (elapsed {time.perf_counter() - started:.0f} s)")
        marker.unlink(missing_ok=True)  # a failed rerun must not look finished
        stage_dir.mkdir(parents=True, exist_ok=True)
        executed = stage_dir / f"{stage.name}.ipynb"
        partial = stage_dir / f".{stage.name}.running.ipynb"
        stage_started = time.perf_counter()
        try:
            with heartbeat(prefix, recorded_seconds(stage_dir), log, heartbeat_seconds):
                papermill.execute_notebook(str(stage.notebook), str(partial), parameters=parameters,
                                           kernel_name="python3", cwd=str(REPO_ROOT), progress_bar=False,
                                           log_output=False)
        except papermill.PapermillExecutionError as error:
            failed = stage_dir / f"{stage.name}.failed.ipynb"
            os.replace(partial, failed)
            raise StageFailed(f"stage {stage.name} failed in cell {error.cell_index} (execution count "
                              f"{error.exec_count}): {error.ename}: {error.evalue}\n"
                              f"the executed notebook is kept at {failed}") from None
        os.replace(partial, executed)
        export_html(executed)
        (stage_dir / f"{stage.name}.failed.ipynb").unlink(missing_ok=True)  # an earlier failure is now stale
        seconds = time.perf_counter() - stage_started
        # the wall time goes into params.json too: it is committed with the results (stage.json is not)
        timing = {"seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(stage_dir / "params.json", {"stage": stage.name, "parameters": parameters, **provenance(),
                                               "precision": stage_precision(parameters), **timing})
        write_json(marker, {"key": key, **timing})
        log(f"{prefix}: done in {seconds:.0f} s (elapsed {time.perf_counter() - started:.0f} s)")
    summary = write_summary(out_dir, [s.name for s in all_stages])
    log(f"summary: {summary}")
    return summary


def export_html(notebook: Path) -> Path:
    """The executed notebook as HTML beside it (`<stage>.html`): every table, plot and sample readable in a browser
    or on the repository's web view without running anything. Progress-bar redraws are dropped and embedded WAV
    samples re-encoded as Ogg Vorbis (about a tenth of the size), so the published pages stay small."""
    from nbconvert import HTMLExporter  # imported here: `run --help` should not wait for it

    executed = nbformat.read(notebook, as_version=4)
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and "\r" in output.get("text", ""):
                output["text"] = "\n".join(line.rsplit("\r", 1)[-1] for line in output["text"].split("\n"))
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(executed)
    html = notebook.with_suffix(".html")
    write_text(html, re.sub(r"data:audio/wav;base64,([A-Za-z0-9+/=]+)", _ogg_uri, body))
    return html


def _ogg_uri(match: re.Match) -> str:
    import soundfile as sf

    audio, rate = sf.read(io.BytesIO(base64.b64decode(match.group(1))), dtype="float32")
    encoded = io.BytesIO()
    sf.write(encoded, audio, rate, format="OGG", subtype="VORBIS")
    return "data:audio/ogg;base64," + base64.b64encode(encoded.getvalue()).decode("ascii")


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


def rerun_command(profile: str, first: str, last: str | None, out: Path, data: str | Path | None) -> str:
    """The command line that runs `profile` from stage `first` into results folder `out`."""
    command = f"python -m speechkit run --profile {profile} --from {first}" + (f" --to {last}" if last else "")
    if out.resolve() != (REPO_ROOT / "results").resolve():
        command += f" --out {out}"
    return command + (f" --data {data}" if data else "")


def check_upstream(planned: list[tuple[Stage, dict, str]], chosen: set[str], reads: dict[str, list[str]],
                   out_dir: Path, rerun: Callable[..., str]) -> None:
    """Before any stage runs: every stage a chosen stage reads (directly or through another) that is not itself
    chosen finished with its current key (it feeds the chosen stages' keys, and its outputs are what they read), and
    every checkpoint a chosen stage names by path (`<out>/<profile>/<stage>/checkpoint`) exists."""
    needed, pending = set(), list(chosen)
    while pending:
        for name in reads.get(pending.pop(), []):
            if name not in needed:
                needed.add(name)
                pending.append(name)
    for stage, _, key in planned:
        if stage.name in chosen or stage.name not in needed:
            continue
        recorded = recorded_key(out_dir / stage.name)
        if recorded != key:
            state = "has not run" if recorded is None else "ran with other code or parameters"
            raise ParameterError(f"stage {stage.name} {state} (no current {STAGE_FILE} in "
                                 f"{out_dir / stage.name}); run stage {stage.name} first: {rerun(stage.name)}")
    for stage, parameters, _ in planned:
        if stage.name not in chosen:
            continue
        for name, value in parameters.items():
            producer = checkpoint_producer(value)
            if producer and not repo_path(value).exists():
                of, writer = producer
                command = rerun(writer, of, writer.split("_")[0], repo_path(value).parents[2])
                raise ParameterError(f"{stage.name}: {name} {value} does not exist; stage {writer} of profile {of} "
                                     f"writes it: {command}")


def checkpoint_producer(value: object) -> tuple[str, str] | None:
    """(profile, stage) when `value` is a path to a stage's checkpoint, `<out>/<profile>/<NN_stage>/checkpoint`."""
    if not isinstance(value, str) or not value.endswith(CHECKPOINT):
        return None
    parts = Path(value).parts
    if len(parts) < 3 or parts[-1] != CHECKPOINT or not re.fullmatch(r"\d\d_\w+", parts[-2]):
        return None
    return parts[-3], parts[-2]


def check_data(stage: Stage, parameters: dict, data_dir: Path, validated: dict[Path, list[str]]) -> None:
    """The manifests a stage names (its `*manifest` parameters, a name, and `*manifests` parameters, a list of names:
    files in the data folder) must validate, audio samples included, before the stage touches them; each is checked
    once per run."""
    from speechkit.data.manifest import check_manifest  # imported here: `run --help` should not wait for it

    values = {**declared_parameters(stage.notebook), **parameters}
    paths = [data_dir / f"{name}.jsonl" for key, value in values.items() if re.search(r"manifests?$", key)
             for name in ([value] if isinstance(value, str) else value)]
    for path in paths:
        if path not in validated:
            validated[path] = [str(problem) for problem in check_manifest(path)]
    problems = [line for path in dict.fromkeys(paths) for line in validated[path]]
    if problems:
        raise StageFailed(f"{stage.name}: invalid data, the stage was not started:\n  " + "\n  ".join(problems))


def validate_data(paths: list[str], strict_format: bool = False) -> int:
    """`python -m speechkit validate`: one line per problem on stdout, warnings on stderr; 1 if any problem."""
    from speechkit.data.manifest import check_manifest

    problems = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in paths:
            for problem in check_manifest(path, strict_format):
                print(problem)
                problems += 1
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(f"{len(paths)} manifest(s), {problems} problem(s)", file=sys.stderr)
    return 1 if problems else 0


def write_claims_plot(judged: list, path: Path) -> None:
    """The verdicts as a figure (`display.plot_claims`), written atomically."""
    import matplotlib.pyplot as plt  # imported here: `run --help` should not wait for it

    from speechkit.ui.display import plot_claims

    figure = plot_claims(judged)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def write_summary(out_dir: Path, stage_names: list[str]) -> Path:
    """`summary.json` and `summary.md`: one row per metric of every stage that has written its metrics, in stage
    order (committed results count too: a clone has their metrics but not the runner's skip markers)."""
    rows = []
    for name in stage_names:
        rows += [{"stage": name, **dataclasses.asdict(m)} for m in load_metrics(out_dir / name)]
    write_json(out_dir / "summary.json", rows)
    judged = verdicts(rows, out_dir)
    write_claims_plot(judged, out_dir / CLAIMS_PLOT)
    lines = [f"# Results: profile `{out_dir.name}`", "", "## Claims", "",
             "Each paper's claim the kit measures (`speechkit.pipeline.claims`), read against a paired difference on "
             "the same utterances: **system minus baseline**, so a negative WER difference means the system is better. "
             "Reproduced: the 95% interval excludes zero in the claimed direction; not reproduced: it excludes zero "
             "the other way; inconclusive: it includes zero.", "", *verdict_table(judged), "",
             f"![measured differences beside the papers' ({CLAIMS_PLOT})]({CLAIMS_PLOT})", "",
             "## Runs", "", *run_header(out_dir, stage_names), "", "## Every measured number", "",
             "Rates in %, with 95% bootstrap confidence intervals in brackets where they apply; a paper's claim is "
             "given once, on the first row it concerns.", "",
             "| stage | metric | value [95% CI] | paper's claim |", "| --- | --- | --- | --- |"]
    previous = None
    for row in rows:
        metric = Metric(**{k: v for k, v in row.items() if k != "stage"})
        claim = row["claim"] if row["claim"] and (row["stage"], row["claim"]) != previous else ""
        previous = (row["stage"], row["claim"])
        lines.append(f"| {row['stage']} | {row['name']} | {format_value(metric)} | {claim} |")
    write_text(out_dir / "summary.md", "\n".join(lines) + "\n")
    return out_dir / "summary.md"


def run_header(out_dir: Path, stage_names: list[str]) -> list[str]:
    """One row per stage that has results: its commit (and whether the tree was dirty), when it finished, device,
    threads, training precision and wall time (from `params.json` and the runner's `stage.json`)."""
    lines = ["| stage | commit | dirty | finished | device | threads | precision | wall time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in stage_names:
        params, marker = out_dir / name / "params.json", out_dir / name / STAGE_FILE
        if not params.is_file():
            continue
        run = json.loads(params.read_text())
        timing = {**(json.loads(marker.read_text()) if marker.is_file() else {}), **run}  # params.json first
        seconds = timing.get("seconds")
        lines.append(f"| {name} | {run.get('git_commit', '')[:10]} | {'yes' if run.get('git_dirty') else 'no'} | "
                     f"{timing.get('finished', '-')} | {run.get('device', '')} | {run.get('threads', '-')} | "
                     f"{PRECISION_NAMES.get(run.get('precision'), '-')} | "
                     f"{'-' if seconds is None else f'{seconds / 60:.1f} min'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speechkit", description="speechkit pipeline runner")
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="execute the notebooks of a profile in order")
    runner.add_argument("--profile", required=True, help=f"one of {', '.join(PROFILES)} (any folder in "
                                                         f"notebooks/params)")
    runner.add_argument("--from", dest="first", help="first stage to run (name or number)")
    runner.add_argument("--to", dest="last", help="last stage to run (name or number)")
    runner.add_argument("--out", default="results", help="results folder (default: results)")
    runner.add_argument("--data", help="benchmark folder (default: data_manifests/<profile>)")
    runner.add_argument("--force", action="store_true", help="rerun stages whose outputs exist")
    runner.add_argument("--set", dest="overrides", action="append", default=[], metavar="STAGE.NAME=VALUE",
                        help="override a parameter (repeatable), e.g. --set 12_stage3_lora.max_steps=100")
    checker = commands.add_parser("validate", help="check manifests and their audio; one line per problem")
    checker.add_argument("manifests", nargs="+", help="manifest files (utterances, conversations or N-best lists)")
    checker.add_argument("--strict-format", action="store_true", help="require 16 kHz mono audio")
    transcribe.add_arguments(commands.add_parser("transcribe", help="timed transcripts of recordings of any length"))
    publisher = commands.add_parser("publish", help="publish a finished speech-LLM stage as published:NAME")
    publisher.add_argument("stage", help="the stage's results folder, e.g. results/pretrain/10_stage1_projector")
    publisher.add_argument("--as", dest="name", required=True, help="the name parameter files use, e.g. stage1")
    publisher.add_argument("--data", required=True, help="the benchmark folder it trained on (its seed and digest)")
    args = parser.parse_args(argv)
    if args.command == "publish":
        try:
            folder = publish(repo_path(args.stage), args.name, repo_path(args.data),
                             "python -m speechkit " + " ".join(sys.argv[1:] if argv is None else argv))
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"published {args.stage} as {PUBLISHED_PREFIX}{args.name}: {folder}")
        return 0
    if args.command == "validate":
        return validate_data(args.manifests, args.strict_format)
    if args.command == "transcribe":
        return transcribe.main(args)
    try:
        run(args.profile, args.first, args.last, args.out, args.data, args.force, overrides=args.overrides)
    except (ParameterError, StageFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ParameterError) else 1
    return 0
