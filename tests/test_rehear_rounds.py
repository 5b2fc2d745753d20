"""ReHear's round as notebook 20 runs it (speechkit.rehear.rounds), on the tiny stand-in models: round 1 from the
pretrained models, round 2 from round 1's folder, round 3 from round 2's."""

import torch

from speechkit.data.manifest import read_manifest
from speechkit.engine.adaptation import read_pool
from speechkit.models import asr
from speechkit.models.speech_llm import STAGES, SpeechLLM, SpeechLLMConfig
from speechkit.rehear.claims import CLAIMS, STAGE
from speechkit.rehear.rounds import LATER_ROUND_SYSTEMS, SYSTEMS, ReHearConfig, adapt_asrs, label_pool, prepare_refiners

SMALL = dict(pool_limit=3, eval_limit=2, source_limit=2, refiner_steps=1, warmup_steps=0, max_steps=1, max_batch=2)


def lora_weights(model: SpeechLLM) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


def test_round_1_labels_the_pool_and_adapts_every_asr_and_round_2_continues_each_from_its_own(
        tiny_checkpoints, smoke_benchmark, tmp_path, monkeypatch):
    whisper, llm = tiny_checkpoints
    data, _ = smoke_benchmark
    torch.manual_seed(0)
    start = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32))
    start.start_stage(STAGES[1])
    start.save(tmp_path / "speech_llm")
    loaded, load_asr = [], asr.load_asr
    monkeypatch.setattr(asr, "load_asr", lambda reference: loaded.append(reference) or load_asr(reference))

    first = ReHearConfig(asr=str(whisper), refiner=str(tmp_path / "speech_llm"), **SMALL)
    round_1 = tmp_path / "20_rehear"
    refiners = prepare_refiners(first, data, round_1)
    assert {m.name: m.value for m in refiners.metrics if m.unit == "count"} == {
        "ReHear refiner training steps": 1, "text-only refiner refiner training steps": 1}
    labels = label_pool(first, refiners, data, round_1)
    pool = read_pool(data, "medical_pool")[:3]
    gold = {u.id: u.text for u in read_manifest(data / "medical_pool_reference.jsonl")}
    assert labels.labels["supervised"] == []
    assert [(d.utterance.id, d.label) for d in labels.labels["oracle"]] == [(u.id, gold[u.id]) for u in pool]
    rows = {m.name: m.value for m in labels.metrics}
    assert rows["oracle pool labels kept"] == 3 and rows["oracle pool label WER"] == 0.0
    assert not [name for name in rows if name.startswith("supervised")]  # nothing of the pool to measure
    # round 1: both refiners rewrite the same pretrained ASR's hypotheses, which are also the pseudo-labels
    hypotheses = [r.hypothesis for r in labels.refinements["ReHear"]]
    assert [r.hypothesis for r in labels.refinements["text-only refiner"]] == hypotheses
    assert [d.label for d in labels.labels["pseudo-labels"]] == [h for h in hypotheses if h]
    for refiner, refinements in labels.refinements.items():
        assert [r.id for r in refinements] == [u.id for u in pool]
        assert [d.label for d in labels.labels[refiner]] == [r.refined for r in refinements if r.kept]

    adapted = adapt_asrs(first, labels, data, round_1)
    assert list(adapted.results) == list(SYSTEMS)
    assert all([r.manifest for r in results] == ["medical_test"] for results in adapted.results.values())
    names = {m.name for m in adapted.metrics}
    claim_stage, claim_row = CLAIMS[0].metric.split("::", 1)
    assert claim_stage == STAGE and claim_row in names  # the claim's row, under the name the registry reads
    for system in SYSTEMS:
        assert f"round 1 {system} WER medical_test [en]" in names
        assert (round_1 / "asr" / system.replace(" ", "_") / "config.json").is_file()
        assert (round_1 / f"{system.replace(' ', '_')}_hypotheses.jsonl").is_file()

    loaded.clear()
    second = ReHearConfig(round=2, previous_round="20_rehear", asr=str(whisper), **SMALL)
    round_2 = tmp_path / "21_rehear_round2"
    kept = prepare_refiners(second, data, round_2)
    assert kept.metrics == []  # round 1's refiners, as they were trained
    for refiner, model in kept.models.items():
        trained, reloaded = lora_weights(refiners.models[refiner]), lora_weights(model)
        assert trained and all(torch.equal(trained[name], reloaded[name]) for name in trained)
    adapted = adapt_asrs(second, label_pool(second, kept, data, round_2), data, round_2)
    assert list(adapted.results) == list(LATER_ROUND_SYSTEMS)
    continued = [str(round_1 / "asr" / system.replace(" ", "_")) for system in LATER_ROUND_SYSTEMS]
    assert loaded == continued + continued  # the pool's hypotheses, then the fine-tuning: each its own round-1 ASR
    assert not [m.name for m in adapted.metrics if "supervised" in m.name or "oracle" in m.name]
    assert "round 2 WER ReHear minus pseudo-labels medical_test [en]" in {m.name for m in adapted.metrics}

    # round 3 keeps the refiners round 1 trained (round 2 only used them)
    third = ReHearConfig(round=3, previous_round="21_rehear_round2", asr=str(whisper), **SMALL)
    for refiner, model in prepare_refiners(third, data, tmp_path / "22_rehear_round3").models.items():
        trained, reloaded = lora_weights(refiners.models[refiner]), lora_weights(model)
        assert trained and all(torch.equal(trained[name], reloaded[name]) for name in trained)
