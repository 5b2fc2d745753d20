"""The headless face of the kit: run the numbered notebooks of a profile in order with papermill
(`python -m speechkit run`, see `speechkit.pipeline.cli`).

Every parameter file is checked against its notebook's `parameters` cell before any notebook starts
(`speechkit.pipeline.stages`). Each stage writes its executed notebook and outputs to `<out>/<profile>/<stage>/`; a
stage whose `stage.json` records its current key (`speechkit.pipeline.keys`: its code, parameters, precision, the
library modules it reaches and the keys of the stages it reads) is skipped. While a stage runs, a line every few
minutes gives its elapsed time and, from its last recorded wall time, what is left. `--from` needs every stage the
chosen ones read recorded with its current key, and a checkpoint another profile writes must exist; a stage after
the data stage starts only when the manifests it names validate, audio included. The run ends with
`<out>/<profile>/summary.json`, `summary.md` and `claims.png` (`speechkit.pipeline.summary`).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from speechkit.core.fileio import write_json
from speechkit.core.results import REPO_ROOT, code_changes, provenance, repo_path
from speechkit.pipeline.keys import STAGE_FILE, library_hash, recorded_key, recorded_seconds, stage_key, stage_precision
from speechkit.pipeline.stages import (NOTEBOOKS, ParameterError, Stage, apply_overrides, declared_parameters,
                                       discover, inputs, select, validate)
from speechkit.pipeline.summary import export_html, write_summary

CHECKPOINT = "checkpoint"  # the folder a training stage saves its model to (`speechkit.engine.recipes.CHECKPOINT`)
HEARTBEAT_SECONDS = 300.0  # how often a running stage reports progress


class StageFailed(RuntimeError):
    pass


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
        log=print, overrides: list[str] = (), heartbeat_seconds: float = HEARTBEAT_SECONDS,
        allow_dirty: bool = False) -> Path:
    """Run the profile's stages; returns the summary path. Raises StageFailed naming the stage, cell and error.
    `overrides` are `STAGE.NAME=VALUE` settings on top of the parameter files (`--set`), validated alike. Results
    go into the repository's own results folder only from a tree without code changes, unless `allow_dirty` (an
    experiment: its runs are marked dirty in summary.md)."""
    import papermill  # imported here: `--help` and parameter errors should not wait for it

    check_clean_tree(Path(out), allow_dirty)
    all_stages = apply_overrides(discover(profile, notebooks), overrides)
    for stage in all_stages:  # validate every stage before running any
        validate(stage)
    chosen = {s.name for s in select(all_stages, first, last)}
    out_dir = Path(out).resolve() / profile
    data_dir = Path(data).resolve() if data else REPO_ROOT / "data_manifests" / profile
    planned, keys, reads = [], {}, {}
    for index, stage in enumerate(all_stages):
        parameters = {**stage.parameters, "profile": profile, "output_dir": str(out_dir / stage.name),
                      "data_dir": str(data_dir)}
        reads[stage.name] = inputs(stage, all_stages[:index])
        keys[stage.name] = stage_key(stage, parameters, {name: keys[name] for name in reads[stage.name]},
                                     library_hash(stage),
                                     stage_precision(parameters))
        planned.append((stage, parameters, keys[stage.name]))

    def rerun(stage: str, of: str = profile, last: str | None = last, into: Path = out_dir.parent) -> str:
        return rerun_command(of, stage.split("_")[0], last, into, data if of == profile else None)

    check_upstream(planned, chosen, reads, out_dir, rerun)
    to_run = [stage.name for stage, _, key in planned
              if stage.name in chosen and (force or recorded_key(out_dir / stage.name) != key)]
    expected = {name: recorded_seconds(out_dir / name) for name in to_run}
    log(plan_line(len(chosen), expected))
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
        left = sum(seconds or 0 for seconds in expected.values())
        log(f"{prefix}: running (elapsed {time.perf_counter() - started:.0f} s"
            + (f"; about {left / 60:.0f} min left in this run, from recorded wall times)" if left else ")"))
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
        expected.pop(stage.name, None)
        log(f"{prefix}: done in {seconds:.0f} s (elapsed {time.perf_counter() - started:.0f} s)")
    summary = write_summary(out_dir, [s.name for s in all_stages])
    log(f"summary: {summary}")
    return summary


def plan_line(chosen: int, expected: dict[str, float | None]) -> str:
    """What a run is about to do: how many of the chosen stages run, and how long they took when last recorded."""
    known = [seconds for seconds in expected.values() if seconds is not None]
    line = f"plan: {len(expected)} of {chosen} chosen stages to run"
    if known:
        line += f", about {sum(known) / 60:.0f} min from their last recorded wall times"
    if len(known) < len(expected):
        line += f" ({len(expected) - len(known)} never recorded: " + ", ".join(
            name for name, seconds in expected.items() if seconds is None) + ")"
    return line


def check_clean_tree(out: Path, allow_dirty: bool) -> None:
    """Committed results come from one commit: a run into the repository's results folder needs a tree without code
    changes (results and benchmarks written by runs do not count), or `allow_dirty`."""
    if allow_dirty or not out.resolve().is_relative_to((REPO_ROOT / "results").resolve()):
        return
    changed = code_changes()
    if changed:
        raise ParameterError(f"the working tree has uncommitted code changes ({', '.join(changed[:5])}"
                             f"{', ...' if len(changed) > 5 else ''}): results in {REPO_ROOT / 'results'} must come "
                             "from one commit. Commit them (or run from a worktree pinned at a commit: git worktree "
                             "add ../run HEAD), or pass --allow-dirty for an experiment (its runs are marked dirty)")


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
