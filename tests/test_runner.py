import dataclasses
import json
import shutil

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from speechkit.pipeline import keys
from speechkit.pipeline.cli import main
from speechkit.pipeline.runner import StageFailed, progress_line, run
from speechkit.pipeline.stages import ParameterError, discover

PARAMETERS = 'profile = "smoke"\noutput_dir = ""\ndata_dir = ""\nvalue = 1.0\nfail = False\n'
BODY = """
from speechkit.core.results import Metric, save_metrics
if fail:
    raise RuntimeError("planned failure")
save_metrics(output_dir, [Metric("value", value * 0.01, ci_low=0.0, ci_high=0.02, unit="rate", claim="about 1%")])
"""


def make_notebook(path, parameters=PARAMETERS, tagged=True, body=BODY):
    cells = [new_code_cell(parameters, metadata={"tags": ["parameters"]} if tagged else {}), new_code_cell(body)]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}, "language_info": {"name": "python"}})
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path):
    notebooks = tmp_path / "notebooks"
    (notebooks / "params" / "smoke").mkdir(parents=True)
    for stage in ("00_first", "01_second"):
        make_notebook(notebooks / f"{stage}.ipynb")
        (notebooks / "params" / "smoke" / f"{stage}.yaml").write_text("value: 2.0\n")
    return notebooks, tmp_path / "results"


def go(project, logs=None, **kwargs):
    notebooks, out = project
    return run("smoke", out=out, data=out.parent / "data", notebooks=notebooks,
               log=(logs.append if logs is not None else lambda _: None), **kwargs)


@pytest.mark.parametrize("yaml_text, message", [
    ("valeu: 2.0\n", "unknown parameter 'valeu'"),
    ("Value: 2.0\n", "did you mean 'value'"),
    ("value: two\n", "'value' should be float like its default 1.0, got 'two'"),
    ("fail: 1\n", "'fail' should be bool"),
    ("output_dir: /tmp/x\n", "'output_dir' is set by the runner"),
    ("value: [1\n", "not valid YAML"),
])
def test_bad_parameters_fail_before_any_notebook_runs(project, yaml_text, message):
    notebooks, out = project
    (notebooks / "params" / "smoke" / "01_second.yaml").write_text(yaml_text)
    with pytest.raises(ParameterError, match=message):
        go(project)
    assert not out.exists()


def test_notebook_without_declared_parameters_cell_is_rejected(project):
    notebooks, out = project
    make_notebook(notebooks / "01_second.ipynb", tagged=False)
    with pytest.raises(ParameterError, match="exactly one cell tagged 'parameters', found 0"):
        go(project)
    make_notebook(notebooks / "01_second.ipynb", parameters="profile = 'smoke'\nvalue = 1.0\n")
    with pytest.raises(ParameterError, match="must declare output_dir, data_dir"):
        go(project)


def test_unknown_profile_and_stage(project):
    notebooks, out = project
    with pytest.raises(ParameterError, match="unknown profile 'smok'; known profiles: smoke"):
        run("smok", out=out, notebooks=notebooks)
    with pytest.raises(ParameterError, match="no stage '07'"):
        go(project, first="07")


def test_run_skip_force_and_summary(project):
    notebooks, out = project
    logs = []
    summary = go(project, logs)
    stage_dir = out / "smoke" / "00_first"
    assert (stage_dir / "00_first.ipynb").is_file() and (stage_dir / "params.json").is_file()
    assert json.loads((stage_dir / "params.json").read_text())["parameters"]["value"] == 2.0
    rows = json.loads((out / "smoke" / "summary.json").read_text())
    assert [(r["stage"], r["name"], r["value"]) for r in rows] == [("00_first", "value", 0.02),
                                                                   ("01_second", "value", 0.02)]
    assert "| 00_first | value | 2.00% [0.00, 2.00] | about 1% |" in summary.read_text()
    assert "](claims.png)" in summary.read_text() and (out / "smoke" / "claims.png").stat().st_size > 1000
    assert any("[1/2] 00_first: running" in line for line in logs)

    assert logs[0] == "plan: 2 of 2 chosen stages to run (2 never recorded: 00_first, 01_second)"
    logs.clear()
    go(project, logs)
    assert sum("skipped" in line for line in logs) == 2 and logs[0] == "plan: 0 of 2 chosen stages to run"

    logs.clear()
    go(project, logs, force=True, first="01")
    assert any("01_second: running" in line for line in logs) and not any("00_first" in line for line in logs)
    seconds = json.loads((out / "smoke" / "01_second" / "params.json").read_text())["seconds"]
    assert logs[0] == (f"plan: 1 of 1 chosen stages to run, about {seconds / 60:.0f} min from their last recorded "
                       "wall times")

    # new parameters for the first stage invalidate it and every stage after it
    (notebooks / "params" / "smoke" / "00_first.yaml").write_text("value: 3.0\n")
    logs.clear()
    go(project, logs)
    assert sum("running" in line for line in logs) == 2


