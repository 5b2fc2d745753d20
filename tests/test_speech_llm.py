import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from speechkit.core.vocab import AUDIO_PLACEHOLDER
from speechkit.data.audio import load_utterance
from speechkit.data.features import log_mel
from speechkit.data.manifest import read_manifest, read_nbest, write_manifest
from speechkit.engine.decoding import DecodingConfig, cut_repetitions, decode, parse, strip_echo, to_nbest
from speechkit.models.asr import encode
from speechkit.models.speech_llm import STAGES, Example, SpeechLLM, SpeechLLMConfig, Stage, TargetSpan


@pytest.fixture
def model(tiny_checkpoints):
    whisper, llm = tiny_checkpoints
    torch.manual_seed(0)
    return SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32))


@pytest.fixture(scope="module")
def batch(smoke_benchmark):
    root, _ = smoke_benchmark
    utterances = read_manifest(root / "source_train.jsonl")[:3] + read_manifest(root / "multilingual_train.jsonl")[:2]
    return [Example(load_utterance(u, root), u.language, u.text) for u in utterances]


def untargeted(examples):
    return [Example(e.audio, e.language) for e in examples]


@pytest.mark.parametrize("kind", ["conv", "stack"])
def test_projector_gives_one_embedding_per_100_ms(tiny_checkpoints, kind):
    whisper, llm = tiny_checkpoints
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector=kind,
                                                            projector_hidden=32))
    audios = [np.zeros(32_000, np.float32), np.zeros(12_345, np.float32)]  # 2.0 s and 0.77 s
    embeddings, lengths = model.embed_audio([Example(a, "en") for a in audios])
    assert lengths.tolist() == [20, 8]  # 10 Hz: 200 mel frames -> 100 encoder frames -> 20; 77 -> 39 -> 8
    assert embeddings.shape == (2, 20, model.llm.config.hidden_size)


def test_encoder_output_does_not_depend_on_the_batch(model, batch):
    audios = [e.audio for e in batch]
    hidden, lengths = encode(model.encoder, *log_mel(audios, model.n_mels))
    for i, audio in enumerate(audios):
        alone, [length] = encode(model.encoder, *log_mel([audio], model.n_mels))
        assert lengths[i] == length
        torch.testing.assert_close(hidden[i, :length], alone[0], atol=1e-5, rtol=1e-5)


def test_audio_is_spliced_at_the_placeholder(model, batch):
    stage = STAGES[2]
    inputs = model.build_inputs(batch[:1], stage, with_targets=True)
    prompt = model.tokenizer(model.prompt_text(batch[0], stage), add_special_tokens=False).input_ids
    at = prompt.index(model.placeholder_id)
    audio, [n_audio] = model.embed_audio(batch[:1])
    embed = model.llm.get_input_embeddings()
    row = inputs["inputs_embeds"][0]
    torch.testing.assert_close(row[:at], embed(torch.tensor(prompt[:at])))
    torch.testing.assert_close(row[at:at + n_audio], audio[0, :n_audio])
    torch.testing.assert_close(row[at + n_audio:len(prompt) - 1 + n_audio], embed(torch.tensor(prompt[at + 1:])))
    assert AUDIO_PLACEHOLDER in model.prompt_text(batch[0], stage) and "<speech>" in model.prompt_text(batch[0], stage)


