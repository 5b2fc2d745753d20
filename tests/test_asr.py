import numpy as np
import pytest
import torch
from standins import lm_standin_config
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast, WhisperForConditionalGeneration

from speechkit.core.vocab import LANGUAGE_TOKENS, SPEECH_TOKENS
from speechkit.data.audio import load_utterance
from speechkit.data.features import length_batches, log_mel
from speechkit.data.manifest import read_manifest
from speechkit.engine.training import TrainConfig, train
from speechkit.models import asr
from speechkit.models.asr import load_asr
from speechkit.models.lm import load_lm
from speechkit.models.speech_llm import SpeechLLM, SpeechLLMConfig


@pytest.fixture(scope="module")
def utterances(smoke_benchmark):
    root, _ = smoke_benchmark
    chosen = read_manifest(root / "source_train.jsonl")[:4] + read_manifest(root / "multilingual_train.jsonl")[:2]
    return chosen, [load_utterance(u, root) for u in chosen]


def test_features_are_per_utterance_and_zero_padded(utterances):
    _, audios = utterances
    features, lengths = log_mel(audios)
    assert lengths.tolist() == [len(a) // 160 for a in audios]
    for i, audio in enumerate(audios):
        alone, _ = log_mel([audio])
        torch.testing.assert_close(features[i, :, :lengths[i]], alone[0])
        assert features[i, :, lengths[i]:].eq(0).all()


def test_short_audio_is_not_padded_to_30_seconds(tiny_checkpoints, utterances):
    model, _ = load_asr(tiny_checkpoints[0])
    _, audios = utterances
    hidden, lengths = asr.encode(model.model.encoder, *log_mel(audios))
    assert hidden.shape[1] == max(lengths) < 1500  # Whisper's 30 s window is 1500 encoder frames
    too_long = torch.zeros(1, 80, 3002)
    with pytest.raises(ValueError, match="exceeds the encoder's 30 s window"):
        asr.encode(model.model.encoder, too_long, torch.tensor([3002]))


def test_batch_targets_are_shifted_inputs(tiny_checkpoints, utterances):
    model, tokenizer = load_asr(tiny_checkpoints[0])
    chosen, audios = utterances
    batch = asr.make_batch(chosen, None, tokenizer, 80, audios)
    first = chosen[0]
    ids = tokenizer(first.text, add_special_tokens=False).input_ids
    assert batch.decoder_input_ids[0, 0] == tokenizer.bos_token_id
    assert tokenizer.convert_ids_to_tokens(int(batch.decoder_input_ids[0, 1])) == "<|en|>"
    assert batch.labels[0, 1:len(ids) + 1].tolist() == ids and batch.labels[0, len(ids) + 1] == tokenizer.eos_token_id


def test_the_decoder_loss_falls_when_overfitting(tiny_checkpoints, utterances):
    model, tokenizer = load_asr(tiny_checkpoints[0])
    chosen, audios = utterances
    batch = asr.make_batch(chosen, None, tokenizer, 80, audios)
    model.train()
    before = asr.loss(model, batch)[1]
    log = train(model, lambda epoch: [0] * 5, lambda m, _: asr.loss(m, batch),
                TrainConfig(learning_rate=3e-3, warmup_steps=0, max_steps=40, log_every=40), progress=False)
    after = asr.loss(model.train(), batch)[1]
    assert log.stopped_by == "max_steps"
    assert after["ce"] < 0.7 * before["ce"]


def test_transcribe_returns_ranked_nbest(tiny_checkpoints, utterances):
    model, tokenizer = load_asr(tiny_checkpoints[0])
    _, audios = utterances
    results = asr.transcribe(model, tokenizer, audios[:2], ["en", "fr"], num_beams=3, nbest=3)
    assert [len(r) for r in results] == [3, 3]
    assert all([h.score for h in r] == sorted((h.score for h in r), reverse=True) for r in results)


def test_length_batches_respect_the_budget_and_cover_everything():
    durations = list(np.random.default_rng(0).uniform(1, 8, size=200))
    batches = length_batches(durations, max_seconds=40.0, max_size=16, rng=np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(len(b) <= 16 and (len(b) == 1 or max(durations[i] for i in b) * len(b) <= 40.0) for b in batches)
    inference = length_batches(durations, 40.0, 16, rng=None)
    flat = [durations[i] for b in inference for i in b]
    assert flat == sorted(durations, reverse=True)
    assert length_batches([], 40.0, 16, rng=None) == [] == length_batches([], 40.0, 16, np.random.default_rng(0))


def test_full_profile_loading_path_takes_plain_hugging_face_checkpoints(tiny_checkpoints, tmp_path):
    """A real Whisper (no CTC head) and a chat LLM without our special tokens load through the same code."""
    whisper, llm = tiny_checkpoints
    plain = WhisperForConditionalGeneration.from_pretrained(whisper)
    plain.save_pretrained(tmp_path / "whisper")
    AutoTokenizer.from_pretrained(whisper).save_pretrained(tmp_path / "whisper")
    loaded, _ = load_asr(tmp_path / "whisper")
    torch.testing.assert_close(loaded.model.encoder.conv1.weight, plain.model.encoder.conv1.weight)

    # a "chat LLM" whose tokenizer has never heard of <speech>, <LANG_xx>, <transcribe>...
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["hello there, general kenobi"] * 20, trainer)
    chat_tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<|endoftext|>")
    chat = AutoModelForCausalLM.from_config(lm_standin_config(chat_tokenizer, hidden=32, layers=1, heads=2,
                                                              kv_heads=1))
    chat.save_pretrained(tmp_path / "chat")
    chat_tokenizer.save_pretrained(tmp_path / "chat")
    assert load_lm(tmp_path / "chat")[0].config.vocab_size == len(chat_tokenizer)
    model = SpeechLLM.from_pretrained_parts(SpeechLLMConfig(str(tmp_path / "whisper"), str(tmp_path / "chat"),
                                                            projector_hidden=16))
    assert len(model.tokenizer) == len(chat_tokenizer) + 1 + len(SPEECH_TOKENS) + len(LANGUAGE_TOKENS)
    for token in (*SPEECH_TOKENS, *LANGUAGE_TOKENS):
        assert len(model.tokenizer(token, add_special_tokens=False).input_ids) == 1, token
    assert model.llm.get_input_embeddings().num_embeddings == len(model.tokenizer)
