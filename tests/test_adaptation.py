import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from speechkit.core.results import from_params
from speechkit.data.manifest import Context, Hypothesis, read_manifest
from speechkit.engine.adaptation import Labeled, finetune, pool_label_error, read_pool
from speechkit.engine.training import TrainConfig
from speechkit.llm_reward.reward import LLMRewardModel, context_text
from speechkit.llm_reward.systems import LLMRewardConfig
from speechkit.models import asr
from speechkit.models.freezing import freeze_except
from speechkit.models.speech_llm import STAGES, SpeechLLM, SpeechLLMConfig
from speechkit.pipeline.stages import INJECTED, declared_parameters
from speechkit.rehear.refinement import SILENCE, refine, refiner_example
from speechkit.rehear.rounds import ReHearConfig, round_history

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = Context("Clinical dictation: prescriptions, dosages, diagnoses, referrals.",
                  ("pneumonemia", "mebendazole", "nebivolol", "insulinoma"))


@pytest.mark.parametrize("notebook, config", [("20_rehear", ReHearConfig), ("30_llm_reward", LLMRewardConfig)])
def test_the_method_config_reads_every_parameter_of_its_notebook(notebook, config):
    """`from_params` drops a name the config has no field for: every parameter the notebook declares (but the
    runner's) must arrive in the config, lists as tuples."""
    declared = declared_parameters(ROOT / "notebooks" / f"{notebook}.ipynb")
    parameters = {name: value for name, value in declared.items() if name not in INJECTED}
    built = from_params(config, parameters)
    assert {name: getattr(built, name, "missing") for name in parameters} == {
        name: tuple(value) if isinstance(value, list) else value for name, value in parameters.items()}


@pytest.mark.parametrize("changes, message", [
    ({"filter": "vote"}, "unknown filter 'vote'; choose one of none, agreement, confidence"),
    ({"round": 0}, "round must be 1 or more"),
    ({"round": 2}, "round 2 with previous_round '': round 1 starts from the pretrained models"),
    ({"previous_round": "20_rehear"}, "round 1 with previous_round '20_rehear'"),
    ({"source_limit": -1}, "source_limit >= 0"),
    ({"refiner_steps": 0}, "refiner_steps >= 1"),
    ({"max_change": -0.1}, "max_change >= 0"),
    ({"eval_splits": "test"}, "eval_splits must be a non-empty list of names"),  # a string would name its letters
])
def test_rehear_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ReHearConfig(**changes)


@pytest.mark.parametrize("changes, message", [
    ({"score": "perplexity"}, "unknown LLM score 'perplexity'; choose one of log_likelihood, rating"),
    ({"nbest": 0}, "nbest >= 1"),
    ({"rescoring_weight": -1.0}, "rescoring_weight >= 0"),
    ({"prompts_per_step": 0}, "prompts_per_step >= 1"),
    ({"train": "^model"}, "train must be a non-empty list of names"),
])
def test_llm_reward_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LLMRewardConfig(**changes)


def test_the_pool_is_unlabeled_and_a_labeled_pool_is_refused(smoke_benchmark, tmp_path):
    root, _ = smoke_benchmark
    pool = read_pool(root, "medical_pool")
    assert pool and all(u.text is None for u in pool)
    leaked = tmp_path / "medical_pool.jsonl"
    rows = [json.loads(line) for line in (root / "medical_pool.jsonl").open()]
    rows[0]["text"] = "a transcript that must not be trained on"
    leaked.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "audio").symlink_to(root / "audio")
    with pytest.raises(ValueError, match="must be unlabeled"):
        read_pool(tmp_path, "medical_pool")


def test_pool_label_error_reads_the_reference_only_to_measure(smoke_benchmark):
    root, _ = smoke_benchmark
    references = read_manifest(root / "medical_pool_reference.jsonl")
    exact = pool_label_error(root, "medical_pool_reference", {u.id: u.text for u in references})
    assert exact.rate == 0.0
    empty = pool_label_error(root, "medical_pool_reference", {u.id: "" for u in references})
    assert empty.rate == 1.0
    assert pool_label_error(root, "medical_pool_reference", {}) is None  # a filter that kept nothing
    with pytest.raises(ValueError, match="no reference"):
        pool_label_error(root, "medical_pool_reference", {"not-a-pool-id": "x"})