def test_prompt_templates(tiny_checkpoints, batch):
    whisper, llm = tiny_checkpoints
    plain = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=16))
    french = batch[3]
    assert plain.prompt_text(french, STAGES[1]) == "USER: <audio> Transcribe the speech above. ASSISTANT:"
    assert plain.prompt_text(french, STAGES[3]) == (
        "USER: <speech><audio></speech> Transcris la parole ci-dessus. ASSISTANT:")
    chat = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=16,
                                                           template="chat"))
    chat.tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                                    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    text = chat.prompt_text(batch[0], STAGES[2])
    assert text == ("<|im_start|>user\n<speech><audio></speech> Transcribe the speech above.<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert chat.build_inputs(batch[:1], STAGES[2], with_targets=False)["inputs_embeds"].shape[0] == 1
    with pytest.raises(ValueError, match="needs {speech} and {prompt}"):
        SpeechLLMConfig("w", "l", template="USER: {prompt}")


def test_only_targets_are_in_the_loss_and_method_spans_are_weighted(model, batch):
    stage = Stage("cot", output_format="tagged", span_weights={"reasoning": 0.1})
    example = Example(batch[0].audio, "en", "hello there", spans=(TargetSpan(" maybe it was hello", "reasoning"),))
    inputs = model.build_inputs([example], stage, with_targets=True)
    labels, weights = inputs["labels"][0], inputs["weights"][0]
    spans = model.target_spans(example, stage)
    n_target = sum(len(model.tokenizer(t, add_special_tokens=False).input_ids) for t, _ in spans)
    assert (labels != -100).sum() == n_target and (weights > 0).sum() == n_target
    assert labels[:-n_target].eq(-100).all()  # prompt and audio positions never count
    reasoning = len(model.tokenizer(spans[1][0], add_special_tokens=False).input_ids)
    assert torch.isclose(weights, torch.tensor(0.1)).sum() == reasoning
    decoded = model.tokenizer.decode(labels[labels != -100])
    assert decoded.startswith(" <LANG_en> maybe it was") and decoded.endswith("hello there </transcribe><|endoftext|>")


def test_a_span_marked_first_precedes_the_language_tag_and_a_weight_not_given_is_one(model, batch):
    example = Example(batch[0].audio, "en", "hi", spans=(TargetSpan(" after", "b"), TargetSpan("yes", "a", first=True)))
    spans = model.target_spans(example, Stage("x", output_format="tagged", span_weights={"a": 0.5}))
    assert spans == [("yes", 0.5), (" <LANG_en>", 1.0), (" after", 1.0),
                     (" <transcribe> hi </transcribe><|endoftext|>", 1.0)]
    assert model.target_spans(example, Stage("x")) == [(" hi<|endoftext|>", 1.0)]  # plain output: the transcript
    with pytest.raises(ValueError, match="span weights must be >= 0"):
        Stage("x", span_weights={"a": -1.0})


def test_extra_tokens_get_rows_between_the_speech_and_language_tags_and_survive_save_and_load(tiny_checkpoints,
                                                                                             batch, tmp_path):
    whisper, llm = tiny_checkpoints
    plain = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=16))
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=16,
                                                            extra_tokens=("<yes>", "<no>")))
    assert model.config.tokens[5:7] == ("<yes>", "<no>") and model.config.tokens[7] == "<LANG_en>"
    assert len(model.tokenizer) == len(plain.tokenizer) + 2
    assert model.tokenizer.tokenize("<yes><no>") == ["<yes>", "<no>"]  # each one token, as the rows assume
    model.require_tokens(("<yes>",), "a method")
    with pytest.raises(ValueError, match="a method writes <think>, which this speech LLM was built without"):
        plain.require_tokens(("<think>", "<transcribe>"), "a method")
    model.start_stage(STAGES[2])
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "trainable_tokens_delta" in name:
                parameter.add_(torch.randn_like(parameter))
    model.save(tmp_path)
    loaded = SpeechLLM.load(tmp_path)
    assert loaded.config.extra_tokens == ("<yes>", "<no>")
    saved = json.loads((tmp_path / "speech_llm.json").read_text())  # as a model saved before extra_tokens existed
    (tmp_path / "speech_llm.json").write_text(json.dumps({**saved, "extra_tokens": []}))
    count = len(loaded.config.tokens)
    with pytest.raises(ValueError, match=f"weights hold {count} rows of kit tokens, its speech_llm.json names "
                                         f"{count - 2} "):
        SpeechLLM.load(tmp_path)
    ids = loaded.tokenizer.convert_tokens_to_ids(["<yes>", "<no>"])
    assert ids == model.tokenizer.convert_tokens_to_ids(["<yes>", "<no>"])
    torch.testing.assert_close(loaded.llm.get_input_embeddings()(torch.tensor(ids)),
                               model.eval().llm.get_input_embeddings()(torch.tensor(ids)))
    for bad in (("<yes>", "<yes>"), ("<transcribe>",)):
        with pytest.raises(ValueError, match="extra_tokens must be distinct and not the kit's own"):
            SpeechLLMConfig("w", "l", extra_tokens=bad)


