"""The pretraining's pieces: a resumable, larger benchmark, the encoder cache, and the recipe proxy."""

import dataclasses

import numpy as np
import pytest
import torch

from speechkit.data import benchmark
from speechkit.data.audio import load_utterance
from speechkit.data.benchmark import BenchmarkConfig, content_hash, generate
from speechkit.data.manifest import read_manifest
from speechkit.data.textgen import SentencePool
from speechkit.engine.encoder_cache import EncoderCache
from speechkit.slam_asr.stages import StageSetup
from speechkit.engine.training import TrainConfig
from speechkit.models.speech_llm import LLM_LORA_TARGETS, STAGES, SpeechLLM, SpeechLLMConfig
from speechkit.slam_asr import pretraining
from speechkit.slam_asr.pretraining import CURVE_FILE, ProxyConfig, read_curve, run_variant, variant_configs

TINY = dict(source_train=3, source_dev=1, source_test=1, target_pool=0, target_dev=0, target_test=1,
            multilingual_train=0, multilingual_dev=0, multilingual_test=0, conversations_train=0,
            conversations_dev=0, conversations_test=0, workers=1)  # conversation turns are remade on a rerun


def test_an_interrupted_generation_resumes_with_the_audio_it_wrote(tmp_path, monkeypatch):
    clean = generate(BenchmarkConfig(**TINY), tmp_path / "clean", progress=False)
    calls = []
    synthesize = benchmark.synthesize
    monkeypatch.setattr(benchmark, "synthesize", lambda *a, **k: calls.append(a[1]) or synthesize(*a, **k))

    def interrupted(*args):
        raise KeyboardInterrupt  # killed after synthesis, before the manifests were written

    monkeypatch.setattr(benchmark, "_mix_conversations", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(BenchmarkConfig(**TINY), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() and (tmp_path / "run.partial" / benchmark.PARTIAL_CONFIG).is_file()
    synthesised = len(calls)
    monkeypatch.undo()
    monkeypatch.setattr(benchmark, "synthesize", lambda *a, **k: calls.append(a[1]) or synthesize(*a, **k))
    resumed = generate(BenchmarkConfig(**{**TINY, "workers": 1}), tmp_path / "run", progress=False)
    assert len(calls) == synthesised, "nothing is synthesised twice"
    assert resumed["sha256"] == clean["sha256"] == content_hash(tmp_path / "run")
    # a rerun of the finished benchmark reuses its audio too; a lost file is made again, identical
    (tmp_path / "run" / "audio" / "source_train" / "source_train-00001.wav").unlink()
    again = generate(BenchmarkConfig(**TINY), tmp_path / "run", progress=False)
    assert len(calls) == synthesised + 1 and again["sha256"] == clean["sha256"]
    # another configuration starts afresh
    other = generate(BenchmarkConfig(**{**TINY, "seed": 1}), tmp_path / "run", progress=False)
    assert other["sha256"] != clean["sha256"] and len(calls) > synthesised + 1


def test_flac_audio_holds_the_same_16_bit_samples_and_validates(tmp_path):
    wav = generate(BenchmarkConfig(**TINY), tmp_path / "wav", progress=False)
    flac = generate(BenchmarkConfig(**{**TINY, "audio_format": "flac"}), tmp_path / "flac", progress=False)
    assert wav["sha256"] != flac["sha256"]
    for a, b in zip(read_manifest(tmp_path / "wav" / "source_train.jsonl"),
                    read_manifest(tmp_path / "flac" / "source_train.jsonl"), strict=True):
        assert b.audio.endswith(".flac") and a.duration == b.duration
        # libsndfile rounds float to 16 bits slightly differently per format: at most one step apart
        np.testing.assert_allclose(load_utterance(a, tmp_path / "wav"), load_utterance(b, tmp_path / "flac"),
                                   rtol=0, atol=1.01 / 32768)
    with pytest.raises(ValueError, match="audio_format"):
        BenchmarkConfig(audio_format="mp3")


def test_a_training_set_larger_than_its_partition_continues_in_the_text_corpus_never_in_dev_or_test():
    pool = SentencePool("general", "en", "", {"train": ("a b.", "c d."), "corpus": ("e f.", "g h."),
                                              "dev": ("x y.",), "test": ("z w.",)})
    assert [benchmark._training_sentence(pool, i).text for i in range(4)] == ["a b.", "c d.", "e f.", "g h."]
    with pytest.raises(ValueError, match="ask for fewer utterances"):
        benchmark._training_sentence(pool, 4)


@pytest.fixture
def model(tiny_checkpoints):
    whisper, llm = tiny_checkpoints
    torch.manual_seed(0)
    return SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=16))