def test_a_pattern_matching_no_asr_parameter_warns(tiny_checkpoints):
    model, _ = asr.load_asr(str(tiny_checkpoints[0]))
    with pytest.warns(UserWarning, match="matches no parameter"):
        counts = freeze_except(model, [r"^model\.decoder\.", r"^no_such_module\."])
    assert 0 < counts["trainable"] < counts["total"]
    assert all(p.requires_grad == n.startswith("model.decoder.") for n, p in model.named_parameters())


def test_finetune_learns_the_given_labels_not_the_manifest_text(tiny_checkpoints, smoke_benchmark, tmp_path):
    """Fine-tuning on labels moves the model towards the labels: their loss falls, and the utterance's own text
    field (None in the pool) is never read."""
    root, _ = smoke_benchmark
    pool = read_pool(root, "medical_pool")[:2]
    model, tokenizer = asr.load_asr(str(tiny_checkpoints[0]))
    freeze_except(model, [r"^model\.decoder\."])
    data = [Labeled(u, "nebivolol") for u in pool]

    def label_loss():
        from dataclasses import replace
        batch = asr.make_batch([replace(d.utterance, text=d.label) for d in data], root, tokenizer,
                               model.config.num_mel_bins)
        with torch.no_grad():
            return asr.loss(model.eval(), batch)[0].item()

    before = label_loss()
    finetune(model, tokenizer, data, root, TrainConfig(learning_rate=1e-2, warmup_steps=0, max_steps=15),
             tmp_path / "ft", progress=False)
    assert label_loss() < before - 0.5
    with pytest.raises(ValueError, match="no non-empty labels"):
        finetune(model, tokenizer, [Labeled(pool[0], " ")], root, TrainConfig(max_steps=1), None, progress=False)


def test_the_refiner_reads_the_hypothesis_and_never_a_target(tiny_checkpoints, smoke_benchmark):
    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    pool = read_pool(root, "medical_pool")[:2]
    example = refiner_example(pool[0], "the patient took nebivolol", SILENCE)
    assert example.target is None and "the patient took nebivolol" in example.context
    torch.manual_seed(0)
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32))
    refinements = refine(model, STAGES[3], pool, ["a b c", ""], root, filter="agreement", max_change=0.5,
                         progress=False)
    assert [r.id for r in refinements] == [u.id for u in pool]
    assert not refinements[1].kept  # an empty hypothesis: any refinement changes all of it
    with pytest.raises(ValueError, match="unknown filter"):
        refine(model, STAGES[3], pool, ["a", "b"], root, filter="vote", progress=False)


@pytest.fixture(scope="module")
def reward_model():
    return LLMRewardModel.load("pkg:smollm2-135m-instruct")


def test_the_llm_reward_prefers_the_term_spelled_as_the_context_lists_it(reward_model):
    """SmolLM2 reads the context: the listed spelling scores above the ASR's misspelling, and the context helps it."""
    right, wrong = "Allergic to mebendazole, which caused a rash last year.", \
        "allergic to mebb and dazzle, which caused a rash last year."
    with_context = reward_model.log_likelihood([right, wrong], [CONTEXT, CONTEXT])
    assert with_context[0] > with_context[1]
    without = reward_model.log_likelihood([right], [None])
    assert with_context[0] > without[0]
    assert "mebendazole" in context_text(CONTEXT)
    ratings = reward_model.rating([right, wrong], [CONTEXT, CONTEXT])
    assert all(0.0 <= r <= 1.0 for r in ratings)
    assert reward_model.log_likelihood([""], [CONTEXT]) == [-10.0]


def test_rescoring_and_the_reward_function(reward_model):
    nbest = [Hypothesis("allergic to mebb and dazzle, which caused a rash last year.", -0.20),
             Hypothesis("Allergic to mebendazole, which caused a rash last year.", -0.25)]
    assert reward_model.rescore("log_likelihood", [nbest], [CONTEXT], weight=1.0) == [nbest[1].text]
    assert reward_model.rescore("log_likelihood", [nbest], [CONTEXT], weight=0.0) == [nbest[0].text]
    reward = reward_model.reward("log_likelihood")
    values = reward(["p", "p"], [h.text for h in nbest], context=[CONTEXT, CONTEXT])
    assert values[1] > values[0]
    with pytest.raises(ValueError, match="unknown LLM score"):
        reward_model.reward("vibes")


