"""Device check: the speech LLM's stages 1-3 on a GPU (bf16 autocast through accelerate), with wall-clock budgets many
times the CPU default's steps, to ask whether the speech LLM learns to read the audio when given compute.

    python run_gpu.py MODELS_DIR DATA_DIR OUT_DIR STAGE1_MIN STAGE2_MIN STAGE3_MIN
Same library calls as notebooks 10-12 (StageSetup, build, train_stage, evaluate_speech_llm), default-profile
hyper-parameters; trains on source_train only (English), evaluates source_dev (100 utterances).
"""
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.recipes import CHECKPOINT
from speechkit.slam_asr.stages import StageSetup, build, evaluate_speech_llm, train_stage
from speechkit.engine.training import TrainConfig

models, data, out = (Path(p) for p in sys.argv[1:4])
minutes = [float(m) for m in sys.argv[4:7]]
started = time.time()
report = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
          "torch": torch.__version__, "stages": []}
common = dict(projector_hidden=1024, train_manifests=["source_train"], eval_manifests=["source_dev"], max_batch=16,
              batch_seconds=60.0)
# the default profile's learning rates and warm-ups (notebooks/params/default/1x_*.yaml); budgets in minutes here
plans = [(1, dict(encoder=str(models / "whisper-tiny.en"), llm=str(models / "smollm2")), 1e-3, 20, True),
         (2, dict(init=str(out / "stage1" / CHECKPOINT)), 5e-4, 20, False),
         (3, dict(init=str(out / "stage2" / CHECKPOINT)), 1e-3, 20, True)]
for (stage, init, lr, warmup, evaluate), budget in zip(plans, minutes, strict=True):
    setup = StageSetup(stage=stage, **init, **common)
    model = build(setup, out / f"stage{stage}")
    counts = model.start_stage(setup.spec)
    config = TrainConfig(learning_rate=lr, warmup_steps=warmup, max_steps=100_000, max_minutes=budget,
                         checkpoint_minutes=1000.0, log_every=50)
    t = time.time()
    log = train_stage(model, setup, config, data, out / f"stage{stage}" / CHECKPOINT, progress=False)
    row = {"stage": stage, "steps": log.steps, "train_minutes": round((time.time() - t) / 60, 2),
           "seconds_per_step": round((time.time() - t) / max(log.steps, 1), 3), "trainable": counts,
           "loss_first": log.loss[0] if log.loss else None, "loss_last": log.loss[-1] if log.loss else None,
           "device_of_model": str(next(model.parameters()).device)}
    if evaluate:
        t = time.time()
        result = evaluate_speech_llm(model, setup, data, ["source_dev"], DecodingConfig(max_new_tokens=100))[0]
        row.update(dev_wer=result.wer.rate, dev_wer_ci=[result.wer.interval.low, result.wer.interval.high],
                   eval_seconds=round(time.time() - t, 1),
                   examples=[{"ref": r, "hyp": h} for r, h in list(zip(result.references, result.hypotheses))[:6]])
    report["stages"].append(row)
    report["elapsed_minutes"] = round((time.time() - started) / 60, 2)
    print(json.dumps(row, indent=1, default=str), flush=True)
    report_dir = Path(os.environ.get("OUT", out))  # the device tool returns only what is under $OUT
    (report_dir / "gpu_stages.json").write_text(json.dumps(report, indent=1, default=str))
    shutil.copy(out / f"stage{stage}" / CHECKPOINT / "training_log.csv", report_dir / f"stage{stage}_training_log.csv")
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
