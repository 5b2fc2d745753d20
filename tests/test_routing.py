"""Speech-Hands: external N-best, routing labels, the action token in training and decoding, reports, GER."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from speechkit.data.audio import load_utterance
from speechkit.data.manifest import Hypothesis, NBest, read_manifest, read_nbest
from speechkit.engine import recipes
from speechkit.engine.decoding import Decoded
from speechkit.engine.training import TrainConfig
from speechkit.models.speech_llm import STAGES, SpeechLLM, SpeechLLMConfig
from speechkit.speech_hands import routing
from speechkit.speech_hands.claims import ROUTED_MINUS_BEST
from speechkit.speech_hands.experiment import (CASCADE, INTERNAL, ROUTED, RoutingConfig, RoutingData, comparisons,
                                               report_metrics, score_systems)
from speechkit.speech_hands.external import (PocketsphinxASR, make_recognizer, nbest_path, recognize_manifest,
                                             score_nbest)
from speechkit.speech_hands.routing import (ACTION, ROUTING_STAGE, ROUTING_TOKENS, Decision, GERCorrector, RoutingItem,
                                            read_decisions, route, routing_items, routing_label, routing_report,
                                            save_decisions, train_router)


@pytest.mark.parametrize("internal, external, expected", [
    ("The cat, sat.", "the cat sat", "internal"),      # both right: the model trusts itself first
    ("the bat sat", "The cat sat!", "external"),
    ("the bat sat", "a cat sat", "rewrite"),
    ("", "", "rewrite"),
])
def test_routing_labels_follow_the_papers_builder(internal, external, expected):
    assert routing_label("the cat sat", internal, external, "en") == expected


def test_tolerance_relaxes_what_counts_as_correct():
    reference = "alpha bravo charlie delta echo foxtrot golf hotel india juliet"
    one_wrong = reference.replace("echo", "eko")
    assert routing_label(reference, one_wrong, "", "en") == "rewrite"
    assert routing_label(reference, one_wrong, "", "en", tolerance=0.1) == "internal"


def test_routing_items_refuse_utterances_without_hypotheses(smoke_benchmark):
    root, _ = smoke_benchmark
    utterances = read_manifest(root / "source_test.jsonl")[:2]
    with pytest.raises(ValueError, match="lack an internal or external"):
        routing_items(utterances, {utterances[0].id: "x"}, {})


@pytest.fixture
def model(tiny_checkpoints):
    whisper, llm = tiny_checkpoints
    torch.manual_seed(0)
    return SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32,
                                                           extra_tokens=ROUTING_TOKENS))


def test_the_action_token_comes_first_in_the_target_with_its_weight(model, smoke_benchmark):
    root, _ = smoke_benchmark
    utterance = replace(read_manifest(root / "source_train.jsonl")[0], text="hello there")
    stage = replace(ROUTING_STAGE, span_weights={ACTION: 0.5})
    item = RoutingItem(utterance, "hello", (Hypothesis("x", 0.0),), "external")
    example = item.example(1, True, load_utterance(utterance, root))
    inputs = model.build_inputs([example], stage, with_targets=True)
    labels, weights = inputs["labels"][0], inputs["weights"][0]
    targets = labels[labels != -100]
    assert model.tokenizer.decode(targets).startswith("<external> <LANG_en> <transcribe> hello there")
    assert targets[0] == model.tokenizer.convert_tokens_to_ids("<external>")
    assert weights[labels != -100][0] == 0.5 and (weights[labels != -100][1:] == 1.0).all()
    prompt = model.prompt_text(example, stage)
    assert "External ASR hypotheses: (1) x" in prompt and "<external>" not in prompt
    assert not item.example(1, False, example.audio).spans  # decoding: no target


def test_routing_refuses_a_model_built_without_the_routing_tokens(tiny_checkpoints, smoke_benchmark, tmp_path):
    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    plain = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=16))
    items = [RoutingItem(read_manifest(root / "source_train.jsonl")[0], "a", (Hypothesis("b", 0.0),), "rewrite")]
    with pytest.raises(ValueError, match="routing writes <internal>, <external>, <rewrite>, which this speech LLM"):
        train_router(plain, ROUTING_STAGE, items, root, TrainConfig(max_steps=1), tmp_path / "router")
    with pytest.raises(ValueError, match="routing writes"):
        route(plain, ROUTING_STAGE, items, "source_train", root)


def test_the_routing_stage_trains_projector_embeddings_head_and_lora(model):
    model.start_stage(STAGES[3])
    model.start_stage(ROUTING_STAGE)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("embed_tokens" in n for n in trained) and any("lora_" in n for n in trained)
    assert all(n.startswith("projector.") or "trainable_tokens_delta" in n or "lora_" in n for n in trained)
    assert model.config.stages[-1] == "routing"


def item(utterance, internal="own words", external=("the external words", "other words"), label="rewrite"):
    return RoutingItem(utterance, internal, tuple(Hypothesis(t, -float(i)) for i, t in enumerate(external)), label)


@pytest.mark.parametrize("raw, action, output", [
    (" <internal> <LANG_en> <transcribe> model says </transcribe>", "internal", "own words"),
    (" <external> <LANG_en> <transcribe> model says </transcribe>", "external", "the external words"),
    (" <rewrite> <LANG_en> <transcribe> model says </transcribe>", "rewrite", "model says"),
    (" <LANG_en> <transcribe> model says </transcribe>", "rewrite", "model says"),  # no token: its own text
])
def test_the_emitted_token_decides_the_output(monkeypatch, smoke_benchmark, raw, action, output):
    root, _ = smoke_benchmark
    utterances = read_manifest(root / "source_test.jsonl")[:2]
    seen_prompts = []

    def fake_decode(model, examples, stage, config):
        seen_prompts.extend(e.context for e in examples)
        return [[Decoded("model says", raw, "en", -0.1, first_token_probability=0.8)] for _ in examples]

    monkeypatch.setattr(recipes, "decode", fake_decode)
    model = SimpleNamespace(require_tokens=lambda tokens, method: None)  # decoding is faked: no model runs
    decisions = route(model, ROUTING_STAGE, [item(u) for u in utterances], "source_test", root, progress=False)
    assert [d.id for d in decisions] == [u.id for u in utterances]
    assert all(d.action == action and d.output == output for d in decisions)
    assert all(d.action_probability == (0.8 if "<" + action in raw else 0.0) for d in decisions)
    assert seen_prompts == ["External ASR hypotheses: (1) the external words (2) other words"] * 2


def decision(label, action, reference="a b c d", internal="a b c d", external="a x c d", rewrite="a b y z"):
    output = {"internal": internal, "external": external, "rewrite": rewrite}[action]
    return Decision("u", "m", "source", "en", reference, internal, (Hypothesis(external, 0.0),), label, action, 0.9,
                    rewrite, output)


def test_routing_report_counts_the_confusion_matrix_and_f1():
    decisions = [decision("internal", "internal"), decision("internal", "rewrite"), decision("external", "external"),
                 decision("rewrite", "rewrite"), decision("rewrite", "external")]
    report = routing_report(decisions)
    assert report.confusion.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 1]]
    assert report.accuracy == pytest.approx(3 / 5)
    assert report.precision["external"] == pytest.approx(1 / 2) and report.recall["internal"] == pytest.approx(1 / 2)
    assert report.f1["rewrite"] == pytest.approx(1 / 2)
    assert report.macro_f1 == pytest.approx(np.mean([2 / 3, 2 / 3, 1 / 2]))


def test_oracle_routing_picks_the_candidate_with_fewest_errors():
    assert decision("internal", "rewrite", internal="a q q q", external="a b c x", rewrite="q").oracle() == "a b c x"
    assert decision("internal", "external").oracle() == "a b c d"


def test_decisions_round_trip(tmp_path):
    decisions = [decision("internal", "rewrite"), decision("external", "external")]
    save_decisions(tmp_path / "decisions.jsonl", decisions)
    assert read_decisions(tmp_path / "decisions.jsonl") == decisions


# -- external systems ------------------------------------------------------------------------------------------

def test_pocketsphinx_gives_distinct_ranked_hypotheses_in_the_nbest_format(smoke_benchmark, tmp_path):
    root, _ = smoke_benchmark
    recognizer = PocketsphinxASR(nbest=5)
    lists = recognize_manifest(recognizer, root, "source_test", tmp_path / "ps.jsonl", limit=3, progress=False)
    assert read_nbest(tmp_path / "ps.jsonl") == lists
    utterances = read_manifest(root / "source_test.jsonl")[:3]
    assert [n.id for n in lists] == [u.id for u in utterances] and all(n.system == "pocketsphinx" for n in lists)
    for nbest, utterance in zip(lists, utterances, strict=True):
        texts = [h.text for h in nbest.hypotheses]
        assert 1 < len(texts) <= 5 and len(set(texts)) == len(texts) and all(texts)
    # reproducible: a fresh recogniser over the same manifest gives the same lists
    again = recognize_manifest(PocketsphinxASR(nbest=5), root, "source_test", tmp_path / "again.jsonl", limit=3,
                               progress=False)
    assert again == lists
    top, oracle = score_nbest(lists, root, "source_test")
    assert oracle[0].wer.rate <= top[0].wer.rate


def test_pocketsphinx_is_english_only():
    with pytest.raises(ValueError, match="English only"):
        PocketsphinxASR().recognize([np.zeros(16_000, dtype=np.float32)], ["fr"])


def test_saved_nbest_lists_are_reused_only_for_the_same_recognizer(smoke_benchmark, tmp_path):
    root, _ = smoke_benchmark

    class Counting:
        name, calls, signature = "counting", 0, {"model": "a"}

        def recognize(self, audios, languages):
            Counting.calls += 1
            return [[Hypothesis("a", 0.0), Hypothesis("b", -1.0)] for _ in audios]

    path = nbest_path(tmp_path, "counting", "source_test")
    first = recognize_manifest(Counting(), root, "source_test", path, limit=2, progress=False)
    calls = Counting.calls
    assert recognize_manifest(Counting(), root, "source_test", path, limit=2, progress=False) == first
    assert Counting.calls == calls
    recognize_manifest(Counting(), root, "source_test", path, limit=3, progress=False)  # other utterances: redone
    assert Counting.calls > calls and len(read_nbest(path)) == 3
    calls = Counting.calls
    retrained = Counting()
    retrained.signature = {"model": "b"}  # another model (e.g. retrained weights): never the old lists
    recognize_manifest(retrained, root, "source_test", path, limit=3, progress=False)
    assert Counting.calls > calls


def test_whisper_nbest_and_unknown_systems(tiny_checkpoints, smoke_benchmark, tmp_path):
    root, _ = smoke_benchmark
    whisper, _ = tiny_checkpoints
    recognizer = make_recognizer("whisper", str(whisper), tmp_path, nbest=3, num_beams=3)
    lists = recognize_manifest(recognizer, root, "source_test", tmp_path / "w.jsonl", limit=2, progress=False)
    assert all(1 <= len(n.hypotheses) <= 3 for n in lists) and read_nbest(tmp_path / "w.jsonl") == lists
    with pytest.raises(ValueError, match="unknown external system"):
        make_recognizer("kaldi", "", tmp_path)


# -- the cascaded GER baseline ------------------------------------------------------------------------------------

def test_ger_learns_only_the_transcript_and_corrects_in_batches(tiny_checkpoints, smoke_benchmark, tmp_path):
    root, _ = smoke_benchmark
    _, llm = tiny_checkpoints
    utterances = read_manifest(root / "source_train.jsonl")[:4]
    items = [item(u, external=(u.text.upper() + " uh", "x")) for u in utterances]
    ger = GERCorrector.from_llm(str(llm), nbest=2)
    batch = ger.batch(items[:1])
    target = ger.tokenizer(f" {utterances[0].text}{ger.tokenizer.eos_token}", add_special_tokens=False).input_ids
    assert batch["labels"][0][batch["labels"][0] != -100].tolist() == target
    trainable = [n for n, p in ger.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ger.train(items, TrainConfig(max_steps=2, warmup_steps=1), tmp_path / "ger", batch_size=2, progress=False)
    assert (tmp_path / "ger" / "adapter_model.safetensors").is_file()
    texts = ger.correct([i.external for i in items], batch_size=3)
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    one = ger.correct([items[3].external])
    assert one == texts[3:]  # a batch corrects each list as it would alone


def test_nbest_records_are_what_the_prompt_lists():
    nbest = NBest("u", "s", (Hypothesis("first", 0.0), Hypothesis("second", -1.0), Hypothesis("third", -2.0)))
    assert routing.hypotheses_text(nbest.hypotheses, 2) == "External ASR hypotheses: (1) first (2) second"


def test_a_transformers_checkpoint_with_its_processor_is_an_external_system(tmp_path, smoke_benchmark):
    """The full profile's `hf:<id or path>` path, on a tiny random Whisper saved locally with its processor."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizerFast)

    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    vocab = {token: i for i, token in enumerate(specials)}
    for char in "abcdefghijklmnopqrstuvwxyzĠ":
        vocab[char] = len(vocab)
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tokenizer = WhisperTokenizerFast(tokenizer_object=bpe, unk_token=specials[0], bos_token=specials[0],
                                     eos_token=specials[0], pad_token=specials[0])
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    torch.manual_seed(0)
    whisper = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, pad_token_id=0, bos_token_id=0,
        eos_token_id=0, decoder_start_token_id=1, max_target_positions=64))
    whisper.save_pretrained(tmp_path / "tiny")
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(tmp_path / "tiny")
    recognizer = make_recognizer(f"hf:{tmp_path / 'tiny'}", "", tmp_path, nbest=3, num_beams=3)
    root, _ = smoke_benchmark
    lists = recognize_manifest(recognizer, root, "source_test", tmp_path / "hf.jsonl", limit=2, progress=False)
    assert [n.system for n in lists] == ["tiny", "tiny"] and read_nbest(tmp_path / "hf.jsonl") == lists
    assert all(1 <= len(n.hypotheses) <= 3 for n in lists)