def test_failure_names_stage_cell_and_error_and_keeps_earlier_results(project):
    notebooks, out = project
    (notebooks / "params" / "smoke" / "01_second.yaml").write_text("fail: true\n")
    with pytest.raises(StageFailed, match=r"stage 01_second failed in cell \d+ .*RuntimeError: planned failure"):
        go(project)
    assert (out / "smoke" / "00_first" / "stage.json").is_file()
    assert (out / "smoke" / "00_first" / "metrics.json").is_file()
    assert (out / "smoke" / "01_second" / "01_second.failed.ipynb").is_file()
    assert not (out / "smoke" / "01_second" / "stage.json").exists()
    assert not list((out / "smoke").rglob(".*.tmp"))
    (notebooks / "params" / "smoke" / "01_second.yaml").write_text("fail: false\n")
    go(project)  # fixed: the stage runs, the stale failed notebook goes
    assert (out / "smoke" / "01_second" / "stage.json").is_file()
    assert not (out / "smoke" / "01_second" / "01_second.failed.ipynb").exists()


def test_command_line_reports_parameter_errors(project, capsys):
    notebooks, out = project
    (notebooks / "params" / "smoke" / "00_first.yaml").write_text("valeu: 1\n")
    code = main(["run", "--profile", "nonexistent", "--out", str(out)])
    assert code == 2 and "unknown profile 'nonexistent'" in capsys.readouterr().err


def test_from_refuses_when_an_earlier_stage_has_no_current_results(project):
    notebooks, out = project
    command = f"python -m speechkit run --profile smoke --from 00 --out {out} --data {out.parent / 'data'}"
    with pytest.raises(ParameterError, match=f"stage 00_first has not run .*; run stage 00_first first: {command}$"):
        go(project, first="01")
    assert not (out / "smoke" / "01_second").exists()
    go(project)
    (notebooks / "params" / "smoke" / "00_first.yaml").write_text("value: 3.0\n")  # 00 is now stale
    with pytest.raises(ParameterError, match="stage 00_first ran with other code or parameters .*run stage 00_first"):
        go(project, first="01", last="01")
    # the real profile: same check, before any run
    assert main(["run", "--profile", "smoke", "--from", "01", "--out", str(out / "real")]) == 2


def test_a_missing_upstream_checkpoint_names_the_stage_that_produces_it(project):
    notebooks, out = project
    make_notebook(notebooks / "01_second.ipynb", parameters=PARAMETERS + 'init = ""\n')
    checkpoint = out.parent / "elsewhere" / "pretrain" / "01_stand_in" / "checkpoint"
    (notebooks / "params" / "smoke" / "01_second.yaml").write_text(f"init: {checkpoint}\n")
    with pytest.raises(ParameterError, match=f"01_second: init {checkpoint} does not exist; stage 01_stand_in of "
                                             f"profile pretrain writes it: python -m speechkit run --profile "
                                             f"pretrain --from 01 --to 01 --out {checkpoint.parents[2]}$"):
        go(project)
    assert not out.exists()  # refused before any stage ran
    checkpoint.mkdir(parents=True)
    go(project)