def test_the_encoder_cache_holds_the_encoders_output_and_only_its_own(model, tiny_checkpoints, smoke_benchmark,
                                                                    tmp_path):
    root, _ = smoke_benchmark
    utterances = read_manifest(root / "source_dev.jsonl")[:3]
    audios = [load_utterance(u, root) for u in utterances]
    model.start_stage(STAGES[1])
    cache = EncoderCache(tmp_path, model)
    frames = cache.frames(model, utterances, audios)
    hidden, lengths = model.encode_audio(audios)
    for i, f in enumerate(frames):
        assert f.dtype == np.float16 and len(f) == lengths[i]
        np.testing.assert_allclose(f.astype(np.float32), hidden[i, :lengths[i]].detach().numpy(), atol=2e-3,
                                   rtol=2e-3)
    assert len(list(cache.folder.glob("*.npy"))) == 3
    with torch.no_grad():
        model.encoder.layer_norm.bias.add_(1.0)  # another encoder: another folder, nothing stale is read
    assert EncoderCache(tmp_path, model).folder != cache.folder
    model.start_stage(STAGES[3])
    with pytest.raises(ValueError, match="the encoder trains"):
        cache.frames(model, utterances, audios)


def test_stage_options_that_depart_from_the_paper_are_named_and_off_by_default(tiny_checkpoints):
    whisper, llm = tiny_checkpoints
    base = StageSetup(stage=1, encoder=str(whisper), llm=str(llm))
    assert base.spec == STAGES[1]
    early = dataclasses.replace(base, early_lora=8, ctc_weight=0.2)
    assert early.spec.lora_rank == 8 and early.spec.lora_targets == LLM_LORA_TARGETS and early.spec.ctc_weight == 0.2
    assert dataclasses.replace(base, stage=3, early_lora=8).spec.lora_rank == STAGES[3].lora_rank
    with pytest.raises(ValueError, match="early_lora and ctc_weight"):
        dataclasses.replace(base, ctc_weight=-0.1)


def test_variants_override_by_name_and_unknown_names_are_errors(tiny_checkpoints):
    whisper, llm = tiny_checkpoints
    setup, train_config = StageSetup(stage=1, encoder=str(whisper), llm=str(llm)), TrainConfig()
    varied_setup, varied_train = variant_configs(setup, train_config, {"projector_norm": True, "learning_rate": 3e-3})
    assert varied_setup.projector_norm and varied_train.learning_rate == 3e-3 and not setup.projector_norm
    with pytest.raises(ValueError, match="not options of StageSetup or TrainConfig"):
        ProxyConfig(variants={"typo": {"projektor_norm": True}})


