"""A speech-LLM stage's training in several processes, from the stage's parameter file:

    accelerate launch --config_file speechkit/pipeline/accelerate_ddp.yaml -m speechkit.pipeline.launch \\
        --profile full 10_stage1_projector [--gradient-accumulation-steps K] [--set STAGE.NAME=VALUE]

A notebook cannot run under `accelerate launch` (papermill executes it in one kernel process), so this trains what
the training cell of `10_speech_llm` trains - the same parameters (the notebook's defaults, the parameter file, `--set`
overrides), the same model, the same checkpoint folder - with each process taking its share of every batch. It leaves
the finished resumable state and the model in `<out>/<profile>/<stage>/checkpoint`; `python -m speechkit run
--profile P --from STAGE --to STAGE` (with the same `--set`) then runs the notebook, which resumes that state ("resumed
at step N", no step left), saves the model and evaluates it in one process. Run alone (`python -m
speechkit.pipeline.launch ...`), it trains in one process.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from accelerate import PartialState

from speechkit.core.results import REPO_ROOT, from_params, repo_path
from speechkit.engine.recipes import CHECKPOINT
from speechkit.engine.training import TrainConfig, TrainLog
from speechkit.models.device import default_device
from speechkit.pipeline.stages import ParameterError, apply_overrides, declared_parameters, discover, select, validate
from speechkit.slam_asr.stages import StageSetup, build, train_stage

NOTEBOOK = "10_speech_llm"  # the stage notebook whose training this runs (Seewo's stages 1-3)


def stage_parameters(profile: str, stage: str, out: str | Path, data: str | Path | None,
                     overrides: list[str]) -> dict:
    """The parameters the runner would execute the stage's notebook with, its defaults filled in."""
    stages = apply_overrides(discover(profile), overrides)
    chosen = select(stages, stage, stage)[0]
    validate(chosen)
    if chosen.notebook.stem != NOTEBOOK:
        raise ParameterError(f"{chosen.name} runs {chosen.notebook.name}; only {NOTEBOOK}'s stages train here")
    data_dir = Path(data).resolve() if data else REPO_ROOT / "data_manifests" / profile
    parameters = {**declared_parameters(chosen.notebook), **chosen.parameters, "profile": profile,
                  "output_dir": str(Path(out).resolve() / profile / chosen.name), "data_dir": str(data_dir)}
    if not parameters["max_steps"]:
        raise ParameterError(f"{chosen.name}: max_steps is 0, the stage evaluates `init` as it is: nothing to train")
    missing = [name for name in parameters["train_manifests"] if not (data_dir / f"{name}.jsonl").is_file()]
    if missing:  # before any model loads
        raise ParameterError(f"no {', '.join(missing)} in {data_dir}: generate the data first (python -m speechkit "
                             f"run --profile {profile} --to 00) or give --data")
    return parameters


def train_launched_stage(parameters: dict, micro_batches: int = 1) -> TrainLog:
    """The notebook's model building and training cells, in this process and the others launched beside it."""
    setup = from_params(StageSetup, parameters)
    model = build(setup, parameters["output_dir"])
    model.start_stage(setup.spec)
    config = replace(from_params(TrainConfig, parameters), gradient_accumulation_steps=micro_batches)
    return train_stage(model, setup, config, repo_path(parameters["data_dir"]),
                       Path(parameters["output_dir"]) / CHECKPOINT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accelerate launch -m speechkit.pipeline.launch",
                                     description=f"train a stage of notebook {NOTEBOOK} in every launched process")
    parser.add_argument("stage", help="the stage (name or number), e.g. 10_stage1_projector")
    parser.add_argument("--profile", required=True)
    parser.add_argument("--out", default="results", help="results folder, as for `speechkit run` (default: results)")
    parser.add_argument("--data", help="benchmark folder (default: data_manifests/<profile>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="STAGE.NAME=VALUE",
                        help="override a parameter, as for `speechkit run` (give `run` the same)")
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1,
                        help="micro-batches per process and step: less memory, the same step (default: 1)")
    args = parser.parse_args(argv)
    try:
        parameters = stage_parameters(args.profile, args.stage, args.out, args.data, args.overrides)
    except ParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # before any model loads: each process's GPU is then its own ("cuda" is the current device)
    state = PartialState(cpu=default_device() == "cpu")
    log = train_launched_stage(parameters, args.gradient_accumulation_steps)
    state.print(f"stopped by {log.stopped_by} after {log.steps} steps; the notebook resumes the state: python -m "
                f"speechkit run --profile {args.profile} --from {args.stage} --to {args.stage}")
    state.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
