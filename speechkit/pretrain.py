"""Training the stand-in "pretrained" models (the `pretrain` profile) and loading them like real checkpoints.

Checkpoints are folders a `from_pretrained` call reads: config, safetensors weights (bf16, to keep the committed
pair under 50 MB), tokenizer, and `provenance.json` (commit, seed, benchmark hash, command, device, metrics).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from speechkit import asr, lm
from speechkit.features import length_batches
from speechkit.fileio import write_json
from speechkit.manifest import Utterance, read_manifest
from speechkit.results import Metric, provenance
from speechkit.training import TrainConfig, TrainLog, train
from speechkit.vocab import build_bpe_tokenizer, build_char_tokenizer

PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class ASRModelConfig:
    d_model: int = 256
    layers: int = 4
    heads: int = 4
    n_mels: int = 80
    ctc_weight: float = 0.3       # auxiliary CTC loss on the encoder
    batch_seconds: float = 60.0   # padded audio per batch (longest utterance x batch size)
    max_batch: int = 32


@dataclass(frozen=True)
class LMModelConfig:
    hidden: int = 384
    layers: int = 6
    heads: int = 6
    kv_heads: int = 2
    vocab_size: int = 4096
    block: int = 128              # tokens per packed training row
    batch_size: int = 16


def _training_utterances(data_dir: Path, manifests: Sequence[str]) -> list[Utterance]:
    return [u for name in manifests for u in read_manifest(data_dir / f"{name}.jsonl")]


def pretrain_asr(model_config: ASRModelConfig, train_config: TrainConfig, data_dir: str | Path,
                 checkpoint: str | Path, manifests: Sequence[str] = ("source_train", "multilingual_train"),
                 progress: bool = True, init: str | Path | None = None
                 ) -> tuple[asr.WhisperASR, PreTrainedTokenizerFast, TrainLog]:
    """Train the small Whisper on labeled training manifests, from scratch or (`init`) continuing a saved one (its
    architecture and tokenizer kept; the model config's sizes are then ignored); saves it to `checkpoint`."""
    data_dir, checkpoint = Path(data_dir), Path(checkpoint)
    utterances = _training_utterances(data_dir, manifests)
    torch.manual_seed(train_config.seed)
    if init:
        model, tokenizer = load_asr(init)
    else:
        corpus = [json.loads(line)["text"] for line in (data_dir / "text_corpus.jsonl").open(encoding="utf-8")]
        tokenizer = build_char_tokenizer([u.text for u in utterances] + corpus)
        model = asr.WhisperASR(asr.standin_config(tokenizer, model_config.d_model, model_config.layers,
                                                  model_config.heads, model_config.n_mels))
    durations = [u.duration for u in utterances]

    def batches(epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([train_config.seed, epoch])
        return length_batches(durations, model_config.batch_seconds, model_config.max_batch, rng)

    def loss(model, indices):
        batch = asr.make_batch([utterances[i] for i in indices], data_dir, tokenizer, model_config.n_mels)
        return asr.loss(model, batch.to(model.device), model_config.ctc_weight)

    log = train(model, batches, loss, train_config, checkpoint, progress)
    save_checkpoint(model, tokenizer, checkpoint)
    return model, tokenizer, log


def pretrain_lm(model_config: LMModelConfig, train_config: TrainConfig, data_dir: str | Path,
                checkpoint: str | Path, progress: bool = True):
    """Train the small Qwen2 on the benchmark's text corpus (tokenizer trained on it too); saves it to `checkpoint`."""
    data_dir, checkpoint = Path(data_dir), Path(checkpoint)
    corpus = [json.loads(line)["text"] for line in (data_dir / "text_corpus.jsonl").open(encoding="utf-8")]
    rows = np.random.default_rng(train_config.seed).permutation(len(corpus))  # mix domains within blocks
    corpus = [corpus[i] for i in rows]
    tokenizer = build_bpe_tokenizer(corpus, model_config.vocab_size)
    blocks = lm.pack(tokenizer, corpus, model_config.block)
    torch.manual_seed(train_config.seed)
    model = AutoModelForCausalLM.from_config(lm.standin_config(tokenizer, model_config.hidden, model_config.layers,
                                                               model_config.heads, model_config.kv_heads))

    def loss(model, indices):
        ids = blocks[torch.as_tensor(indices)].to(model.device)
        output = model(input_ids=ids, labels=ids)
        return output.loss, {}

    log = train(model, lm.block_batches(len(blocks), model_config.batch_size, train_config.seed), loss,
                train_config, checkpoint, progress)
    save_checkpoint(model, tokenizer, checkpoint)
    return model, tokenizer, log


def save_checkpoint(model, tokenizer: PreTrainedTokenizerFast, checkpoint: str | Path) -> None:
    """Weights in bf16 safetensors (the training state beside them stays in fp32), config and tokenizer."""
    checkpoint = Path(checkpoint)
    state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.save_pretrained(checkpoint, state_dict=state)
    tokenizer.save_pretrained(checkpoint)


def read_provenance(checkpoint: str | Path) -> dict | None:
    path = Path(checkpoint) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_provenance(checkpoint: str | Path, data_dir: str | Path, parameters: dict, metrics: dict,
                     log: TrainLog, command: str, continued_from: dict | None = None) -> dict:
    """The provenance card; `continued_from` is the card of the checkpoint this training continued (its commit,
    steps and training time stay on record, and the totals add them up)."""
    benchmark = json.loads((Path(data_dir) / "benchmark.json").read_text())
    seconds, steps = (log.seconds[-1] if log.seconds else 0.0), (log.step[-1] if log.step else 0)
    earlier = continued_from or {}
    record = {"command": command, "parameters": parameters, "benchmark_sha256": benchmark["sha256"],
              "benchmark_config": benchmark["config"], "training_seconds": seconds, "steps": steps,
              "total_training_seconds": seconds + earlier.get("total_training_seconds",
                                                              earlier.get("training_seconds", 0.0)),
              "total_steps": steps + earlier.get("total_steps", earlier.get("steps", 0)),
              "stopped_by": log.stopped_by, "metrics": metrics, **provenance(),
              "continued_from": continued_from}
    write_json(Path(checkpoint) / PROVENANCE_FILE, record)
    return record


def load_asr(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[asr.WhisperASR, PreTrainedTokenizerFast]:
    """The ASR from a local checkpoint folder or a hub id (a real Whisper gets a freshly initialised CTC head)."""
    model = asr.WhisperASR.from_pretrained(str(path), dtype=dtype)
    return model.eval(), AutoTokenizer.from_pretrained(str(path))


def load_lm(path: str | Path, dtype: torch.dtype = torch.float32):
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    return model.eval(), AutoTokenizer.from_pretrained(str(path))


def lm_metrics(model, tokenizer: PreTrainedTokenizerFast, data_dir: str | Path) -> list[Metric]:
    """Perplexity per domain (and per language of the multilingual subset) on dev transcripts."""
    utterances = [u for name in ("source_dev", "medical_dev", "finance_dev", "multilingual_dev")
                  for u in read_manifest(Path(data_dir) / f"{name}.jsonl", check_audio=False)]
    scores = lm.perplexity(model, tokenizer, [u.text for u in utterances], [u.domain for u in utterances])
    first, repeated = lm.repeat_loss(model, tokenizer, [u.text for u in utterances if u.domain == "general"][:200])
    return [Metric(f"LM perplexity {domain} dev", round(value, 2)) for domain, value in scores.items()] + [
        Metric("LM loss per token, general dev sentence", round(first, 3), unit="nats"),
        Metric("LM loss per token, the same sentence right after itself", round(repeated, 3), unit="nats")]