def test_round_history_follows_previous_rounds_through_their_parameters(tmp_path):
    def stage(name, round, previous, wer):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps({"parameters": {"round": round, "previous_round": previous}}))
        (folder / "metrics.json").write_text(json.dumps([{"name": f"round {round} ReHear WER", "value": wer}]))

    stage("20_rehear", 1, "", 0.30)
    stage("21_rehear_round2", 2, "20_rehear", 0.28)
    history = round_history(tmp_path / "22_rehear_round3", 3, "21_rehear_round2", {"round 3 ReHear WER": 0.27})
    assert history == {1: {"round 1 ReHear WER": 0.30}, 2: {"round 2 ReHear WER": 0.28},
                       3: {"round 3 ReHear WER": 0.27}}
    assert round_history(tmp_path / "20_rehear", 1, "", {"x": 1.0}) == {1: {"x": 1.0}}
    with pytest.raises(FileNotFoundError, match="run it first"):
        round_history(tmp_path / "x", 3, "missing_round", {})


def test_the_refiner_trains_on_hypotheses_and_its_text_only_ablation_reads_no_audio(tiny_checkpoints,
                                                                                     smoke_benchmark, tmp_path,
                                                                                     monkeypatch):
    from speechkit.engine import recipes
    from speechkit.rehear.refinement import train_refiner

    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    source = read_manifest(root / "source_train.jsonl")[:4]
    hypotheses = [u.text.split(" ", 1)[-1] for u in source]
    for audio_aware in (True, False):
        torch.manual_seed(0)
        model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32))
        model.start_stage(STAGES[3])
        read = []
        monkeypatch.setattr(recipes, "load_utterance", lambda u, d: read.append(u.id) or SILENCE)
        folder = tmp_path / str(audio_aware)
        log = train_refiner(model, STAGES[3], source, hypotheses, root, TrainConfig(max_steps=2, warmup_steps=0,
                            log_every=1), folder, audio_aware=audio_aware, max_batch=2, progress=False)
        assert log.steps == 2 and all(loss == loss for loss in log.loss)  # trained, no NaN
        assert (folder / "trained.safetensors").is_file()
        assert bool(read) == audio_aware  # the ablation never reads the audio it replaces
    with pytest.raises(ValueError, match="labeled"):
        train_refiner(model, STAGES[3], [dataclasses.replace(source[0], text=None)], [""], root,
                      TrainConfig(max_steps=1), tmp_path / "x", progress=False)


def test_reinforce_scores_each_group_with_its_own_utterance_and_context_and_updates_the_asr(tiny_checkpoints,
                                                                                           smoke_benchmark, tmp_path):
    """Ling & Ye's loop: every completion reaches the rewards beside the utterance it was sampled for and that
    utterance's context; a group is one utterance's rollouts; the pool is visited in a seeded order; the ASR moves."""
    from speechkit.engine.adaptation import reinforce
    from speechkit.engine.grpo import GRPOConfig
    from speechkit.engine.training import shuffled_batches

    root, _ = smoke_benchmark
    pool = read_pool(root, "medical_pool")[:4]
    model, tokenizer = asr.load_asr(str(tiny_checkpoints[0]))
    freeze_except(model, [r"^model\.decoder\."])
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    calls = []

    def shorter(prompts, completions, context, utterance):
        calls.append((list(context), [u.id for u in utterance], len(completions)))
        return [-float(len(c)) for c in completions]

    grpo = GRPOConfig(num_generations=2, max_completion_length=6, temperature=1.0)
    log = reinforce(model, tokenizer, pool, root, {"length": shorter}, None, grpo,
                    TrainConfig(learning_rate=1e-2, warmup_steps=0, max_steps=2, log_every=1), tmp_path / "rl",
                    prompts_per_step=2, progress=False)
    by_id = {u.id: u for u in pool}
    order = [pool[i].id for batch in shuffled_batches(len(pool), 2, 0)(0) for i in batch]
    assert [i for _, ids, _ in calls for i in ids[::2]] == order  # two steps of two prompts, in the seeded order
    for contexts, ids, count in calls:
        assert count == 4 and ids[0::2] == ids[1::2]  # a group: one utterance's two rollouts, side by side
        assert contexts == [by_id[i].context for i in ids]
    assert log.steps == 2 and "reward length" in log.parts[0]
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