# -- notebook 41's experiment (speech_hands/experiment.py) -----------------------------------------------------

def test_routing_config_refuses_bad_options_before_any_model_loads():
    with pytest.raises(ValueError, match="test_manifests"):
        RoutingConfig(test_manifests="source_test")
    with pytest.raises(ValueError, match="tolerance"):
        RoutingConfig(tolerance=1.5)
    with pytest.raises(ValueError, match="invalid training configuration"):
        RoutingConfig(ger_max_steps=0)
    config = RoutingConfig(external="hf:asr", baselines=["whisper", "hf:asr"], learning_rate=1e-4,
                           ger_learning_rate=2e-3, ger_max_steps=7, seed=3)
    assert config.systems == ["hf:asr", "whisper"]
    assert (config.training.learning_rate, config.training.seed) == (1e-4, 3)
    assert (config.ger_training.learning_rate, config.ger_training.max_steps, config.ger_training.seed) == (2e-3, 7, 3)


def test_systems_are_scored_on_the_same_utterances_and_routing_is_compared_with_the_best_single(smoke_benchmark):
    root, _ = smoke_benchmark
    utterances = read_manifest(root / "source_test.jsonl")[:4]
    refs = {u.id: u.text for u in utterances}
    wrong = {u.id: "completely different words here" for u in utterances}
    external = {u.id: NBest(u.id, "whisper", (Hypothesis(refs[u.id], 0.0),)) for u in utterances}
    bad_external = {u.id: NBest(u.id, "pocketsphinx", (Hypothesis(wrong[u.id], 0.0),)) for u in utterances}
    data = RoutingData({"source_test": utterances}, {"whisper": {"source_test": external},
                                                     "pocketsphinx": {"source_test": bad_external}},
                       {"source_test": wrong}, "whisper")
    items = data.items("source_test", 0.0)
    assert [i.label for i in items] == ["external"] * 4  # the internal transcript is wrong, whisper's is right
    decisions = [decision(i.label, "external", reference=i.utterance.text, internal=wrong[i.utterance.id],
                          external=refs[i.utterance.id]) for i in items]
    decisions = [replace(d, id=i.utterance.id, manifest="source_test") for d, i in zip(decisions, items)]
    config = RoutingConfig(test_manifests=["source_test"])
    systems = score_systems(config, data, decisions, {"source_test": wrong})
    assert list(systems) == [INTERNAL, "external whisper", "external pocketsphinx", CASCADE, ROUTED, "oracle routing"]
    rates = {name: results[0].wer.rate for name, results in systems.items()}
    assert rates[ROUTED] == rates["external whisper"] == 0.0 and rates[INTERNAL] > 0.5
    rows = {m.name.split(" source_test")[0]: m for m in comparisons(systems)}
    # the best single system is whisper (0% WER): routing, which took it everywhere, is level with it
    assert rows[ROUTED_MINUS_BEST].value == 0.0 and "whisper" in rows[ROUTED_MINUS_BEST].claim
    assert rows[f"routed minus {CASCADE}"].value < -0.5


def test_report_metrics_name_every_action_once_per_measure():
    decisions = [decision("internal", "internal"), decision("external", "rewrite"), decision("rewrite", "rewrite")]
    report = routing_report(decisions)
    rows = {m.name: m.value for m in report_metrics(report, {"internal": 5, "external": 2, "rewrite": 1},
                                                    {"internal": 1, "external": 2, "rewrite": 5})}
    assert rows["routing accuracy"] == pytest.approx(2 / 3)
    assert rows["routing recall <external>"] == 0.0 and rows["routing precision <rewrite>"] == pytest.approx(1 / 2)
    assert rows["training labels <internal>"] == 5 and rows["training labels, exact-match rule <rewrite>"] == 5
    assert len(rows) == 2 + 3 * 3 + 3 + 3
