"""The library side of the speech-LLM stage notebook (10_speech_llm, run as Seewo's stages 1, 2 and 3): which loss
curve a stage shows, and stage 3's test against the Whisper its encoder comes from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from speechkit.core.results import Metric
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.evaluation import SystemResult, evaluate, result_metrics
from speechkit.engine.recipes import (StageSetup, compare, evaluate_speech_llm, resolve_checkpoint,
                                      whisper_transcriber)
from speechkit.engine.training import LOG_FILE
from speechkit.models.speech_llm import SpeechLLM
from speechkit.slam_asr.claims import STAGE3_MINUS_WHISPER

TEST_HYPOTHESES = "test_hypotheses.jsonl"  # the speech LLM's test decodings, beside its dev ones


def stage_curve(setup: StageSetup, checkpoint: str | Path, output_dir: str | Path) -> Path:
    """The loss curve of the model a stage evaluates: its own training's (`checkpoint`), or, when the stage trained
    no steps, the one its `init` was trained with (for `published:stage3`, the pretraining's committed curve)."""
    own = Path(checkpoint) / LOG_FILE
    if own.is_file():
        return own
    if not setup.init:
        raise FileNotFoundError(f"no training curve: {own} does not exist and the stage has no `init`")
    return Path(resolve_checkpoint(setup.init, output_dir)) / LOG_FILE


@dataclass(frozen=True)
class WhisperComparison:
    speech_llm: list[SystemResult]
    whisper: list[SystemResult]
    metrics: list[Metric]        # both systems' rates, then one paired difference (speech LLM - Whisper) per group

    @property
    def differences(self) -> list[Metric]:
        return [m for m in self.metrics if m.name.startswith(STAGE3_MINUS_WHISPER)]


def compare_with_whisper(model: SpeechLLM, setup: StageSetup, data_dir: str | Path, manifests: Sequence[str],
                         decoding: DecodingConfig) -> WhisperComparison:
    """The speech LLM and the real Whisper its encoder comes from, decoded on the same test utterances, with the
    paired bootstrap difference for each (manifest, language) group: Seewo's claim that the speech LLM beats the
    conventional ASR it is built on."""
    speech_llm = evaluate_speech_llm(model, setup, data_dir, manifests, decoding)
    whisper = evaluate(whisper_transcriber(model.config.encoder), data_dir, manifests, limit=setup.eval_limit)
    differences = [Metric(f"{STAGE3_MINUS_WHISPER} {key}", d.difference, d.interval.low, d.interval.high,
                          unit="rate", claim="the speech LLM beats the conventional ASR")
                   for key, d in compare(whisper, speech_llm)]
    return WhisperComparison(speech_llm, whisper, result_metrics(speech_llm, prefix="test ") +
                             result_metrics(whisper, prefix="test Whisper ") + differences)

