import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from speechkit.engine.grpo import GRPOConfig, GRPOStep, Rollout, completion_mask, group_advantages, policy_loss, swapped
from speechkit.engine.policies import AudioPrompt, SpeechLLMPolicy, WhisperPolicy, causal_lm_log_probs
from speechkit.engine.training import TrainConfig, train
from speechkit.models.speech_llm import STAGES, Example, SpeechLLM, SpeechLLMConfig


class TextPolicy:
    """A text-only causal LM as a GRPO policy (prompts are token-id lists of equal length)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def sample(self, model, prompts, config):
        ids = torch.tensor(prompts)
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                temperature=config.temperature, top_k=None, top_p=None,
                                num_return_sequences=config.num_generations,
                                max_new_tokens=config.max_completion_length,
                                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
        completion = output[:, ids.shape[1]:]
        mask = completion_mask(completion, self.tokenizer.eos_token_id)
        return Rollout(self.tokenizer.batch_decode(completion * mask), completion, mask)

    def log_probs(self, model, prompts, rollout, temperature):
        G = len(rollout.completions) // len(prompts)
        ids = torch.tensor(prompts).repeat_interleave(G, 0)
        return causal_lm_log_probs(model, model.get_input_embeddings()(ids), torch.ones_like(ids), rollout,
                                   temperature)


@pytest.fixture
def text_model(tiny_checkpoints):
    _, llm = tiny_checkpoints
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(llm), AutoTokenizer.from_pretrained(llm)


def test_group_advantages_are_centred_and_unscaled_for_dr_grpo():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    assert group_advantages(rewards, 4).tolist() == [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]
    scaled = group_advantages(rewards, 4, "group")
    assert scaled[0] == pytest.approx(0.75 / (0.5 + 1e-4))


def test_completion_mask_keeps_the_end_token_and_nothing_after():
    ids = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [2, 0, 0, 0, 0]])
    assert completion_mask(ids, eos_token_id=2).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_invalid_configurations_are_refused():
    for bad in ({"loss_type": "ppo"}, {"scale_rewards": "batch"}, {"num_generations": 1}, {"temperature": 0},
                {"rollout": "greedy"}):
        with pytest.raises(ValueError):
            GRPOConfig(**bad)


@pytest.mark.parametrize("beta,bias_correction", [(0.0, True), (0.04, True), (0.04, False)])
def test_loss_and_gradients_equal_trls_dr_grpo(text_model, tmp_path, beta, bias_correction):
    """Same completions, rewards and reference: our loss and gradients are TRL's GRPOTrainer's (loss_type dr_grpo)."""
    from datasets import Dataset
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    model, tokenizer = text_model
    G, T = 4, 6
    config = GRPOConfig(num_generations=G, temperature=0.7, beta=beta, max_completion_length=T,
                        use_bias_correction_kl=bias_correction)
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer,
        reward_funcs=[lambda prompts, completions, **_: [0.0] * len(prompts)],
        train_dataset=Dataset.from_dict({"prompt": ["a b c"] * G}),
        args=TRLConfig(output_dir=str(tmp_path), num_generations=G, per_device_train_batch_size=G,
                       max_completion_length=T, temperature=0.7, beta=beta, loss_type="dr_grpo",
                       scale_rewards="none", use_bias_correction_kl=bias_correction, report_to=[], use_cpu=True,
                       bf16=False, logging_steps=1))
    trainer.current_gradient_accumulation_steps = 1
    policy = TextPolicy(tokenizer)
    torch.manual_seed(1)
    prompts = [[5, 9, 12], [7, 7, 30]]
    rollout = policy.sample(model, prompts, config)
    rewards = torch.tensor([0.1, 0.9, 0.4, 0.4, 1.0, 0.0, 0.0, 0.2])
    advantages = group_advantages(rewards, G)
    with torch.no_grad():  # a reference that differs from the policy: perturbed weights
        reference = {n: p.detach() + 0.01 * torch.randn_like(p) for n, p in model.named_parameters()}
        with swapped(dict(model.named_parameters()), reference):
            ref = policy.log_probs(model, prompts, rollout, config.temperature)

    model.train()
    ours, _ = policy_loss(policy.log_probs(model, prompts, rollout, config.temperature), ref, advantages,
                          rollout.completion_mask, config)
    ours.backward()
    our_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    prompt_ids = torch.tensor(prompts).repeat_interleave(G, 0)
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids),
              "completion_ids": rollout.completion_ids, "completion_mask": rollout.completion_mask,
              "advantages": advantages, "num_items_in_batch": rollout.completion_mask.sum()}
    if beta:
        inputs["ref_per_token_logps"] = ref
    theirs = trainer._compute_loss(model, inputs)
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-7)
    assert our_grads, "the loss must reach the parameters"
    for name, grad in our_grads.items():
        torch.testing.assert_close(grad, model.get_parameter(name).grad, rtol=1e-4, atol=1e-7)


def test_grpo_step_raises_a_reward_the_policy_can_earn(text_model):
    """A reward for short completions: a few GRPO steps shorten them (the loop learns from its own rewards)."""
    model, tokenizer = text_model
    config = GRPOConfig(num_generations=8, temperature=1.0, beta=0.0, max_completion_length=12)
    step = GRPOStep(model, TextPolicy(tokenizer), config,
                    rewards={"brevity": lambda prompts, completions, **_: [-len(c) / 40 for c in completions]},
                    weights=None, prompt=lambda item: item, columns=lambda items: {})
    prompts = [[5, 9, 12], [7, 7, 30]]

    def mean_length(seed):
        torch.manual_seed(seed)
        model.eval()
        with torch.no_grad():
            return np.mean([len(c) for c in TextPolicy(tokenizer).sample(model, prompts * 8, config).completions])

    before = mean_length(123)
    log = train(model, lambda epoch: [prompts] * 10, step,
                TrainConfig(learning_rate=3e-2, warmup_steps=0, max_steps=30, log_every=10), progress=False)
    after = mean_length(123)
    assert "reward brevity" in log.parts[0]
    assert log.parts[-1]["reward brevity"] > log.parts[0]["reward brevity"]
    assert after < before


def test_reference_log_probs_come_from_the_starting_weights(text_model):
    model, tokenizer = text_model
    config = GRPOConfig(num_generations=2, beta=0.1, max_completion_length=4)
    step = GRPOStep(model, TextPolicy(tokenizer), config, {"zero": lambda p, c, **_: [0.0] * len(c)}, None,
                    prompt=lambda item: item, columns=lambda items: {})
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    with swapped(step.trainable, step.reference):
        assert all(torch.equal(p, start[n]) for n, p in model.named_parameters())
    assert not any(torch.equal(p, start[n]) for n, p in model.named_parameters())


def test_unknown_reward_weight_is_refused(text_model):
    model, tokenizer = text_model
    with pytest.raises(ValueError, match="unknown rewards"):
        GRPOStep(model, TextPolicy(tokenizer), GRPOConfig(), {"a": lambda p, c, **_: [0.0] * len(c)}, {"b": 1.0},
                 prompt=lambda item: item, columns=lambda items: {})


def test_speech_and_whisper_policies_score_their_own_samples(tiny_checkpoints):
    """Sampled completions get finite log-probabilities where the mask is 1, and gradients reach the weights."""
    from speechkit.models.asr import load_asr

    whisper_path, llm_path = tiny_checkpoints
    config = GRPOConfig(num_generations=3, max_completion_length=5)
    audio = [np.random.default_rng(i).normal(0, 0.1, 16_000 + 4000 * i).astype(np.float32) for i in range(2)]
    torch.manual_seed(0)
    speech = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper_path), str(llm_path), projector_hidden=32))
    whisper, tokenizer = load_asr(str(whisper_path))
    cases = [(SpeechLLMPolicy(STAGES[3]), speech, [Example(a, "en") for a in audio]),
             (WhisperPolicy(tokenizer), whisper, [AudioPrompt(a, "en") for a in audio])]
    for policy, model, prompts in cases:
        with torch.no_grad():
            rollout = policy.sample(model, prompts, config)
        assert len(rollout.completions) == 6 and rollout.completion_ids.shape[1] <= 5
        model.train()
        log_probs = policy.log_probs(model, prompts, rollout, config.temperature)
        assert log_probs.shape == rollout.completion_ids.shape
        assert torch.isfinite(log_probs[rollout.completion_mask.bool()]).all()
        (log_probs * rollout.completion_mask).sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_beam_rollouts_are_a_groups_distinct_top_beams_every_time(tiny_checkpoints):
    from speechkit.models.asr import load_asr

    whisper_path, llm_path = tiny_checkpoints
    config = GRPOConfig(num_generations=3, max_completion_length=5, rollout="beam")
    assert config.scoring_temperature == 1.0 and GRPOConfig(temperature=0.7).scoring_temperature == 0.7
    audio = [np.random.default_rng(i).normal(0, 0.1, 16_000 + 4000 * i).astype(np.float32) for i in range(2)]
    torch.manual_seed(0)
    speech = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(whisper_path), str(llm_path), projector_hidden=32))
    whisper, tokenizer = load_asr(str(whisper_path))
    cases = [(SpeechLLMPolicy(STAGES[3]), speech, [Example(a, "en") for a in audio]),
             (WhisperPolicy(tokenizer), whisper, [AudioPrompt(a, "en") for a in audio])]
    for policy, model, prompts in cases:
        model.eval()
        with torch.no_grad():
            first, again = (policy.sample(model, prompts, config) for _ in range(2))
        assert torch.equal(first.completion_ids, again.completion_ids)  # search, not sampling
        for group in range(len(prompts)):
            rows = [tuple((ids * mask).tolist()) for ids, mask in zip(first.completion_ids[3 * group:3 * group + 3],
                                                                     first.completion_mask[3 * group:3 * group + 3],
                                                                     strict=True)]
            assert len(set(rows)) == 3
