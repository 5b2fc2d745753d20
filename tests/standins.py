"""The unit tests' tiny random models: a small Whisper over a character tokenizer and a small Qwen2 over a byte-level
BPE with the speech LLM's special tokens reserved, both tokenizers trained locally with `tokenizers` and wrapped for
transformers (seconds to build, no download)."""

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, WhisperConfig

from speechkit.core.vocab import AUDIO_PLACEHOLDER, LANGUAGE_TOKENS, LANGUAGES, SPEECH_TOKENS, language_tag

SPACE = "▁"  # the character tokenizer's space


def build_char_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """One token per character seen in `texts` (space is "▁"), plus <pad> (also the CTC blank), <sot>, <eot>, <unk>
    and a language tag per MLC-SLM language."""
    vocab = {"<pad>": 0, "<sot>": 1, "<eot>": 2, "<unk>": 3}
    for char in sorted({char for text in texts for char in text}):
        vocab.setdefault(SPACE if char == " " else char, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Replace(" ", SPACE)
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.decoder = decoders.Sequence([decoders.Fuse(), decoders.Replace(SPACE, " ")])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<sot>", eos_token="<eot>",
                                   extra_special_tokens=[language_tag(language) for language in LANGUAGES])


def build_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts`, with <pad>, <|endoftext|> and the speech LLM's special tokens kept whole."""
    specials = ["<pad>", "<|endoftext|>", AUDIO_PLACEHOLDER, *SPEECH_TOKENS, *LANGUAGE_TOKENS]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", extra_special_tokens=specials[2:])


def whisper_standin_config(tokenizer: PreTrainedTokenizerFast, d_model: int = 256, layers: int = 4, heads: int = 4,
                   n_mels: int = 80, max_seconds: int = 30) -> WhisperConfig:
    """A small random Whisper over a character tokenizer (the unit tests' model); special ids set explicitly."""
    return WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=n_mels, d_model=d_model, encoder_layers=layers,
        decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=4 * d_model, decoder_ffn_dim=4 * d_model, max_source_positions=max_seconds * 50,
        max_target_positions=448, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.bos_token_id,
        begin_suppress_tokens=None, suppress_tokens=None, dropout=0.1)


def lm_standin_config(tokenizer: PreTrainedTokenizerFast, hidden: int = 384, layers: int = 6, heads: int = 6,
                   kv_heads: int = 2, max_positions: int = 1024) -> Qwen2Config:
    """A small Qwen2 (about 11 M parameters at the defaults with a 4k vocabulary), embeddings tied to the head."""
    return Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=int(8 / 3 * hidden) // 64 * 64,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                       max_position_embeddings=max_positions, tie_word_embeddings=True,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
