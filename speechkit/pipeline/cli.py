"""The kit's command line:

    python -m speechkit run --profile default [--from STAGE] [--to STAGE] [--out DIR] [--data DIR] [--force]
    python -m speechkit validate MANIFEST.jsonl [...] [--strict-format]
    python -m speechkit transcribe FILE [...]
    python -m speechkit publish STAGE_DIR --as NAME --data DIR
    python -m speechkit import NAME DIR --out DIR
    python -m speechkit readme [--profile default]
"""

from __future__ import annotations

import argparse
import sys
import warnings

from speechkit.core.results import REPO_ROOT, repo_path
from speechkit.data.importers import IMPORTERS, LayoutError, import_corpus
from speechkit.models.published import PREFIX as PUBLISHED_PREFIX
from speechkit.models.published import publish
from speechkit.pipeline import transcribe
from speechkit.pipeline.runner import StageFailed, run
from speechkit.pipeline.stages import PROFILES, ParameterError
from speechkit.pipeline.summary import update_readme


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
    runner.add_argument("--allow-dirty", action="store_true", help="write into results/ from a tree with uncommitted "
                        "code changes (an experiment: its runs are marked dirty)")
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
    importer = commands.add_parser("import", help="bring a corpus from its published layout into manifests")
    importer.add_argument("corpus", choices=list(IMPORTERS), help="which corpus layout DIR holds")
    importer.add_argument("source", metavar="DIR", help="the corpus folder as its publisher ships it")
    importer.add_argument("--out", required=True, help="folder for the manifests (and audio that must be converted)")
    readme = commands.add_parser("readme", help="regenerate the README's measured section from a profile's results")
    readme.add_argument("--profile", default="default", help="whose results (default: default)")
    args = parser.parse_args(argv)
    if args.command == "import":
        try:
            print(import_corpus(args.corpus, args.source, args.out))
        except LayoutError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "readme":
        changed = update_readme(REPO_ROOT / "README.md", REPO_ROOT / "results" / args.profile)
        print("README.md " + ("updated" if changed else "already current"))
        return 0
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
        run(args.profile, args.first, args.last, args.out, args.data, args.force, overrides=args.overrides,
            allow_dirty=args.allow_dirty)
    except (ParameterError, StageFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ParameterError) else 1
    return 0