def test_weighted_loss_is_the_weighted_mean_of_token_losses(model, batch):
    stage = Stage("cot", output_format="tagged", span_weights={"guess": 0.25})
    examples = [Example(e.audio, e.language, e.target, spans=(TargetSpan(" a guess", "guess"),)) for e in batch[:2]]
    loss, _ = model.loss(examples, stage)
    inputs = model.build_inputs(examples, stage, with_targets=True)
    logits = model.llm(inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"],
                       position_ids=inputs["position_ids"]).logits
    labels, weights = inputs["labels"][:, 1:], inputs["weights"][:, 1:]
    token = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels.clamp(min=0), reduction="none")
    torch.testing.assert_close(loss, (token * weights).sum() / weights.sum())


def test_each_stage_trains_exactly_its_parameters(model):
    def trained():
        return {name for name, p in model.named_parameters() if p.requires_grad}
    model.start_stage(STAGES[1])
    assert trained() and all(name.startswith("projector.") for name in trained())
    model.start_stage(STAGES[2])
    assert {n.split(".")[0] for n in trained()} == {"projector", "llm"}
    rows = {n: p for n, p in model.named_parameters() if "trainable_tokens_delta" in n}
    assert trained() == rows.keys() | {n for n in trained() if n.startswith("projector.")}
    # only the kit's token rows, in the embeddings and in the LM head: not the whole matrix
    assert {n.split(".")[-3] for n in rows} == {"embed_tokens", "lm_head"}
    assert all(p.shape[0] == len(model.config.tokens) for p in rows.values())
    counts = model.start_stage(STAGES[3])
    lora = {n for n in trained() if "lora_" in n}
    assert trained() == lora | {n for n in trained() if n.startswith("projector.")}
    assert any(n.startswith("llm.") for n in lora) and any(n.startswith("encoder.") for n in lora)
    assert counts["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert model.config.stages == ("projector", "special tokens", "lora")


def test_lora_model_saves_and_loads_with_identical_outputs(model, batch, tmp_path):
    for number in (1, 2, 3):
        model.start_stage(STAGES[number])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # move every trained parameter away from its initial value
        loss, _ = model.loss(batch, STAGES[3])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save(tmp_path / "model")
    loaded = SpeechLLM.load(tmp_path / "model")
    with torch.no_grad():
        assert loaded.loss(batch, STAGES[3])[0].item() == pytest.approx(model.loss(batch, STAGES[3])[0].item(),
                                                                          abs=1e-6)
    config = DecodingConfig(max_new_tokens=8)
    assert [d[0].raw for d in decode(loaded, untargeted(batch), STAGES[3], config)] == \
        [d[0].raw for d in decode(model, untargeted(batch), STAGES[3], config)]


@pytest.mark.parametrize("method, beams", [("greedy", 1), ("beam", 3)])
def test_batched_decoding_equals_one_at_a_time(model, batch, method, beams):
    config = DecodingConfig(method=method, num_beams=beams, max_new_tokens=10)
    together = decode(model, untargeted(batch), STAGES[2], config)
    alone = [decode(model, [example], STAGES[2], config)[0] for example in untargeted(batch)]
    assert [d[0].raw for d in together] == [d[0].raw for d in alone]


def test_nbest_is_ranked_and_round_trips_through_the_manifest_format(model, batch, tmp_path):
    config = DecodingConfig(method="beam", num_beams=4, nbest=3, max_new_tokens=6)
    decoded = decode(model, untargeted(batch[:2]), STAGES[2], config)
    assert all(len(d) == 3 and [h.score for h in d] == sorted((h.score for h in d), reverse=True) for d in decoded)
    lists = [to_nbest(f"u{i}", "speech-llm", d) for i, d in enumerate(decoded)]
    write_manifest(tmp_path / "n.nbest.jsonl", lists)
    assert read_nbest(tmp_path / "n.nbest.jsonl") == lists


def test_sampling_methods_are_seeded(model, batch):
    config = DecodingConfig(method="beam_sampling", num_beams=3, nbest=2, temperature=0.5, max_new_tokens=6)
    first = decode(model, untargeted(batch[:2]), STAGES[2], config, seed=1)
    again = decode(model, untargeted(batch[:2]), STAGES[2], config, seed=1)
    assert [[h.raw for h in d] for d in first] == [[h.raw for h in d] for d in again]


@pytest.mark.parametrize("changes, message", [
    ({"method": "nucleus"}, "unknown decoding method"),
    ({"method": "beam", "num_beams": 1}, "needs num_beams >= 2"),
    ({"method": "greedy", "num_beams": 4}, "one beam"),
    ({"method": "beam", "num_beams": 2, "nbest": 3}, "cannot exceed"),
])
def test_decoding_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        DecodingConfig(**changes)


def test_output_parsing_and_guards():
    assert parse("<LANG_fr> <transcribe> bonjour à tous </transcribe>") == ("fr", "bonjour à tous")
    assert parse("just text <think>") == (None, "just text")
    assert cut_repetitions("the the the the the cat", 3) == ("the cat", True)
    assert cut_repetitions("i said go go now", 3) == ("i said go go now", False)
    assert cut_repetitions("a b a b a b a b c", 3) == ("a b c", True)
    assert strip_echo("Transcribe the speech above. hello there") == ("hello there", True)
    assert strip_echo("hello there") == ("hello there", False)


def test_checkpoint_references_name_stages_paths_or_hub_ids(tmp_path):
    from speechkit.engine.recipes import resolve_checkpoint
    out = tmp_path / "results" / "smoke" / "11_next"
    (tmp_path / "results" / "smoke" / "10_previous" / "checkpoint").mkdir(parents=True)
    assert resolve_checkpoint("10_previous", out) == str(tmp_path / "results/smoke/10_previous/checkpoint")
    assert resolve_checkpoint("notebooks/params", out) == "notebooks/params"  # inside the repository: kept relative
    assert resolve_checkpoint("openai/whisper-large-v3-turbo", out) == "openai/whisper-large-v3-turbo"


def test_stage_setup_takes_lists_of_manifests_and_refuses_a_bare_string_or_an_empty_list():
    from speechkit.slam_asr.stages import StageSetup
    setup = StageSetup(stage=3, init="12_stage3_lora", train_manifests=["source_train"], eval_manifests=["a", "b"])
    assert setup.train_manifests == ("source_train",) and setup.eval_manifests == ("a", "b")
    assert StageSetup(stage=1, encoder="e", llm="l").train_manifests == ("source_train", "multilingual_train")
    for bad in ("source_train,multilingual_train", [], ["source_train", ""]):
        with pytest.raises(ValueError, match="train_manifests must be a non-empty list of names"):
            StageSetup(stage=3, init="12_stage3_lora", train_manifests=bad)
    with pytest.raises(ValueError, match="eval_manifests must be a non-empty list of names"):
        StageSetup(stage=3, init="12_stage3_lora", eval_manifests="source_dev")
    assert StageSetup(stage=3, init="x", extra_tokens=[]).extra_tokens == ()  # no method's tokens
    assert StageSetup(stage=3, init="x", extra_tokens=["<a>", "<b>"]).extra_tokens == ("<a>", "<b>")
    with pytest.raises(ValueError, match="extra_tokens must be a non-empty list of names"):
        StageSetup(stage=3, init="x", extra_tokens="<a>")


def test_a_pattern_that_matches_nothing_warns_and_the_trainable_share_is_reported(model):
    import dataclasses

    import pytest

    typo = dataclasses.replace(STAGES[1], name="typo", train=(r"^projektor\.",))
    with pytest.warns(UserWarning, match="projektor"):
        counts = model.start_stage(typo)
    assert counts["trainable"] == 0 and counts["trainable share"] == 0.0
    counts = model.start_stage(STAGES[1])
    assert 0 < counts["trainable share"] < 1


def test_cached_encoder_frames_give_the_loss_the_audio_gives_while_the_encoder_is_frozen(model, batch):
    """Stages 1-2 train on cached encoder outputs: the same loss; once the encoder trains (LoRA), audio is encoded."""
    model.start_stage(STAGES[1])
    hidden, lengths = model.encode_audio([e.audio for e in batch])
    cached = [replace(e, frames=hidden[i, :lengths[i]].detach().numpy()) for i, e in enumerate(batch)]
    torch.testing.assert_close(model.loss(cached, STAGES[1])[0], model.loss(batch, STAGES[1])[0])
    wrong = [replace(e, frames=np.zeros_like(e.frames)) for e in cached]  # frames that are not the audio's
    assert model.loss(wrong, STAGES[1])[0] != model.loss(batch, STAGES[1])[0]
    model.start_stage(STAGES[3])  # LoRA on the encoder: the cache no longer holds what it computes
    assert not model.encoder_frozen
    torch.testing.assert_close(model.loss(wrong, STAGES[3])[0], model.loss(batch, STAGES[3])[0])


def test_projector_norm_starts_audio_embeddings_at_the_llms_embedding_scale(tiny_checkpoints, batch):
    whisper, llm = tiny_checkpoints
    torch.manual_seed(0)
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32,
                                                            projector_norm=True))
    audio, lengths = model.embed_audio(batch[:2])
    table_rms = model.llm.get_input_embeddings().weight.pow(2).mean().sqrt()
    audio_rms = audio[0, :lengths[0]].pow(2).mean().sqrt()
    torch.testing.assert_close(audio_rms, table_rms, rtol=1e-3, atol=1e-5)