def test_a_variant_records_its_curve_and_is_not_retrained_once_finished(tiny_checkpoints, smoke_benchmark, tmp_path,
                                                                       monkeypatch):
    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    setup = StageSetup(stage=1, encoder=str(whisper), llm=str(llm), projector_hidden=16, max_batch=4,
                       train_manifests=("source_train",), encoder_cache=True,
                       template="USER: {speech} {prompt} ASSISTANT:")  # the tiny LM has no chat template
    train_config = TrainConfig(max_steps=4, warmup_steps=0, learning_rate=1e-2)
    # scored on utterances it trains on: 4 steps of the tiny LM fit them, not yet unseen ones (whose loss moved by
    # 0.001 either way with the benchmark's text)
    proxy = ProxyConfig(variants={"paper": {}}, eval_every=2, wer_every=3, eval_manifest="source_train",
                        eval_utterances=2, max_new_tokens=8)
    curve = run_variant(setup, train_config, proxy, root, tmp_path, progress=False)
    assert [p.step for p in curve] == [0, 2, 3, 4]
    assert [p.dev_wer is not None for p in curve] == [True, False, True, True]
    assert curve[-1].dev_loss < curve[0].dev_loss  # it learns
    assert read_curve(tmp_path / CURVE_FILE) == curve
    monkeypatch.setattr(pretraining, "train_stage", lambda *a, **k: pytest.fail("a finished variant retrained"))
    assert run_variant(setup, train_config, proxy, root, tmp_path, progress=False) == curve


def test_variants_trained_side_by_side_give_the_curves_they_give_one_after_the_other(tiny_checkpoints, smoke_benchmark,
                                                                                    tmp_path):
    from speechkit.slam_asr.pretraining import run_variants

    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    setup = StageSetup(stage=1, encoder=str(whisper), llm=str(llm), projector_hidden=16, max_batch=4,
                       train_manifests=("source_train",), template="USER: {speech} {prompt} ASSISTANT:")
    train_config = TrainConfig(max_steps=2, warmup_steps=0, learning_rate=1e-2)
    proxy = ProxyConfig(variants={"paper": {}, "norm": {"projector_norm": True}}, eval_every=1, eval_utterances=2,
                        max_new_tokens=4)
    side_by_side = run_variants(setup, train_config, proxy, root, tmp_path / "two", workers=2)
    one_by_one = run_variants(setup, train_config, proxy, root, tmp_path / "one", workers=1)
    assert list(side_by_side) == ["paper", "norm"] and side_by_side == one_by_one
    assert side_by_side["paper"] != side_by_side["norm"]


def test_the_ctc_warmup_trains_the_projector_alone_first_and_is_not_repeated_on_resume(tiny_checkpoints,
                                                                                       smoke_benchmark, tmp_path,
                                                                                       capsys):
    from speechkit.slam_asr.stages import CTC_WARMUP, build, train_stage
    from speechkit.engine.training import STATE_FILE

    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    setup = StageSetup(stage=1, encoder=str(whisper), llm=str(llm), projector_hidden=16, max_batch=2,
                       train_manifests=("source_train",), template="USER: {speech} {prompt} ASSISTANT:",
                       early_lora=4, ctc_warmup_steps=3, ctc_warmup_batch=4)
    config = TrainConfig(max_steps=2, warmup_steps=0, learning_rate=1e-2)

    def trained(folder):
        model = build(setup, folder)
        model.start_stage(setup.spec)
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        log = train_stage(model, setup, config, root, folder / "checkpoint", progress=False)
        return model, start, log

    model, start, log = trained(tmp_path)
    warm = torch.load(tmp_path / "checkpoint" / CTC_WARMUP / STATE_FILE, weights_only=False)
    assert warm["state"]["step"] == 3 and log.steps == 2
    assert {n for n in warm["model"]} == {n for n in start if n.startswith("projector.")}  # the projector alone
    assert all(p.requires_grad == ("projector." in n or "lora_" in n) for n, p in model.named_parameters())
    capsys.readouterr()
    again, _, _ = trained(tmp_path)  # a rerun resumes both: nothing trains again, the same weights come out
    assert "resumed at step 3\nresumed at step 2" in capsys.readouterr().out
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, dict(again.named_parameters())[name])
    with pytest.raises(ValueError, match="needs a new model"):
        dataclasses.replace(setup, init="10_stage1_projector")