def test_a_stage_does_not_start_on_invalid_data(project):
    notebooks, out = project
    # the data stage writes the manifests it names: they are not checked before it runs
    make_notebook(notebooks / "00_first.ipynb", parameters=PARAMETERS + 'calibration_manifests = ["a_test"]\n')
    make_notebook(notebooks / "01_second.ipynb",
                  parameters=PARAMETERS + 'train_manifests = ["a", "b"]\ntest_manifest = "c"\n')
    data = out.parent / "data"
    data.mkdir()
    (data / "a.jsonl").write_text(json.dumps({"id": "u1", "audio": "gone.wav", "duration": 1.0, "language": "en",
                                              "speaker": "s", "domain": "d", "split": "train", "text": "hi"}) + "\n")
    (data / "b.jsonl").write_text("")
    reason = r"(?s)01_second: invalid data.*a\.jsonl:1: field 'audio': audio file not found.*c\.jsonl.*not found"
    with pytest.raises(StageFailed, match=reason):
        go(project)
    assert (out / "smoke" / "00_first" / "stage.json").is_file() and not (out / "smoke" / "01_second").exists()


def test_an_executed_notebook_is_published_as_small_html(tmp_path):
    import base64

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from speechkit.data.audio import wav_bytes
    from speechkit.pipeline.summary import export_html

    wav = base64.b64encode(wav_bytes(np.zeros(16_000, np.float32) + 0.01)).decode()
    cell = new_code_cell("x", outputs=[
        new_output("stream", name="stdout", text="training:  10%\rtraining:  50%\rtraining: 100%\ndone\n"),
        new_output("display_data", data={"text/html": f'<audio src="data:audio/wav;base64,{wav}"></audio>'})])
    notebook = tmp_path / "10_stage.ipynb"
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    nbformat.write(new_notebook(cells=[cell], metadata=kernel), notebook)
    html = export_html(notebook).read_text()
    assert "training: 100%" in html and "training:  10%" not in html
    assert "data:audio/ogg;base64," in html and "audio/wav" not in html


def test_set_overrides_a_parameter_through_the_validator():
    from speechkit.pipeline.stages import ParameterError, apply_overrides, discover, validate

    stages = apply_overrides(discover("smoke"), ["12_stage3_lora.max_steps=3", "10.learning_rate=2e-3"])
    by_name = {s.name: s for s in stages}
    assert by_name["12_stage3_lora"].parameters["max_steps"] == 3
    assert by_name["10_stage1_projector"].parameters["learning_rate"] == 0.002
    for stage in stages:
        validate(stage)
    with pytest.raises(ParameterError, match="should be int"):
        validate(next(s for s in apply_overrides(stages, ["12.max_steps=many"]) if s.name == "12_stage3_lora"))
    with pytest.raises(ParameterError, match="unknown parameter 'max_stepz'"):
        validate(next(s for s in apply_overrides(stages, ["12.max_stepz=1"]) if s.name == "12_stage3_lora"))
    with pytest.raises(ParameterError, match="STAGE.NAME=VALUE"):
        apply_overrides(stages, ["max_steps=1"])


def test_a_list_parameter_takes_a_yaml_list_of_items_like_its_default():
    from speechkit.pipeline.stages import apply_overrides, discover, validate

    def stage(*overrides):
        return next(s for s in apply_overrides(discover("smoke"), list(overrides)) if s.name == "12_stage3_lora")

    chosen = stage("12_stage3_lora.test_manifests=[source_test]", "12.eval_manifests=[source_dev, medical_dev]")
    validate(chosen)
    assert chosen.parameters["test_manifests"] == ["source_test"]
    assert chosen.parameters["eval_manifests"] == ["source_dev", "medical_dev"]
    with pytest.raises(ParameterError, match=r"'test_manifests' should be list like its default \[\], got "
                                             r"'source_test,medical_test' \(a YAML list"):
        validate(stage("12.test_manifests=source_test,medical_test"))
    with pytest.raises(ParameterError, match="'eval_manifests' should be list"):  # items like the default's
        validate(stage("12.eval_manifests=[1, 2]"))
    decoding = next(s for s in apply_overrides(discover("smoke"), ["13.beam_sizes=[8, 10]"]) if s.name.startswith("13"))
    validate(decoding)
    with pytest.raises(ParameterError, match="'beam_sizes' should be list"):
        validate(dataclasses.replace(decoding, parameters={"beam_sizes": ["8", "10"]}))