def test_the_ctc_loss_is_added_with_its_weight_and_reaches_only_the_projector(model, batch):
    plain = STAGES[1]
    with_ctc = replace(plain, ctc_weight=0.5)
    model.start_stage(with_ctc)
    base, _ = model.loss(batch, plain)
    total, parts = model.loss(batch, with_ctc)
    assert parts["ctc"] > 0
    torch.testing.assert_close(total, base + 0.5 * torch.tensor(parts["ctc"]), rtol=1e-4, atol=1e-4)
    total.backward()
    assert model.projector.linear2.weight.grad is not None
    with pytest.raises(ValueError, match="ctc_weight"):
        Stage("x", ctc_weight=-1.0)


def test_llm_only_lora_leaves_the_encoder_frozen_and_survives_save_and_load(tiny_checkpoints, batch, tmp_path):
    from speechkit.models.speech_llm import LLM_LORA_TARGETS

    whisper, llm = tiny_checkpoints
    torch.manual_seed(0)
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32))
    early = replace(STAGES[1], lora_rank=4, lora_targets=LLM_LORA_TARGETS)
    model.start_stage(early)
    assert model.encoder_frozen and any("lora_" in n for n, p in model.llm.named_parameters() if p.requires_grad)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # adapters that change the output
    model.save(tmp_path)
    loaded = SpeechLLM.load(tmp_path)
    model.eval()
    torch.testing.assert_close(loaded.loss(batch, early)[0], model.loss(batch, early)[0])


