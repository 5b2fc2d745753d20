import pytest
import torch

from speechkit.data.manifest import Utterance, read_manifest
from speechkit.engine.decoding import DecodingConfig
from speechkit.engine.grpo import GRPOConfig
from speechkit.engine.training import TrainConfig
from speechkit.models.speech_llm import STAGES, SpeechLLM, SpeechLLMConfig
from speechkit.slam_asr.cot import (COT_TRAINING, REWARDS, THINK_SIMILARITY, THINK_TOKENS, CoTTranscriber,
                                    ErrorDetail, PromptLossSchedule, RLVRConfig, accuracy_reward, correction_reward,
                                    cot_think, diagnose, error_detail_reward, error_details, error_type_reward,
                                    format_reward, parse_cot, think_text, train_cot, train_rlvr)

GOLD = "the patient takes nifedipine at night"


def completion(hypothesis, transcript, gold=GOLD):
    think = think_text(hypothesis, error_details(hypothesis, gold, "en"))
    return f"<LANG_en> <think> {think} </think> <transcribe> {transcript} </transcribe>"


def test_error_details_name_every_error_of_the_alignment():
    details = error_details("the patient take nif a dipine at", GOLD, "en")
    kinds = {d.kind for d in details}
    assert kinds == {"substitution", "insertion", "deletion"}
    assert ErrorDetail("deletion", "night", "") in details
    text = think_text("the patient take nif a dipine at", details)
    assert "let me correct it" in text and "'night' missed" in text


def test_a_runaway_first_pass_makes_a_bounded_think_span():
    u = Utterance("u1", "a.wav", 1.0, "en", "s", "medical", "test", GOLD)
    think = cot_think(u, " ".join(["again"] * 400))
    assert len(think.split()) < 80
    many = think_text("x", [ErrorDetail("deletion", f"w{i}", "") for i in range(12)])
    assert many.count("missed") == 8 and "4 more errors" in many


def test_an_exact_hypothesis_gets_the_fixed_no_error_wording():
    assert error_details(GOLD, GOLD, "en") == []
    assert think_text(GOLD, []) == f"The speech sounds like: {GOLD}, and it sounds right."


def test_a_cot_target_parses_back_to_its_parts():
    hypothesis = "the patient takes nifedapine at"
    parsed = parse_cot(completion(hypothesis, GOLD))
    assert parsed.well_formed and parsed.hypothesis == hypothesis and parsed.transcription == GOLD
    assert set(parsed.details) == set(error_details(hypothesis, GOLD, "en"))


def test_a_malformed_output_falls_back_to_the_think_hypothesis():
    raw = completion("the patient takes nifedapine", GOLD).split("<transcribe>")[0]
    parsed = parse_cot(raw)
    assert not parsed.well_formed and parsed.transcription is None
    assert parsed.final == "the patient takes nifedapine"
    assert parse_cot("no tags at all").final == ""


@pytest.mark.parametrize("raw", [
    # the default run's CoT models (50 steps) closed the think span with the transcript's tag
    " <LANG_en> <think> The speech sounds like: the patient takes nifedapine </transcribe>",
    # cut off inside its error list
    "<think> The speech sounds like: the patient takes nifedapine, but it might have some substitution errors ('nif",
    "<think> The speech sounds like: the patient takes nifedapine"])
def test_an_unfinished_think_span_still_gives_its_hypothesis(raw):
    parsed = parse_cot(raw)
    assert not parsed.well_formed and parsed.details == () and parsed.raw == raw
    assert parsed.final == parsed.hypothesis == "the patient takes nifedapine"


def test_prompt_loss_schedule_decays_then_stays():
    schedule = PromptLossSchedule(1.0, 0.1, decay_steps=10)
    assert schedule.weight(0) == 1.0 and schedule.weight(5) == pytest.approx(0.55)
    assert schedule.weight(10) == schedule.weight(500) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        PromptLossSchedule(decay_steps=-1)


class Prompt:
    language = "en"


def test_rewards_of_a_correct_self_correction():
    prompts = [Prompt()] * 4
    hypothesis = "the patient takes nifedapine at night"
    completions = [completion(hypothesis, GOLD),                # corrects its hypothesis
                   completion(hypothesis, hypothesis),          # keeps the error
                   f"<transcribe> {GOLD} </transcribe>",         # right, but no reasoning
                   completion("a b c d e f", GOLD)]             # a made-up hypothesis far from its own first pass
    columns = {"reference": [GOLD] * 4, "first_pass": [hypothesis] * 4}
    assert format_reward(prompts, completions) == [1.0, 1.0, 0.0, 1.0]
    accuracy = accuracy_reward(prompts, completions, **columns)
    assert accuracy[0] == 1.0 and accuracy[1] == pytest.approx(1 - 1 / 6) and accuracy[2] == 1.0
    assert error_type_reward(prompts, completions, **columns)[:3] == [1.0, 1.0, 0.0]
    assert error_detail_reward(prompts, completions, **columns)[:3] == [1.0, 1.0, 0.0]
    # the anti-hacking constraint: no correction reward for a think hypothesis unlike the model's first pass
    assert correction_reward(prompts, completions, **columns) == [1.0, 0.0, 0.0, 0.0]
    unconstrained = correction_reward(prompts, completions, reference=[GOLD] * 4, first_pass=[None] * 4)
    assert unconstrained[3] == 1.0
    assert set(REWARDS) == {"format", "accuracy", "error_type", "error_detail", "correction"}