def test_a_stage_key_follows_the_stages_it_reads_and_a_notebook_can_run_again(project):
    """02 reads 00 only (the data stage): changing 01 leaves it current; 03 reruns 02's notebook (round 2), reads 02
    through its parameter, and goes stale with it."""
    notebooks, out = project
    reader = PARAMETERS + 'previous = ""\n'
    make_notebook(notebooks / "02_reader.ipynb", parameters=reader)
    (notebooks / "params" / "smoke" / "02_reader.yaml").write_text("value: 2.0\n")
    (notebooks / "params" / "smoke" / "03_reader_again.yaml").write_text(
        "notebook: 02_reader\nvalue: 4.0\nprevious: 02_reader\n")
    logs = []
    go(project, logs)
    rows = json.loads((out / "smoke" / "summary.json").read_text())
    assert ("03_reader_again", "value", 0.04) in [(r["stage"], r["name"], r["value"]) for r in rows]
    (notebooks / "params" / "smoke" / "01_second.yaml").write_text("value: 3.0\n")
    logs.clear()
    go(project, logs)
    assert [line.split(":")[0] for line in logs if "running" in line] == ["[2/4] 01_second"]
    (notebooks / "params" / "smoke" / "02_reader.yaml").write_text("value: 5.0\n")
    logs.clear()
    go(project, logs)
    assert [line.split(":")[0] for line in logs if "running" in line] == ["[3/4] 02_reader", "[4/4] 03_reader_again"]
    # 03 may run alone while 00 and 02 are current, whatever 01's state
    (notebooks / "params" / "smoke" / "01_second.yaml").write_text("value: 6.0\n")
    logs.clear()
    go(project, logs, first="03", force=True)
    assert [line.split(":")[0] for line in logs if "running" in line] == ["[4/4] 03_reader_again"]


def edit(path):
    path.write_text(path.read_text() + "# edited\n")


