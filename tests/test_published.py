"""The kit's published speech-LLM checkpoints: provenance, digests checked on every load, the loading path."""

import json

import pytest
import torch

from speechkit.core.fileio import write_json
from speechkit.engine import recipes
from speechkit.models import published
from speechkit.models.published import PROVENANCE, provenance_record, publish, published_path
from speechkit.models.speech_llm import STAGES, SpeechLLM, SpeechLLMConfig
from speechkit.pipeline import cli, keys, stages


@pytest.fixture
def finished_stage(tiny_checkpoints, smoke_benchmark, tmp_path):
    """A stage folder as a finished stage leaves it: checkpoint/ (a saved speech LLM), metrics.json, params.json."""
    whisper, llm = tiny_checkpoints
    torch.manual_seed(0)
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=16))
    model.start_stage(STAGES[1])
    stage = tmp_path / "results" / "10_stage1_projector"
    model.save(stage / "checkpoint")
    (stage / "checkpoint" / "training_log.csv").write_text("step,loss\n25,3.0\n")
    write_json(stage / "metrics.json", [{"name": "dev WER source_dev [en]", "value": 0.5}])
    write_json(stage / "params.json", {"git_commit": "abc", "device": "cpu: x86_64", "seconds": 60.0})
    root, _ = smoke_benchmark
    return model, stage, root


def test_a_published_stage_loads_as_it_was_saved_with_its_provenance(finished_stage, tmp_path):
    model, stage, data = finished_stage
    folder = publish(stage, "stage1", data, "python -m speechkit publish ...", root=tmp_path / "published")
    provenance = json.loads((folder / PROVENANCE).read_text())
    benchmark = json.loads((data / "benchmark.json").read_text())
    assert provenance["data"] == {"seed": benchmark["config"]["seed"], "manifests_sha256": benchmark["sha256"]}
    assert provenance["run"]["git_commit"] == "abc" and provenance["metrics"][0]["value"] == 0.5
    assert set(provenance["files"]) >= {"speech_llm.json", "trained.safetensors", "training_log.csv"}
    assert not (folder / "training_state.pt").exists() and not (folder / "tokenizer.json").exists()
    loaded = SpeechLLM.load(published_path("published:stage1", root=tmp_path / "published"))
    assert loaded.tokenizer.get_vocab() == model.tokenizer.get_vocab()  # rebuilt: the LLM's own + the kit's tokens
    for name, tensor in model.projector.state_dict().items():
        torch.testing.assert_close(loaded.projector.state_dict()[name], tensor)


def test_a_changed_or_unknown_published_checkpoint_is_refused(finished_stage, tmp_path):
    _, stage, data = finished_stage
    root = tmp_path / "published"
    folder = publish(stage, "stage1", data, "cmd", root=root)
    with pytest.raises(FileNotFoundError, match="published: stage1"):
        published_path("published:stage9", root=root)
    weights = folder / "trained.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match="SHA-256 differs"):
        published_path("published:stage1", root=root)


def test_an_unfinished_stage_is_not_published(finished_stage, tmp_path):
    _, stage, data = finished_stage
    (stage / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        publish(stage, "stage1", data, "cmd", root=tmp_path / "published")
    assert not (tmp_path / "published" / "stage1").exists()


def test_parameter_files_name_it_and_a_republished_checkpoint_changes_the_stage_key(finished_stage, tmp_path,
                                                                                    monkeypatch, capsys):
    _, stage, data = finished_stage
    monkeypatch.setattr(published, "PUBLISHED", tmp_path / "published")
    assert cli.main(["publish", str(stage), "--as", "stage1", "--data", str(data)]) == 0
    assert "published:stage1" in capsys.readouterr().out
    folder = published.PUBLISHED / "stage1"
    assert json.loads((folder / PROVENANCE).read_text())["command"].startswith("python -m speechkit publish")
    monkeypatch.setattr(recipes, "REPO_ROOT", tmp_path)
    assert recipes.resolve_checkpoint("published:stage1", tmp_path / "out") == "published/stage1"
    notebook_stage = stages.discover("smoke")[0]
    key = keys.stage_key(notebook_stage, {"init": "published:stage1"}, {}, "lib", "no")
    first = provenance_record("published:stage1")
    (stage / "checkpoint" / "training_log.csv").write_text("step,loss\n25,2.0\n")
    publish(stage, "stage1", data, "cmd")
    assert provenance_record("published:stage1") != first
    assert keys.stage_key(notebook_stage, {"init": "published:stage1"}, {}, "lib", "no") != key


def test_the_committed_checkpoints_hold_the_tokens_the_later_methods_write():
    """CoT's and routing's tokens, with rows, in the published order; the digests match the migrated configs."""
    from speechkit.slam_asr.cot import THINK_TOKENS
    from speechkit.speech_hands.routing import ROUTING_TOKENS

    for name in ("stage1", "stage2", "stage3"):
        folder = published_path(f"published:{name}")
        config = json.loads((folder / "speech_llm.json").read_text())
        assert config["extra_tokens"] == [*THINK_TOKENS, *ROUTING_TOKENS], name
    model = SpeechLLM.load(published_path("published:stage3"))  # token rows of another count would not load
    model.require_tokens((*THINK_TOKENS, *ROUTING_TOKENS), "CoT and routing")
    assert model.tokenizer.convert_tokens_to_ids(list(model.config.tokens)) == list(
        range(len(model.tokenizer) - len(model.config.tokens), len(model.tokenizer)))  # added in order at the end
