"""The README's measured section is generated from the committed results, so no hand copy can drift."""

import pytest

from speechkit.core.results import REPO_ROOT
from speechkit.pipeline.summary import README_BEGIN, README_END, measured_section, update_readme


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