def test_a_stage_reruns_when_library_code_it_reaches_changes_and_only_then(project, tmp_path, monkeypatch):
    """Both notebooks import speechkit.core.results; 01 also reaches ReHear's package (an import in a function it
    never calls counts). The stage keys read a copy of the library, which the test edits."""
    notebooks, _ = project
    library = tmp_path / "speechkit"
    shutil.copytree(keys.PACKAGE, library, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(keys, "PACKAGE", library)
    make_notebook(notebooks / "01_second.ipynb",
                  body=BODY + "\ndef unused():\n    from speechkit.rehear import refinement\n")
    logs = []

    def running():
        logs.clear()
        go(project, logs)
        return [line.split(":")[0] for line in logs if "running" in line]

    assert running() == ["[1/2] 00_first", "[2/2] 01_second"]
    edit(library / "llm_reward" / "reward.py")
    assert running() == []
    edit(library / "rehear" / "refinement.py")
    assert running() == ["[2/2] 01_second"]
    edit(library / "core" / "results.py")
    assert running() == ["[1/2] 00_first", "[2/2] 01_second"]


def test_a_change_in_one_papers_package_leaves_the_other_papers_stages_current(tmp_path):
    """On the real default profile: editing a module of one paper's package changes the library hash of that paper's
    stages only (the stages of the kit's shared layers reach no paper package)."""
    library = tmp_path / "speechkit"
    shutil.copytree(keys.PACKAGE, library, ignore=shutil.ignore_patterns("__pycache__"))
    profile = discover("default")
    before = {stage.name: keys.library_hash(stage, library) for stage in profile}
    papers = {"slam_asr": "1", "rehear": "2", "llm_reward": "3", "speech_hands": "4"}  # their stages' first digit
    for paper, digit in papers.items():
        edit(sorted((library / paper).glob("[!_]*.py"))[0])
        after = {stage.name: keys.library_hash(stage, library) for stage in profile}
        changed = sorted(name for name in before if after[name] != before[name])
        assert changed and all(name.startswith(digit) for name in changed), (paper, changed)
        before = after
    edit(library / "engine" / "training.py")
    after = {stage.name: keys.library_hash(stage, library) for stage in profile}
    assert {"10_stage1_projector", "15_cot_sft", "20_rehear", "30_llm_reward", "41_routing"} <= {
        name for name in before if after[name] != before[name]}


def test_the_import_closure_covers_what_python_imports_and_resolves_relative_imports(tmp_path):
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, speechkit.engine.recipes; print(' '.join(sorted("
                             "m for m in sys.modules if m.startswith('speechkit'))))"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert "speechkit.engine.recipes" in loaded
    assert set(loaded) <= set(keys.imported_modules("from speechkit.engine.recipes import fine_tune"))
    package = tmp_path / "speechkit"
    for name, text in {"__init__.py": "", "a/__init__.py": "", "a/b.py": "from ..c import d\n", "c/__init__.py": "",
                       "c/d.py": "def f():\n    import speechkit.e\n", "e.py": "", "unused.py": ""}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    assert keys.imported_modules("%matplotlib inline\nfrom speechkit.a import b", package) == [
        "speechkit", "speechkit.a", "speechkit.a.b", "speechkit.c", "speechkit.c.d", "speechkit.e"]


def test_a_long_stage_reports_progress_with_the_time_its_last_run_took(project):
    notebooks, out = project
    (notebooks / "params" / "smoke" / "01_second.yaml").unlink()
    logs = []
    go(project, logs, heartbeat_seconds=0.5)
    assert any(line.startswith("[1/1] 00_first: still running") and "last run" not in line for line in logs)
    seconds = json.loads((out / "smoke" / "00_first" / "params.json").read_text())["seconds"]
    assert seconds > 0
    logs.clear()
    go(project, logs, force=True, heartbeat_seconds=0.5)
    assert any(f"(last run {seconds / 60:.1f} min" in line for line in logs if "still running" in line)
    seconds = json.loads((out / "smoke" / "00_first" / "params.json").read_text())["seconds"]
    assert f"{seconds / 60:.1f} min |" in (out / "smoke" / "summary.md").read_text()  # wall time from params.json


def test_progress_line_estimates_what_is_left():
    assert progress_line("[3/9] 12_stage3_lora", 600, None) == "[3/9] 12_stage3_lora: still running, 10.0 min"
    assert progress_line("s", 600, 3000).endswith("(last run 50.0 min: about 40 min left)")
    assert progress_line("s", 3600, 3000).endswith("(last run 50.0 min: longer than then)")


def test_committed_results_come_only_from_a_tree_without_code_changes(tmp_path, monkeypatch):
    """Runs write results and benchmarks into the repository: those are not code changes. Anything else is, and a run
    into the repository's results folder refuses it unless --allow-dirty; params.json records it as dirty."""
    import subprocess

    from speechkit.core import results
    from speechkit.pipeline import runner

    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    for command in (["init", "-q"], ["add", "code.py"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
                                                          "code"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    monkeypatch.setattr(results, "REPO_ROOT", repo)
    monkeypatch.setattr(runner, "REPO_ROOT", repo)
    (repo / "results" / "metrics.json").write_text("{}")
    (repo / "data_manifests").mkdir()
    (repo / "data_manifests" / "a.jsonl").write_text("")
    assert results.code_changes() == [] and results.provenance()["git_dirty"] is False
    runner.check_clean_tree(repo / "results", allow_dirty=False)
    (repo / "code.py").write_text("x = 2\n")
    (repo / "new.py").write_text("")
    assert results.code_changes() == ["code.py", "new.py"] and results.provenance()["git_dirty"] is True
    with pytest.raises(ParameterError, match=r"uncommitted code changes \(code.py, new.py\).*--allow-dirty"):
        runner.check_clean_tree(repo / "results", allow_dirty=False)
    runner.check_clean_tree(repo / "results", allow_dirty=True)
    runner.check_clean_tree(tmp_path / "elsewhere", allow_dirty=False)  # an experiment's own folder
