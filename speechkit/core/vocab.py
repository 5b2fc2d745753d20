"""The speech LLM's special tokens and language tags, and the tokenizers of the unit tests' tiny random models
(trained locally with `tokenizers`, wrapped for transformers): characters for a tiny Whisper, byte-level BPE with the
special tokens reserved for a tiny LLM. The real models bring their own tokenizers; the speech LLM adds the special
tokens it lacks (`SpeechLLM.from_pretrained_parts`).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# MLC-SLM's eleven languages: every tokenizer knows their tags, whatever the data has.
LANGUAGES = ("en", "fr", "de", "it", "pt", "es", "ja", "ko", "ru", "th", "vi")
SPEECH_TOKENS = ("<speech>", "</speech>", "<transcribe>", "</transcribe>", "<think>", "</think>",
                 "<internal>", "<external>", "<rewrite>")
AUDIO_PLACEHOLDER = "<audio>"  # replaced by the projected audio embeddings
LANGUAGE_TOKENS = tuple(f"<LANG_{language}>" for language in LANGUAGES)
SPACE = "▁"


def language_tag(language: str) -> str:
    """Whisper's language token (also the tiny test Whisper's decoder prompt)."""
    return f"<|{language}|>"


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
