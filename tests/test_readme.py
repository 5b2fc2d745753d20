"""The README's references stay true (links, module paths, make targets, profiles and stages in its commands), and its
measured section is generated from the committed results, so no hand copy can drift."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from speechkit.core.results import REPO_ROOT
from speechkit.pipeline.summary import README_BEGIN, README_END, measured_section, update_readme, wall_time_line

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROFILES = {p.name for p in (ROOT / "notebooks" / "params").iterdir() if p.is_dir()}


def stage_names(profile: str) -> set[str]:
    names = {p.stem for p in (ROOT / "notebooks" / "params" / profile).glob("*.yaml")}
    return names | {n.split("_")[0] for n in names}


def test_relative_links_point_to_files():
    links = re.findall(r"\]\(([^)#\s]+)", README)
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert links and not missing, f"README links to missing files: {missing}"


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent of `name` is a module, not a package
        return False


def is_attribute(name: str) -> bool:
    """`speechkit.data.synth.synthesize`: a name defined in a module."""
    parent, _, attribute = name.rpartition(".")
    return is_module(parent) and hasattr(importlib.import_module(parent), attribute)


def test_named_modules_and_source_files_exist():
    files = set(re.findall(r"\b(speechkit/[\w/]+\.py)\b", README))
    modules = set(re.findall(r"\b(speechkit(?:\.\w+)+)\b", README))
    assert files and modules
    assert not [f for f in files if not (ROOT / f).is_file()], "README names missing source files"
    missing = [m for m in modules if not (is_module(m) or is_attribute(m))]
    assert not missing, f"README names missing modules: {missing}"


def test_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    named = set(re.findall(r"`make (?:[A-Z]+=\S+ )*([a-z][\w-]*)", README)) | set(
        re.findall(r"^make ([a-z][\w-]*)", README, flags=re.M))
    assert {"reproduce", "test"} <= named
    assert named <= targets, f"README names make targets the Makefile lacks: {named - targets}"


def runner_commands() -> list[list[str]]:
    """`python -m speechkit run` commands: lines of fenced blocks and inline code (which may wrap onto a next line)."""
    fenced = [line for block in re.findall(r"^```\w*\n(.*?)^```", README, flags=re.M | re.S)
              for line in block.splitlines()]
    inline = re.findall(r"(?<!`)`([^`]+)`(?!`)", re.sub(r"^```.*?^```", "", README, flags=re.M | re.S))
    commands = [c.replace("\n", " ").partition("python -m speechkit run ")[2] for c in fenced + inline
                if "python -m speechkit run " in c]
    return [shlex.split(re.sub(r"\[[^\]]*\]", "", c)) for c in commands]  # [--option VALUE]: placeholders


@pytest.mark.parametrize("command", runner_commands(), ids=" ".join)
def test_runner_commands_name_existing_profiles_and_stages(command):
    options = dict(zip(command[::2], command[1::2]))
    profile = options.get("--profile")
    assert profile in PROFILES, f"unknown profile {profile!r}"
    for flag in ("--from", "--to"):
        if flag in options:
            assert options[flag] in stage_names(profile), f"{flag} {options[flag]}: no such stage in {profile}"


def test_the_readme_measured_section_is_the_one_the_committed_results_give():
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip("\n")
    assert section == measured_section(REPO_ROOT / "results" / "default"), (
        "README.md's measured section differs from results/default: run `python -m speechkit readme`")


def test_update_rewrites_only_the_generated_section_and_needs_its_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# kit\nhand text\n{README_BEGIN}\nstale\n{README_END}\nmore hand text\n")
    assert update_readme(readme, REPO_ROOT / "results" / "default")
    text = readme.read_text()
    assert text.startswith("# kit\nhand text\n") and text.endswith("more hand text\n") and "stale" not in text
    assert measured_section(REPO_ROOT / "results" / "default") in text
    assert not update_readme(readme, REPO_ROOT / "results" / "default")  # current: nothing to write
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no generated section"):
        update_readme(readme, REPO_ROOT / "results" / "default")


def test_the_wall_time_counts_the_newest_runs_stages_apart_from_older_ones():
    one = [{"git_commit": "aaaa", "git_dirty": False, "seconds": 600, "finished": "2026-12-06T10:00:00"}] * 3
    assert wall_time_line(one) == "the stages below ran for 30 min in all, from one commit."
    stale = {"git_commit": "bbbb", "git_dirty": True, "seconds": 6000, "finished": "2026-11-26T06:00:00"}
    line = wall_time_line([*one, stale])
    assert line.startswith("the 3 stages of the newest run (commit aaaa) ran for 30 min; 1 older stages")
    assert "100 min" in line
    assert "from one commit" not in wall_time_line([{**one[0], "git_dirty": True}])
