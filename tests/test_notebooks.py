"""Notebook hygiene, and the data notebook run through the runner in the smoke profile."""

import ast
import dataclasses
import importlib
import json
import math
from pathlib import Path

import nbformat
import pytest
import yaml
from papermill.translators import PythonTranslator

from speechkit.core.results import from_params
from speechkit.data.manifest import read_manifest, read_nbest
from speechkit.models.speech_llm import SpeechLLM
from speechkit.pipeline.claims import NOT_MEASURED, verdicts
from speechkit.pipeline.stages import INJECTED, NOTEBOOK_KEY, declared_parameters, discover, validate
from speechkit.speech_hands.routing import read_decisions

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_exist():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_data.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_hygiene(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs must be stripped"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0], "exactly one parameters cell, the first code cell"
    assert set(INJECTED) <= set(declared_parameters(path))
    # papermill (and JupyterLab's parameter inspection) must read every line of the cell
    assert {p.name for p in PythonTranslator.inspect(tagged[0])} == set(declared_parameters(path))


@pytest.mark.parametrize("params", sorted((ROOT / "notebooks" / "params").glob("*/*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_yaml_key_is_declared_with_its_type(params):
    settings = yaml.safe_load(params.read_text())
    declared = declared_parameters(ROOT / "notebooks" / f"{settings.pop(NOTEBOOK_KEY, params.stem)}.ipynb")
    assert set(settings) <= set(declared)


@pytest.mark.parametrize("profile", ["smoke", "pretrain", "default", "full"])
def test_profiles_validate(profile):
    for stage in discover(profile):
        validate(stage)


def configs_built(notebook: Path) -> list[tuple[type, str, dict[str, str], list[str]]]:
    """The `from_params(Class, <parameters expression>, **fixed)` calls of a notebook: each config class, its
    argument, the fields its code fixes (as expressions) and the `if` conditions it runs under."""
    cells = [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    tree = ast.parse("\n".join(line for cell in cells for line in cell.splitlines() if not line.startswith("%")))
    imported = {alias.asname or alias.name: node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) for alias in node.names}

    def calls(node: ast.AST, conditions: list[str]):
        if isinstance(node, ast.If):
            condition = ast.unparse(node.test)
            for child in node.body:
                yield from calls(child, [*conditions, condition])
            for child in node.orelse:
                yield from calls(child, [*conditions, f"not ({condition})"])
            return
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "from_params":
            name = node.args[0].id
            fixed = {keyword.arg: ast.unparse(keyword.value) for keyword in node.keywords}
            yield getattr(importlib.import_module(imported[name]), name), ast.unparse(node.args[1]), fixed, conditions
        for child in ast.iter_child_nodes(node):
            yield from calls(child, conditions)

    return list(calls(tree, []))


def runs_under(conditions: list[str], parameters: dict) -> bool:
    """Whether `if` conditions on parameters hold (one on a computed value may hold: it counts as true)."""
    try:
        return all(eval(condition, {}, parameters) for condition in conditions)
    except NameError:
        return True


@pytest.mark.parametrize("profile", ["smoke", "pretrain", "default", "full"])
def test_every_parameter_file_builds_the_configs_of_its_notebook(profile):
    """The validator checks names and types; the config classes check values (a full-profile file once set
    `source_limit: 0`, which ReHearConfig refused only when a GPU user's run reached it)."""
    for stage in discover(profile):
        parameters = {**declared_parameters(stage.notebook), **stage.parameters}
        for config_class, argument, fixed, conditions in configs_built(stage.notebook):
            if runs_under(conditions, parameters):
                scope = {"globals": lambda: parameters}
                from_params(config_class, eval(argument, scope, parameters),
                            **{name: eval(value, scope, parameters) for name, value in fixed.items()})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_declared_parameter_reaches_the_code(path):
    """A parameter a notebook declares but neither reads nor passes to a config it builds from its globals would be
    set in a parameter file and silently ignored."""
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    code = ast.parse("\n".join(line for cell in cells[1:] for line in cell.splitlines() if not line.startswith("%")))
    read = {node.id for node in ast.walk(code) if isinstance(node, ast.Name)}
    fields = {field.name for config_class, argument, _, _ in configs_built(path) if "globals()" in argument
              for field in dataclasses.fields(config_class)}
    assert [name for name in declared_parameters(path) if name not in read | fields | set(INJECTED)] == []


def test_smoke_defaults_equal_the_smoke_parameter_files():
    """Each notebook's defaults are its smoke stage (a notebook run again as another stage is set by its file)."""
    for stage in discover("smoke"):
        if stage.notebook.stem != stage.name:
            continue
        declared = declared_parameters(stage.notebook)
        assert {k: declared[k] for k in stage.parameters} == stage.parameters, stage.name


@pytest.mark.slow
def test_the_smoke_pipeline_runs_through_the_runner(smoke_run):
    """Every notebook of the smoke profile, in order: data, models, speech-LLM stages, studies, CoT and RLVR,
    ReHear, Ling & Ye, routing."""
    out, data, summary = smoke_run
    executed = nbformat.read(out / "smoke" / "00_data" / "00_data.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plots are embedded"
    assert any("<audio" in o.get("data", {}).get("text/html", "") for o in outputs), "samples are playable"
    assert read_manifest(data / "source_test.jsonl")
    rows = json.loads((out / "smoke" / "summary.json").read_text())
    names = {(r["stage"], r["name"]) for r in rows}
    assert ("00_data", "entity OOV rate (target dev/test)") in names
    assert ("00_data", "calibration Whisper entity WER medical_test [en]") in names
    assert ("01_models", "LM perplexity medical dev") in names
    for stage in ("10_stage1_projector", "11_stage2_special_tokens", "12_stage3_lora"):
        assert (stage, "dev WER source_dev [en]") in names, stage
        assert (out / "smoke" / stage / "checkpoint" / "trained.safetensors").is_file()
    assert ("12_stage3_lora", "test stage 3 minus Whisper source_test [en]") in names
    for variant in ("paper", "RMSNorm + CTC", "LoRA on the LLM from stage 1"):
        assert ("02_pretrain_recipe", f"{variant}: dev loss at step 2") in names, variant
    assert SpeechLLM.load(out / "smoke" / "12_stage3_lora" / "checkpoint").config.stages == (
        "projector", "special tokens", "lora")
    assert "12_stage3_lora" in summary.read_text()
    assert ("13_decoding_study", "WER/CER beam_sampling beam 4 max 24") in names
    nbest = read_nbest(out / "smoke" / "13_decoding_study" / "source_dev.nbest.jsonl")
    assert nbest and all(len(n.hypotheses) == 4 for n in nbest)
    modes = ("none", "oracle", "own")
    assert {("14_context", f"WER conversation_turns_test, context: {mode}") for mode in modes} <= names
    for name in ("stage 3", "CoT", "CoT + PLW"):
        assert ("15_cot_sft", f"{name} WER source_dev [en]") in names
    assert ("15_cot_sft", "CoT + PLW think right, transcript wrong") in names
    assert SpeechLLM.load(out / "smoke" / "15_cot_sft" / "checkpoint").config.stages[-1] == "cot"
    assert {("16_rlvr", "RLVR WER source_dev [en]"), ("16_rlvr", "mean reward correction")} <= names
    for system in ("pseudo-labels", "text-only refiner", "ReHear", "oracle", "supervised"):
        assert ("20_rehear", f"round 1 {system} WER medical_test [en]") in names
    assert ("20_rehear", "ReHear pool labels kept") in names
    for system in ("unadapted", "N-best rescoring", "self-training", "LLM-reward RL"):
        assert ("30_llm_reward", f"{system} entity WER medical_test [en]") in names
    assert ("30_llm_reward", "entity WER relative change, RL minus self-training medical_test [en]") in names
    for system in ("pocketsphinx", "whisper"):
        assert ("40_external_asr", f"{system} WER source_test [en]") in names
    # routing's training turns: decoded by its external system (train_systems), not by the test-only baselines
    lists = out / "smoke" / "40_external_asr" / "nbest"
    assert read_nbest(lists / "whisper" / "conversation_turns_train.jsonl")
    assert not (lists / "pocketsphinx" / "conversation_turns_train.jsonl").exists()
    routed = {"internal (speech LLM)", "external pocketsphinx", "GER cascade", "routed", "oracle routing"}
    assert {("41_routing", f"{system} WER medical_test [en]") for system in routed} <= names
    assert {("41_routing", "routing accuracy"), ("41_routing", "routing F1 <rewrite>")} <= names
    assert read_decisions(out / "smoke" / "41_routing" / "decisions.jsonl")
    demo = nbformat.read(out / "smoke" / "42_routing_demo" / "42_routing_demo.ipynb", as_version=4)
    views = [o for c in demo.cells if c.cell_type == "code" for o in c.outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 2, "the routing browser and the audio browser are displayed"
    # every claim the profile's stages can measure is measured (a renamed row or file would leave it unmeasured),
    # and no number is NaN
    ran = {stage.name for stage in discover("smoke")}
    unmeasured = [v.claim.statement for v in verdicts(rows, out / "smoke")
                  if set(v.claim.stages) <= ran and v.verdict == NOT_MEASURED]
    assert not unmeasured
    assert not [(r["stage"], r["name"]) for r in rows for key in ("value", "ci_low", "ci_high")
                if r[key] is not None and math.isnan(r[key])]


def test_every_notebook_has_a_full_parameter_file():
    """GPU users run the full profile: every notebook takes part in it (by its own name or run again as another
    stage's `notebook:`)."""
    run_by_full = {stage.notebook.name for stage in discover("full")}
    assert [p.name for p in NOTEBOOKS if p.name not in run_by_full] == []
