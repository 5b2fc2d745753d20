"""External ASR systems that produce N-best lists (Speech-Hands' "external perception").

- `PocketsphinxASR`: CMU pocketsphinx with the en-us model that ships in its wheel - a classic HMM/n-gram recogniser
  whose errors differ from the neural models'. Synthetic audio holds exact zeros, which wreck its features, so it
  always runs with dither (seeded, and cepstral normalisation restarted per utterance; some search state still
  carries over, so a manifest's lists are reproducible run to run, and an utterance decoded alone may differ
  slightly). Its raw N-best is mostly duplicates and its first entry is often not `hyp()`: the 1-best is `hyp()`,
  then distinct N-best entries follow; its path scores are linear probabilities that underflow, so a hypothesis'
  score is its log (underflowed ones rank after the rest, in pocketsphinx's order).
- `WhisperNBest`: the kit's Whisper (`pkg:whisper-tiny.en` or any Whisper checkpoint) with beam search, N-best from
  the beams.
- `HuggingFaceASR`: any transformers speech-to-text checkpoint with a processor (Whisper, and Canary/Parakeet-class
  models through their transformers support) by hub id or path, N-best through `num_return_sequences`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from speechkit.core.fileio import write_json
from speechkit.core.text import normaliser_for
from speechkit.data.audio import SAMPLE_RATE, load_utterance
from speechkit.data.features import length_batches
from speechkit.data.manifest import Hypothesis, NBest, Utterance, read_manifest, read_nbest, write_manifest
from speechkit.engine.evaluation import SystemResult, score
from speechkit.engine.recipes import resolve_checkpoint
from speechkit.metrics.scoring import utterance_errors
from speechkit.models.asr import load_asr, transcribe
from speechkit.models.device import default_device, inference_dtype
from speechkit.models.model_import import local_or_hub


class NBestRecognizer(Protocol):
    name: str
    signature: dict    # what determines its output (model, weights, settings): saved lists are reused only if equal

    def recognize(self, audios: Sequence[np.ndarray], languages: Sequence[str]) -> list[list[Hypothesis]]:
        """N-best (best first, distinct texts) for each audio."""


class PocketsphinxASR:
    def __init__(self, nbest: int = 5, scan: int = 200, name: str = "pocketsphinx"):
        from pocketsphinx import Decoder  # imported here: only this recogniser needs it

        self.name, self.nbest, self.scan = name, nbest, scan
        self.signature = {"system": "pocketsphinx", "version": metadata.version("pocketsphinx"), "nbest": nbest,
                          "scan": scan}
        self.decoder = Decoder(dither=False, loglevel="FATAL")
        self.initial_cmn = self.decoder.get_cmn(False)

    def recognize_one(self, audio: np.ndarray) -> list[Hypothesis]:
        # our own dither, seeded per call: pocketsphinx's own draws from one stream, so results would depend on order
        noise = np.random.default_rng(0).integers(-2, 3, size=len(audio))
        pcm = np.clip(np.round(audio * 32767) + noise, -32768, 32767).astype(np.int16).tobytes()
        # live cepstral mean normalisation adapts across utterances: restart it, so results don't depend on order
        self.decoder.set_cmn(self.initial_cmn)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        best = self.decoder.hyp()
        if best is None or not best.hypstr.strip():
            return [Hypothesis("", 0.0)]
        texts, scores = [" ".join(best.hypstr.split())], [math.nan]
        for index, entry in enumerate(self.decoder.nbest()):
            if index >= self.scan or len(texts) >= self.nbest:
                break
            text = " ".join(entry.hypstr.split())
            if text and text not in texts:
                texts.append(text)
                scores.append(math.log(entry.score) if entry.score > 0 else math.nan)
        # hyp() is the decoder's 1-best and ranks first (scored as the best entry); underflowed entries rank last
        finite = [s for s in scores if not math.isnan(s)]
        top, floor = (max(finite), min(finite)) if finite else (0.0, 0.0)
        ranked = sorted(zip(texts[1:], scores[1:], strict=True),
                        key=lambda entry: math.inf if math.isnan(entry[1]) else -entry[1])
        return [Hypothesis(texts[0], round(top, 4))] + [
            Hypothesis(text, round(score if not math.isnan(score) else floor - 1.0 - i, 4))
            for i, (text, score) in enumerate(ranked)]

    def recognize(self, audios: Sequence[np.ndarray], languages: Sequence[str]) -> list[list[Hypothesis]]:
        unsupported = sorted(set(languages) - {"en"})
        if unsupported:
            raise ValueError(f"pocketsphinx's bundled model is English only; got languages {unsupported}")
        return [self.recognize_one(audio) for audio in audios]


class WhisperNBest:
    """The kit's Whisper (`speechkit.models.asr`), beam search with the beams as the N-best."""

    def __init__(self, checkpoint: str, nbest: int = 5, num_beams: int = 5, name: str = "whisper",
                 device: str | None = None):
        if nbest > num_beams:
            raise ValueError(f"nbest ({nbest}) cannot exceed num_beams ({num_beams})")
        dtype = inference_dtype(torch.device(device or default_device()).type)
        self.model, self.tokenizer = load_asr(checkpoint, dtype=dtype, device=device)
        self.name, self.nbest, self.num_beams = name, nbest, num_beams
        self.signature = {"system": "whisper", "checkpoint": checkpoint, "weights": checkpoint_digest(checkpoint),
                          "nbest": nbest, "num_beams": num_beams, "dtype": str(dtype).removeprefix("torch.")}

    def recognize(self, audios: Sequence[np.ndarray], languages: Sequence[str]) -> list[list[Hypothesis]]:
        decoded = transcribe(self.model, self.tokenizer, audios, languages, num_beams=self.num_beams,
                             nbest=self.nbest)
        return [distinct(hypotheses) for hypotheses in decoded]


