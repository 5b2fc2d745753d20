"""Named text normalisers, applied to reference and hypothesis alike before scoring.

- `english`: the OpenASR leaderboard's English normaliser (Whisper's, with its British->American spelling map;
  the `whisper-normalizer` package ships the map, so it works offline);
- `basic`: Whisper's basic multilingual normaliser (lower case, symbols and punctuation removed, diacritics kept);
- `characters`: `basic`, then every non-space character is a unit: CER for ja, ko, th, zh;
- `none`: whitespace only (scores raw text, e.g. to check casing).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

CHARACTER_LANGUAGES = ("ja", "ko", "th", "zh")
NORMALISERS = ("english", "basic", "characters", "none")


@lru_cache(maxsize=None)
def _normaliser(name: str) -> Callable[[str], str]:
    if name == "english":
        return EnglishTextNormalizer()
    if name in ("basic", "characters"):
        return BasicTextNormalizer()
    if name == "none":
        return lambda text: text
    raise ValueError(f"unknown normaliser {name!r}; choose one of {', '.join(NORMALISERS)}")


def normaliser_for(language: str) -> str:
    """The normaliser a language is scored with: English -> english, ja/ko/th/zh -> characters, others -> basic."""
    if language == "en":
        return "english"
    return "characters" if language in CHARACTER_LANGUAGES else "basic"


def words(text: str, normaliser: str) -> list[str]:
    """The scoring units of `text`: words, or characters for the `characters` normaliser."""
    normalised = _normaliser(normaliser)(text)
    if normaliser == "characters":
        return [char for char in normalised if not char.isspace()]
    return normalised.split()


def normalise(text: str, normaliser: str) -> str:
    """`text` as the space-separated units it is scored on."""
    return " ".join(words(text, normaliser))
