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