class HuggingFaceASR:
    """A transformers speech-to-text checkpoint with its processor (`full` profile): N-best from beam search."""

    def __init__(self, checkpoint: str, nbest: int = 5, num_beams: int = 5, name: str | None = None,
                 device: str | None = None, dtype: torch.dtype = torch.float32):
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

        path = local_or_hub(checkpoint)
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = AutoModelForSpeechSeq2Seq.from_pretrained(path, dtype=dtype).to(device or default_device()).eval()
        self.name, self.nbest, self.num_beams = name or Path(checkpoint).name, nbest, num_beams
        self.signature = {"system": "transformers", "checkpoint": checkpoint, "weights": checkpoint_digest(checkpoint),
                          "nbest": nbest, "num_beams": num_beams}

    @torch.no_grad()
    def recognize(self, audios: Sequence[np.ndarray], languages: Sequence[str]) -> list[list[Hypothesis]]:
        inputs = self.processor(list(audios), sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                return_attention_mask=True).to(self.model.device, self.model.dtype)
        output = self.model.generate(**inputs, num_beams=self.num_beams, num_return_sequences=self.nbest,
                                     return_dict_in_generate=True, output_scores=True)
        texts = self.processor.batch_decode(output.sequences, skip_special_tokens=True)
        scores = output.sequences_scores.tolist() if output.sequences_scores is not None else [0.0] * len(texts)
        return [distinct([Hypothesis(texts[j].strip(), scores[j])
                          for j in range(i * self.nbest, (i + 1) * self.nbest)]) for i in range(len(audios))]


def checkpoint_digest(checkpoint: str) -> str:
    """SHA-256 of a local checkpoint's weight files (a hub id stands for itself)."""
    folder = Path(checkpoint)
    if not folder.is_dir():
        return checkpoint
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def distinct(hypotheses: Sequence[Hypothesis]) -> list[Hypothesis]:
    """Best first, each text once (beams often differ only in what decodes to the same string)."""
    seen, kept = set(), []
    for hypothesis in sorted(hypotheses, key=lambda h: -h.score):
        if hypothesis.text not in seen:
            seen.add(hypothesis.text)
            kept.append(hypothesis)
    return kept


