"""What a run leaves to read: each executed notebook as an HTML page, and the profile's `summary.json`, `summary.md`
(claims with verdicts, runs, every measured number) and `claims.png`."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
from pathlib import Path

import nbformat

from speechkit.core.fileio import atomic_path, write_json, write_text
from speechkit.core.results import Metric, format_value, load_metrics
from speechkit.pipeline.claims import verdict_table, verdicts
from speechkit.pipeline.keys import STAGE_FILE

PRECISION_NAMES = {"bf16": "bf16", "no": "float32"}
CLAIMS_PLOT = "claims.png"  # beside summary.md


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


README_BEGIN = ("<!-- measured: generated from results/default/ by `python -m speechkit readme`; a test checks it, do "
                "not edit by hand -->")
README_END = "<!-- measured: end -->"
SPEED_FILE = "speed.json"  # `make speed`, beside summary.json


def measured_section(out_dir: Path) -> str:
    """The README's measured section, from a profile's committed results: the claims with their verdicts, the runs
    (commit, device, wall time) and the speed ratios, each table under the command that produced it."""
    rows = json.loads((out_dir / "summary.json").read_text())
    stages = sorted(p.parent.name for p in out_dir.glob("*/params.json"))
    runs = [json.loads((out_dir / name / "params.json").read_text()) for name in stages]
    folder = out_dir.relative_to(out_dir.parents[1]).as_posix()  # results/<profile>
    lines = [f"Every number of the `{out_dir.name}` profile with its interval, stage by stage: "
             f"[{folder}/summary.md]({folder}/summary.md). Command: `python -m speechkit run --profile {out_dir.name}` "
             f"(`make reproduce`); {wall_time_line(runs)}", "",
             "### Claims", "", *verdict_table(verdicts(rows, out_dir)), "", "### Runs", "",
             *run_header(out_dir, stages)]
    speed = out_dir / SPEED_FILE
    if speed.is_file():
        report = json.loads(speed.read_text())
        lines += ["", f"### Speed (`make speed`: [{folder}/{SPEED_FILE}]({folder}/{SPEED_FILE}), "
                      f"{report['utterances']} source_dev utterances, {report['threads']} thread, {report['device']})",
                  "", "| what | measured | baseline | ratio |", "| --- | --- | --- | --- |",
                  f"| training, utterances/s: length batches vs padding to 30 s | "
                  f"{report['train_utterances_per_second']} | {report['train_padded_30s_utterances_per_second']} | "
                  f"{report['train_speedup']}x |",
                  f"| decoding RTFx: batches vs one at a time | {report['decode_rtfx_batched']} | "
                  f"{report['decode_rtfx_single']} | {report['decode_speedup']}x |",
                  f"| one GRPO step ({report['grpo_prompts']} utterances x {report['grpo_generations']} rollouts) vs "
                  f"one supervised step, seconds | {report['grpo_step_seconds']} | {report['supervised_step_seconds']} "
                  f"| {report['grpo_step_ratio']}x |"]
    return "\n".join(lines)


def wall_time_line(runs: list[dict]) -> str:
    """How long the stages ran, by commit: one total when every stage comes from one clean commit, else the newest
    commit's stages apart from the others (stale stages must not inflate, or hide in, the run's total)."""
    by_commit: dict[str, list[dict]] = {}
    for run in runs:
        by_commit.setdefault(run.get("git_commit", "")[:10], []).append(run)

    def minutes(group: list[dict]) -> float:
        return sum(run.get("seconds") or 0 for run in group) / 60

    if len(by_commit) == 1 and not any(run.get("git_dirty") for run in runs):
        return f"the stages below ran for {minutes(runs):.0f} min in all, from one commit."
    newest = max(by_commit, key=lambda commit: max(run.get("finished", "") for run in by_commit[commit]))
    others = [run for commit, group in by_commit.items() if commit != newest for run in group]
    return (f"the {len(by_commit[newest])} stages of the newest run (commit {newest}) ran for "
            f"{minutes(by_commit[newest]):.0f} min; {len(others)} older stages, from {len(by_commit) - 1} other "
            f"commit(s), ran for {minutes(others):.0f} min.")


def update_readme(readme: Path, out_dir: Path) -> bool:
    """Rewrite the README's generated measured section (between `README_BEGIN` and `README_END`); True if it
    changed."""
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme}: no generated section (the lines {README_BEGIN!r} ... {README_END!r})")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    updated = f"{head}{README_BEGIN}\n{measured_section(out_dir)}\n{README_END}{tail}"
    if updated != text:
        write_text(readme, updated)
    return updated != text
