import os

# Tests share the machine with other work: one thread per process (oversubscription slows training 10-35x).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The tests build their inputs on the CPU: keep the loaders' models there on a GPU machine too.
os.environ.setdefault("SPEECHKIT_DEVICE", "cpu")

import pytest  # noqa: E402

from speechkit.data.benchmark import BenchmarkConfig, generate  # noqa: E402


@pytest.fixture(scope="session")
def smoke_benchmark(tmp_path_factory):
    """The smoke-profile benchmark, generated once per test session (a few seconds)."""
    root = tmp_path_factory.mktemp("benchmark") / "smoke"
    record = generate(BenchmarkConfig(workers=1), root, progress=False)
    return root, record


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, smoke_benchmark):
    """A tiny random Whisper and a tiny random Qwen2, saved as checkpoints (seconds; no training)."""
    import json

    import torch
    from standins import build_bpe_tokenizer, build_char_tokenizer, lm_standin_config, whisper_standin_config
    from transformers import AutoModelForCausalLM

    from speechkit.data.manifest import read_manifest
    from speechkit.models import asr

    root, _ = smoke_benchmark
    texts = [u.text for name in ("source_train", "multilingual_train") for u in read_manifest(root / f"{name}.jsonl")]
    corpus = [json.loads(line)["text"] for line in (root / "text_corpus.jsonl").open()]
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    characters = build_char_tokenizer(texts + corpus)
    whisper = asr.WhisperASR(whisper_standin_config(characters, d_model=32, layers=1, heads=2))
    save_checkpoint(whisper, characters, folder / "whisper")
    bpe = build_bpe_tokenizer(corpus, 400)
    llm = AutoModelForCausalLM.from_config(lm_standin_config(bpe, hidden=32, layers=1, heads=2, kv_heads=1))
    save_checkpoint(llm, bpe, folder / "llm")
    return folder / "whisper", folder / "llm"


def save_checkpoint(model, tokenizer, folder) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The whole smoke profile through the runner, once per session: (results dir, data dir, summary path)."""
    from speechkit.pipeline.runner import run

    root = tmp_path_factory.mktemp("smoke_run")
    out, data = root / "results", root / "data"
    return out, data, run("smoke", out=out, data=data)