def recognize_manifest(recognizer: NBestRecognizer, data_dir: str | Path, manifest: str, path: str | Path,
                       limit: int = 0, batch_seconds: float = 60.0, max_batch: int = 16,
                       progress: bool = True) -> list[NBest]:
    """N-best lists for a manifest (its first `limit` utterances if `limit`), written in the kit's N-best format in
    manifest order, with the recogniser's signature beside them (`<path>.json`); lists already written by the same
    recogniser (same signature) for the same utterances are read back instead of recomputed."""
    data_dir = Path(data_dir)
    utterances: list[Utterance] = read_manifest(data_dir / f"{manifest}.jsonl")
    utterances = utterances[:limit] if limit else utterances
    path = Path(path)
    signature_path = path.with_name(path.name + ".json")
    if path.is_file() and signature_path.is_file() and json.loads(signature_path.read_text()) == recognizer.signature:
        saved = read_nbest(path)
        if [n.id for n in saved] == [u.id for u in utterances]:
            return saved
    lists: dict[str, NBest] = {}
    batches = length_batches([u.duration for u in utterances], batch_seconds, max_batch, rng=None)
    for indices in tqdm(batches, desc=f"{recognizer.name} {manifest}", unit="batch", disable=not progress):
        batch = [utterances[i] for i in indices]
        decoded = recognizer.recognize([load_utterance(u, data_dir) for u in batch], [u.language for u in batch])
        lists.update({u.id: NBest(u.id, recognizer.name, tuple(h)) for u, h in zip(batch, decoded, strict=True)})
    ordered = [lists[u.id] for u in utterances]
    write_manifest(path, ordered)
    write_json(signature_path, recognizer.signature)
    return ordered


def make_recognizer(system: str, whisper: str, output_dir: str | Path, nbest: int = 5,
                    num_beams: int = 5) -> NBestRecognizer:
    """"pocketsphinx", "whisper" (the checkpoint `whisper`: a stage of this run, a path or a hub id), or
    "hf:<hub id or path>" (any transformers speech-to-text checkpoint with a processor)."""
    if system == "pocketsphinx":
        return PocketsphinxASR(nbest)
    if system == "whisper":
        return WhisperNBest(resolve_checkpoint(whisper, output_dir), nbest, num_beams)
    if system.startswith("hf:"):
        return HuggingFaceASR(system[3:], nbest, num_beams)
    raise ValueError(f"unknown external system {system!r}: use pocketsphinx, whisper or hf:<id or path>")


def nbest_path(output_dir: str | Path, system: str, manifest: str) -> Path:
    """Where a system's N-best lists of a manifest are kept (the kit's N-best format)."""
    return Path(output_dir) / "nbest" / system / f"{manifest}.jsonl"


def score_nbest(lists: Sequence[NBest], data_dir: str | Path, manifest: str) -> tuple[list[SystemResult],
                                                                                     list[SystemResult]]:
    """(top hypothesis, N-best oracle) error rates of a manifest's N-best lists; the oracle picks, per utterance,
    the hypothesis with the fewest errors - how much a perfect reranker or router could gain from the list."""
    by_id = {u.id: u for u in read_manifest(Path(data_dir) / f"{manifest}.jsonl")}
    utterances = [by_id[n.id] for n in lists]
    top = [n.hypotheses[0].text for n in lists]
    oracle = [min(n.hypotheses, key=lambda h, u=u: utterance_errors(u.text, h.text,
                                                                    normaliser_for(u.language)).errors).text
              for n, u in zip(lists, utterances, strict=True)]
    return score(manifest, utterances, top), score(manifest, utterances, oracle)