def test_wrong_error_claims_lose_the_detail_reward():
    hypothesis = "the patient takes nifedapine at night"
    wrong = completion(hypothesis, GOLD).replace("'nifedipine' heard as 'nifedapine'", "'night' heard as 'knight'")
    assert error_type_reward([Prompt()], [wrong], reference=[GOLD]) == [1.0]  # the kind is right
    assert error_detail_reward([Prompt()], [wrong], reference=[GOLD]) == [0.0]  # the words are not


def test_diagnosis_counts_right_then_wrong_outputs():
    u = Utterance("u1", "a.wav", 1.0, "en", "s", "medical", "test", GOLD)
    outputs = {"u1": parse_cot(completion(GOLD, "the patient takes nothing"))}
    d = diagnose(outputs, [u])
    assert (d.outputs, d.malformed, d.right_then_wrong, d.wrong_then_right) == (1, 0, 1, 0)


def cot_model(tiny_checkpoints, smoke_benchmark, n):
    """A tiny speech LLM at stage 4 (stage 3's adapters), the smoke benchmark's root and `n` training utterances."""
    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    torch.manual_seed(0)
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=32,
                                                            extra_tokens=THINK_TOKENS))
    model.start_stage(STAGES[3])
    model.start_stage(COT_TRAINING)
    return model, root, read_manifest(root / "source_train.jsonl")[:n]


def test_train_cot_follows_the_schedule(tiny_checkpoints, smoke_benchmark, tmp_path):
    model, root, utterances = cot_model(tiny_checkpoints, smoke_benchmark, 4)
    log = train_cot(model, COT_TRAINING, utterances, [u.text.split(" ", 1)[-1] for u in utterances], root,
                    TrainConfig(max_steps=4, warmup_steps=0, log_every=1), tmp_path / "cot",
                    schedule=PromptLossSchedule(1.0, 0.1, decay_steps=2), max_batch=2, progress=False)
    assert [p["think_weight"] for p in log.parts] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    assert (tmp_path / "cot" / "trained.safetensors").is_file()


def test_cot_refuses_a_model_built_without_the_think_tokens(tiny_checkpoints, smoke_benchmark, tmp_path):
    whisper, llm = tiny_checkpoints
    root, _ = smoke_benchmark
    plain = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper), str(llm), projector_hidden=16))
    utterances = read_manifest(root / "source_train.jsonl")[:1]
    with pytest.raises(ValueError, match="CoT SFT writes <think>, </think>, which this speech LLM was built without"):
        train_cot(plain, COT_TRAINING, utterances, ["x"], root, TrainConfig(max_steps=1), tmp_path / "cot")
    with pytest.raises(ValueError, match="a CoT model's decoding writes <think>"):
        CoTTranscriber(plain, COT_TRAINING, DecodingConfig())


def test_rlvr_config_names_its_rewards_and_logs_the_think_similarity():
    with pytest.raises(ValueError, match="unknown rewards \\['acuracy'\\]"):
        RLVRConfig(rewards=("format", "acuracy"))
    prompts, hypothesis = [Prompt()] * 2, "the patient takes nifedapine at night"
    completions = [completion(hypothesis, GOLD), completion("a b c d e f", GOLD)]
    columns = {"reference": [GOLD] * 2, "first_pass": [hypothesis] * 2}
    functions, weights = RLVRConfig().reward_functions()
    assert set(functions) == {"format", "accuracy", "correction", THINK_SIMILARITY}
    assert weights == {"format": 0.5, "accuracy": 0.8, "correction": 0.5, THINK_SIMILARITY: 0.0}
    assert functions["correction"](prompts, completions, **columns) == [1.0, 0.0]
    assert functions[THINK_SIMILARITY](prompts, completions, **columns) == [1.0, 0.0]
    # unconstrained (the hackable variant): the made-up hypothesis is rewarded for its "correction"
    functions, _ = RLVRConfig(constrained=False).reward_functions()
    assert functions["correction"](prompts, completions, **columns) == [1.0, 1.0]


def test_train_rlvr_logs_every_reward(tiny_checkpoints, smoke_benchmark, tmp_path):
    model, root, utterances = cot_model(tiny_checkpoints, smoke_benchmark, 3)
    first_pass = {u.id: u.text for u in utterances}
    log = train_rlvr(model, COT_TRAINING, utterances, first_pass, root, RLVRConfig(prompts_per_step=2),
                     GRPOConfig(num_generations=2, max_completion_length=8), TrainConfig(max_steps=3, warmup_steps=0,
                                                                                           log_every=1),
                     tmp_path / "rlvr", progress=False)
    assert log.steps == 3 and (tmp_path / "rlvr" / "trained.safetensors").is_file()
    assert {"reward format", "reward accuracy", "reward correction", f"reward {THINK_SIMILARITY}"} <= set(log.parts[0])
