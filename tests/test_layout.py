"""The package's layering: a module imports only from its own layer or lower ones, and lives in a subpackage."""

import ast
import re
from pathlib import Path

import speechkit

PACKAGE = Path(speechkit.__file__).resolve().parent
# Low to high. Paper packages share a layer but may not import each other; data and metrics share one too.
LAYERS = {"core": 1, "data": 2, "metrics": 2, "models": 3, "engine": 4, "ui": 5,
          "slam_asr": 6, "speech_hands": 6, "rehear": 6, "llm_reward": 6, "pipeline": 7}
PAPERS = {"slam_asr", "speech_hands", "rehear", "llm_reward"}
TOP_LEVEL = {"__init__.py", "__main__.py"}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every speechkit module `path` imports, at module level or inside functions, as dotted names."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            # `from speechkit import models` imports a subpackage, not an attribute of the top-level package
            found |= {f"{base}.{alias.name}" for alias in node.names} if base == root.name else {base}
    return {m for m in found if m == root.name or m.startswith(root.name + ".")}


def subpackage(module: str) -> str | None:
    """The subpackage a dotted module belongs to; None for the top-level package and its __main__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else None


def back_edges(root: Path) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        source = subpackage(module_name(path, root))
        for target in sorted(imported_modules(path, root)):
            wanted = subpackage(target)
            if wanted is None:
                if target != root.name:  # the top-level package is minimal; __main__ is never imported
                    problems.append(f"{path.relative_to(root.parent)} imports {target}")
                continue
            if wanted not in LAYERS or (source is not None and source not in LAYERS):
                problems.append(f"{path.relative_to(root.parent)} imports {target}: a subpackage without a layer")
            elif source is not None and (LAYERS[wanted] > LAYERS[source]
                                         or (source in PAPERS and wanted in PAPERS and source != wanted)):
                problems.append(f"{path.relative_to(root.parent)} ({source}) imports {target} ({wanted})")
    return problems


def misplaced(root: Path) -> list[str]:
    """Modules outside a subpackage, subpackages without a layer, and folders of modules without an __init__.py
    (package discovery would leave them out of the wheel)."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        inside = path.relative_to(root)
        if len(inside.parts) == 1:
            if path.name not in TOP_LEVEL:
                problems.append(f"{inside}: not in a subpackage")
        elif inside.parts[0] not in LAYERS:
            problems.append(f"{inside}: subpackage {inside.parts[0]!r} has no layer")
        elif not (path.parent / "__init__.py").is_file():
            problems.append(f"{inside}: its folder has no __init__.py")
    return problems


def test_no_module_imports_from_a_higher_layer_or_another_paper():
    problems = back_edges(PACKAGE)
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_every_module_lives_in_a_subpackage_with_a_layer():
    problems = misplaced(PACKAGE)
    assert not problems, "\n".join(problems)
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == set(LAYERS)


def test_the_checks_catch_back_edges_and_stray_modules(tmp_path):
    root = tmp_path / "speechkit"
    files = {
        "__init__.py": "",
        "__main__.py": "from speechkit.pipeline.cli import main\n",
        "core/__init__.py": "", "core/base.py": "def f():\n    from speechkit.engine import training\n",
        "engine/__init__.py": "", "engine/training.py": "from speechkit.core.base import f\n",
        "rehear/__init__.py": "", "rehear/refinement.py": "from speechkit import llm_reward\n",
        "llm_reward/__init__.py": "", "llm_reward/reward.py": "from ..rehear.refinement import x\n",
        "pipeline/__init__.py": "", "pipeline/runner.py": "from speechkit.rehear import refinement\n",
        "stray.py": "", "extra/thing.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert back_edges(root) == [
        "speechkit/core/base.py (core) imports speechkit.engine (engine)",  # inside a function
        "speechkit/llm_reward/reward.py (llm_reward) imports speechkit.rehear.refinement (rehear)",  # relative
        "speechkit/rehear/refinement.py (rehear) imports speechkit.llm_reward (llm_reward)",
    ]
    assert misplaced(root) == ["extra/thing.py: subpackage 'extra' has no layer", "stray.py: not in a subpackage"]


def paper_knowledge(root: Path, tokens: set[str], figures: set[str]) -> list[str]:
    """Lines of the layers below the papers (core to ui) that name a paper's own token or one of its figures: paper
    knowledge belongs in its paper package, which the lower layers serve generically."""
    below = [name for name, layer in LAYERS.items() if layer < LAYERS["slam_asr"]]
    number = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
    problems = []
    for path in sorted(p for name in below for p in (root / name).rglob("*.py")):
        for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found = [t for t in sorted(tokens) if t in line] + [f for f in number.findall(line) if f in figures]
            if found:
                problems.append(f"{path.relative_to(root.parent)}:{line_number} names {', '.join(found)}")
    return problems


def papers_tokens_and_figures() -> tuple[set[str], set[str]]:
    """The papers' own tokens, and the figures their claims quote (as written there, e.g. "15.48")."""
    from speechkit.pipeline.claims import CLAIMS
    from speechkit.slam_asr.cot import THINK_TOKENS
    from speechkit.speech_hands.routing import ROUTING_TOKENS

    figures = {f for claim in CLAIMS for f in re.findall(r"\d+\.\d+", claim.paper_figure)}
    return set(THINK_TOKENS) | set(ROUTING_TOKENS), figures


def test_no_layer_below_the_papers_names_a_papers_token_or_figure():
    problems = paper_knowledge(PACKAGE, *papers_tokens_and_figures())
    assert not problems, "paper knowledge below the paper packages:\n" + "\n".join(problems)


def test_the_paper_knowledge_check_catches_a_planted_token_and_figure(tmp_path):
    tokens, figures = papers_tokens_and_figures()
    assert {"<think>", "<rewrite>"} <= tokens and "15.48" in figures
    root = tmp_path / "speechkit"
    files = {"models/speech_llm.py": 'SPEECH_TOKENS = ("<speech>", "<think>")\n',
             "core/claims.py": "STAGE3_WER = 15.48  # 15.480 and v15.48 are other text\n",
             "slam_asr/cot.py": 'THINK_TOKENS = ("<think>", "</think>")  # 15.48: a paper package may\n'}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert paper_knowledge(root, tokens, figures) == ["speechkit/core/claims.py:1 names 15.48",
                                                      "speechkit/models/speech_llm.py:1 names <think>"]