def test_stage_2_saves_the_kit_token_rows_not_the_embedding_matrix_and_reloads_them(model, batch, tmp_path):
    from safetensors.torch import load_file

    model.start_stage(STAGES[1])
    model.start_stage(STAGES[2])
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "trainable_tokens_delta" in name:
                parameter.add_(torch.randn_like(parameter))  # rows that moved in training
    before, _ = model.loss(batch, STAGES[2])
    model.save(tmp_path)
    stored = load_file(str(tmp_path / "trained.safetensors"))
    assert not any(name.endswith("embed_tokens.weight") or name.endswith("lm_head.weight") for name in stored)
    assert all(tensor.shape[0] == len(model.config.tokens)
               for name, tensor in stored.items() if "trainable_tokens" in name)
    loaded = SpeechLLM.load(tmp_path)
    torch.testing.assert_close(loaded.loss(batch, STAGES[2])[0], before)
    ids = model.tokenizer.convert_tokens_to_ids(["<transcribe>", "the"])
    rows = loaded.llm.get_input_embeddings()(torch.tensor(ids))
    base = model.llm.get_input_embeddings().base_layer(torch.tensor(ids))
    assert not torch.equal(rows[0], base[0]) and torch.equal(rows[1], base[1])  # only the kit's rows changed


def test_token_rows_are_merged_outside_training_and_give_the_same_outputs(model, batch):
    """Merged (no copy of the whole matrix per forward) unless they train; merged or not, the same numbers."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    model.start_stage(STAGES[2])
    layers = [m for m in model.llm.modules() if isinstance(m, TrainableTokensLayer)]
    assert len(layers) == 2 and layers[0].base_layer.weight is not layers[1].base_layer.weight
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "trainable_tokens_delta" in name:
                parameter.add_(torch.randn_like(parameter))
    model.train()
    assert not any(layer.merged for layer in layers)
    torch.manual_seed(0)
    unmerged = model.llm.base_model.embed_tokens(torch.tensor([[1, 2, 3]])).detach()
    ids = torch.tensor(model.tokenizer.convert_tokens_to_ids(list(model.config.tokens[:3])))
    learning = model.llm.get_input_embeddings()(ids).detach()
    model.eval()
    assert all(layer.merged for layer in layers)
    torch.testing.assert_close(model.llm.get_input_embeddings()(ids), learning)
    torch.testing.assert_close(model.llm.base_model.embed_tokens(torch.tensor([[1, 2, 3]])), unmerged)
    model.start_stage(STAGES[3])  # the rows no longer train: merged in training too
    model.train()
    assert all(layer.merged for layer in layers)


def test_without_the_lm_loss_the_ctc_trains_the_projector_alone_and_no_llm_runs(model, batch, monkeypatch):
    warmup = Stage("ctc warm-up", lm_weight=0.0, ctc_weight=1.0)
    model.start_stage(warmup)
    audio, lengths = model.embed_audio(batch)
    expected = model.embedding_ctc_loss(audio, lengths, [e.target for e in batch])
    monkeypatch.setattr(model.llm, "forward", lambda *a, **k: pytest.fail("the LLM ran"))
    loss, parts = model.loss(batch, warmup)
    torch.testing.assert_close(loss, expected)
    assert parts == {"ctc": pytest.approx(expected.item())}
    loss.backward()
    assert model.projector.linear2.weight.grad is not None
    with pytest.raises(ValueError, match="one of them > 0"):
        Stage("x", lm_weight=0.0)


def test_the_embedding_readout_says_what_the_ctc_taught_the_projector(model, batch):
    # one utterance learnt by heart: the projector's nearest embeddings then spell its transcript (four words: the
    # tiny test tokenizer spells a whole sentence in more tokens than the audio has embeddings)
    warmup = Stage("ctc warm-up", lm_weight=0.0, ctc_weight=1.0)
    model.start_stage(warmup)
    example = [replace(batch[0], target=" ".join(batch[0].target.split()[:4]))]
    before = model.embedding_readout(example)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(60):
        loss, _ = model.loss(example, warmup)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert before != [example[0].target]
    assert model.embedding_readout(example) == [example[0].target]


def test_an_audio_embedding_equal_to_a_tokens_row_reads_as_that_token_in_an_anisotropic_table(model):
    # a trained LLM's embedding rows share a common direction (SmolLM2's mean cosine is 0.44): the tiny random LLM's
    # rows given one too, the embedding CTC must still tell each row from the others
    table = model.llm.get_input_embeddings().weight
    with torch.no_grad():
        table.add_(3 * table.std() * torch.ones(table.shape[1]))
    ids = torch.arange(0, len(table), 7)
    log_probs = model.embedding_log_probs(table[ids][None])[0]
    assert log_probs.argmax(-1).tolist() == ids.tolist()
    assert log_probs[torch.arange(len(ids)), ids].exp().median() > 0.9


def test_a_model_loaded_in_bfloat16_decodes_like_the_float32_one(model, batch, tmp_path, tiny_checkpoints):
    """Decoding-only paths load models in bfloat16 on a GPU (`models.device.inference_dtype`); the CPU runs the same
    code, so the bf16 path is tested here: every input follows the weights' dtype, and the texts are the float32 ones
    but for rounding (the tiny random models' logits are close together, so compare the first tokens)."""
    from speechkit.models import asr

    model.save(tmp_path / "speech_llm")
    half = SpeechLLM.load(tmp_path / "speech_llm", dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    config = DecodingConfig(max_new_tokens=3)
    full = [d[0].raw for d in decode(model, untargeted(batch), STAGES[3], config)]
    assert [d[0].raw for d in decode(half, untargeted(batch), STAGES[3], config)][0][:1] == full[0][:1]
    whisper, tokenizer = asr.load_asr(str(tiny_checkpoints[0]), dtype=torch.bfloat16)
    decoded = asr.transcribe(whisper, tokenizer, [e.audio for e in batch[:2]], ["en", "en"])
    assert len(decoded) == 2 and all(isinstance(n[0].text, str) for n in decoded)

