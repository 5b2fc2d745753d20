"""The speech LLM's special tokens and language tags. The real models bring their own tokenizers; the speech LLM adds
the special tokens it lacks (`SpeechLLM.from_pretrained_parts`).
"""

from __future__ import annotations

# MLC-SLM's eleven languages: every tokenizer knows their tags, whatever the data has.
LANGUAGES = ("en", "fr", "de", "it", "pt", "es", "ja", "ko", "ru", "th", "vi")
# the tags of the tagged output; a method's own tokens live in its paper package (`SpeechLLMConfig.extra_tokens`)
SPEECH_TOKENS = ("<speech>", "</speech>", "<transcribe>", "</transcribe>")
AUDIO_PLACEHOLDER = "<audio>"  # replaced by the projected audio embeddings
LANGUAGE_TOKENS = tuple(f"<LANG_{language}>" for language in LANGUAGES)


def language_tag(language: str) -> str:
    """Whisper's language token (also the tiny test Whisper's decoder prompt)."""
    return f"<|{language}|>"
