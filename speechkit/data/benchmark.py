"""The embedded synthetic benchmark: generated deterministically from a seed, offline, on any machine.

Layout of a benchmark folder (formats in data_manifests/README.md):
    source_{train,dev,test}.jsonl           labeled general-domain English
    {medical,finance}_{pool,dev,test}.jsonl  target domains; `pool` is unlabeled training audio (text null)
    {medical,finance}_pool_reference.jsonl   the pool's true transcripts, only to measure pseudo-label quality
    multilingual_{train,dev,test}.jsonl      fr, de, es, ja, ko
    conversations_{split}.jsonl              multi-speaker recordings; their turns in conversation_turns_{split}.jsonl,
    conversations_{split}.seglst.json/.rttm  references for meeteval (tcpWER/cpWER) and DER
    text_corpus.jsonl                        text-only corpus (what an LLM knows), no spoken sentence in it
    audio/                                   16 kHz mono 16-bit WAV (or FLAC: `audio_format`)
    benchmark.json                           the config, statistics, content hash and generation time

Every utterance draws its randomness from (seed, split, index), so a split's content does not depend on the size of
any other split: the `pretrain` profile's larger training split leaves dev and test identical to `default`'s.
Generation resumes: an interrupted run keeps the audio it wrote in `<root>.partial` and synthesises only the rest
when it is rerun with the same configuration (the pretrain profile's 30+ hours take most of an hour on 2 cores).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import shutil
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm  # the text bar: it renders in JupyterLab and in papermill outputs alike

from speechkit.core.fileio import atomic_open, sha256_file, write_json, write_jsonl, write_text
from speechkit.core.results import Metric
from speechkit.core.text import normaliser_for, words
from speechkit.data import corpora
from speechkit.data.audio import peak_normalise, write_audio, write_wav
from speechkit.data.manifest import (SAMPLE_RATE, Context, Conversation, Utterance, read_conversations, read_manifest,
                                     write_manifest)
from speechkit.data.synth import (Speaker, add_noise, augment, check_engines, draw_augmentation, make_noise,
                                  make_speakers, synthesize)
from speechkit.data.textgen import (MULTILINGUAL, TARGET_DOMAINS, Domain, Sentence, SentencePool, build_domains,
                                    entity_lexicon)

SPLITS_WITH_TEXT = ("train", "dev", "test")
AUDIO_FORMATS = ("wav", "flac")
PARTIAL_CONFIG = ".config.json"  # in `<root>.partial`: the configuration whose audio is there (resume only if equal)
TRAIN_CONVERSATION_TURNS = (6, 14)  # turns per training conversation (what routing and the context study train on)


@dataclass(frozen=True)
class BenchmarkConfig:
    """Sizes and knobs of the benchmark. Counts are utterances (conversations for `conversations_*`)."""
    seed: int = 0
    source_train: int = 16           # labeled general-domain English
    source_dev: int = 4
    source_test: int = 6
    target_pool: int = 6             # per target domain: unlabeled training audio
    target_dev: int = 2
    target_test: int = 4
    multilingual_train: int = 2      # per language
    multilingual_dev: int = 1
    multilingual_test: int = 1
    conversations_train: int = 1
    conversations_dev: int = 1
    conversations_test: int = 1
    eval_conversation_turns_min: int = 6   # turns per dev/test conversation (about 5 s each with its gap)
    eval_conversation_turns_max: int = 14
    train_speakers: int = 40         # per language; dev/test speakers are different people
    eval_speakers: int = 12
    # English voices (measured Whisper tiny.en WER on Brown sentences: hibari 4.8%, Piper 7.7%, flite 9-19%,
    # espeak-ng 26%); espeak-ng speaks the rest, and every other language
    hibari_share: float = 0.35
    piper_share: float = 0.25
    flite_share: float = 0.25
    augment_probability: float = 0.2  # chance of each of speed, reverb, noise per utterance
    snr_db_min: float = 5.0
    snr_db_max: float = 25.0
    context_entities: int = 8        # entity names in each target utterance's context (its own + distractors)
    text_corpus_factor: float = 25.0  # text-only corpus words per transcribed word
    workers: int = 2                 # synthesis processes
    audio_format: str = "wav"        # "wav" or "flac" (lossless, about half the size: the pretrain profile's 30+ h)

    def __post_init__(self):
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.type in ("int", "float") and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise TypeError(f"BenchmarkConfig.{spec.name} must be a number, got {value!r}")
            if spec.type == "int" and not isinstance(value, int):
                raise TypeError(f"BenchmarkConfig.{spec.name} must be an integer, got {value!r}")
            if spec.type in ("int", "float") and spec.name != "seed" and value < 0:
                raise ValueError(f"BenchmarkConfig.{spec.name} must be >= 0, got {value}")
        for name in ("source_train", "source_test", "target_test", "train_speakers", "eval_speakers", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"BenchmarkConfig.{name} must be at least 1")
        if not 0 <= self.augment_probability <= 1:
            raise ValueError("augment_probability is a probability in [0, 1]")
        if self.hibari_share + self.piper_share + self.flite_share > 1:
            raise ValueError("hibari_share + piper_share + flite_share exceed 1 (espeak-ng speaks the rest)")
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, not {self.audio_format!r}")
        if not 2 <= self.eval_conversation_turns_min <= self.eval_conversation_turns_max:
            raise ValueError("eval_conversation_turns_min must be at least 2 (a conversation has two speakers) and "
                             f"at most eval_conversation_turns_max, got {self.eval_conversation_turns_min} and "
                             f"{self.eval_conversation_turns_max}")
        if self.snr_db_min > self.snr_db_max:
            raise ValueError(f"snr_db_min ({self.snr_db_min}) exceeds snr_db_max ({self.snr_db_max})")


@dataclass(frozen=True)
class _Job:
    """One utterance to synthesise (texts and speakers are drawn in the parent so that splits can be deduplicated)."""
    utterance: Utterance
    speaker: Speaker
    rng_key: tuple[int, ...]
    augment: bool


def _key(seed: int, name: str, index: int) -> tuple[int, ...]:
    return (seed, zlib.crc32(name.encode()), index)


def generate(config: BenchmarkConfig, root: str | Path, progress: bool = True) -> dict:
    """Generate the benchmark into `root`; returns the `benchmark.json` record.

    It is built in `<root>.partial` and moved into place only when complete, so an interrupted run leaves the
    previous benchmark (or nothing) at `root`, never a mixture. Rerun with the same configuration, it keeps the
    audio already written (there, or in the finished benchmark at `root`: each file is written atomically and its
    content depends only on its seed) and synthesises the rest. A `root` that is a symbolic link (data kept on
    another disk) stays one: the benchmark is built beside, and moved into, the folder it points to.
    """
    check_engines()
    started = time.perf_counter()
    final = Path(root).resolve()
    root = final.with_name(final.name + ".partial")
    resumable = {"config": {k: v for k, v in dataclasses.asdict(config).items() if k != "workers"},
                 "text_sources": corpora.sources()}
    if not root.exists() and _recorded_inputs(final) == resumable:
        final.rename(root)  # a rerun of the same configuration: keep its audio, rewrite and re-check the rest
        write_json(root / PARTIAL_CONFIG, resumable)
    if not (root / PARTIAL_CONFIG).is_file() or json.loads((root / PARTIAL_CONFIG).read_text()) != resumable:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / PARTIAL_CONFIG, resumable)
    domains = build_domains(config.seed)
    speakers = _speaker_pools(config)
    plans = _plan_utterances(config, domains, speakers)
    conversations = _plan_conversations(config, domains, speakers)

    jobs = [job for split_jobs in plans.values() for job in split_jobs]
    jobs += [job for _, turns in conversations for job in turns]
    synthesised = _synthesise_all(jobs, config, root, progress)

    manifests = {}
    for name, split_jobs in plans.items():
        utterances = [_finish(job.utterance, synthesised) for job in split_jobs]
        if name.endswith("_pool"):
            write_manifest(root / f"{name}_reference.jsonl", utterances)
            utterances = [dataclasses.replace(u, text=None, entities=()) for u in utterances]
        write_manifest(root / f"{name}.jsonl", utterances)
        manifests[name] = utterances
    manifests.update(_mix_conversations(conversations, synthesised, config, root))

    corpus_words = _write_text_corpus(config, domains, manifests, root)
    (root / PARTIAL_CONFIG).unlink()  # complete: what identifies it now is benchmark.json
    record = {
        "config": dataclasses.asdict(config),
        "statistics": [dataclasses.asdict(row) for row in statistics(root)],
        "conversations": [dataclasses.asdict(row) for row in conversation_statistics(root)],
        "entity_oov_rate": entity_oov_rate(root),
        "text_corpus_words": corpus_words,
        "text_sources": corpora.sources(),
        "generation_seconds": round(time.perf_counter() - started, 1),
        "sha256": content_hash(root),
    }
    write_json(root / "benchmark.json", record)
    shutil.rmtree(final, ignore_errors=True)
    root.rename(final)
    return record


def _recorded_inputs(root: Path) -> dict | None:
    """The configuration (less `workers`) and text sources a finished benchmark at `root` was generated from."""
    if not (root / "benchmark.json").is_file():
        return None
    record = json.loads((root / "benchmark.json").read_text())
    return {"config": {k: v for k, v in record["config"].items() if k != "workers"},
            "text_sources": record.get("text_sources")}


def benchmark_metrics(record: dict) -> list[Metric]:
    """The numbers of a `benchmark.json` record that go into the run summary."""
    stats = {row["manifest"]: row for row in record["statistics"]}
    spoken = [row for name, row in stats.items() if not name.endswith("_reference")]
    return [
        Metric("labeled source hours (train)", stats["source_train"]["hours"], unit="h"),
        Metric("audio hours (all manifests)", round(sum(row["hours"] for row in spoken), 3), unit="h"),
        Metric("utterances (all manifests)", sum(row["utterances"] for row in spoken), unit="count"),
        Metric("entity OOV rate (target dev/test)", record["entity_oov_rate"], unit="rate"),
        Metric("text corpus words", record["text_corpus_words"], unit="count"),
        Metric("generation time", record["generation_seconds"], unit="s"),
        *(metric for row in record["conversations"] if row["split"] == "test" for metric in (
            Metric("test conversations", row["conversations"], unit="count"),
            Metric("test conversation minutes (median)", row["minutes_median"], unit="min"),
            Metric("test conversations' overlapped speech", row["overlap_rate"], unit="rate"))),
    ]


def _speaker_pools(config: BenchmarkConfig) -> dict[tuple[str, str], list[Speaker]]:
    """(language, "train"|"eval") -> speakers; eval speakers never appear in training audio.

    Eval speakers are drawn first from their own seed, so changing the number of training speakers (the pretrain
    profile has more) leaves dev and test voices unchanged.
    """
    pools = {}
    for language in ("en", *MULTILINGUAL):
        shares = {"hibari": config.hibari_share, "piper": config.piper_share, "flite": config.flite_share}
        taken: set = set()
        for role, count in (("eval", config.eval_speakers), ("train", config.train_speakers)):
            rng = np.random.default_rng(_key(config.seed, f"speakers/{language}/{role}", 0))
            prefix = f"{language}-eval-" if role == "eval" else f"{language}-"
            pools[language, role] = make_speakers(language, count, rng, prefix, shares, taken)
    return pools


def _plan_utterances(config: BenchmarkConfig, domains: dict[str, Domain | SentencePool],
                     speakers: dict[tuple[str, str], list[Speaker]]) -> dict[str, list[_Job]]:
    """Every utterance of every split. Source sentences come from disjoint corpus partitions; grammar sentences
    are drawn test first, then dev, then training, each redrawn while it repeats a sentence of an earlier split."""
    sizes = {"source": {"test": config.source_test, "dev": config.source_dev, "train": config.source_train}}
    for domain in TARGET_DOMAINS:
        sizes[domain] = {"test": config.target_test, "dev": config.target_dev, "pool": config.target_pool}
    sizes["multilingual"] = {"test": config.multilingual_test, "dev": config.multilingual_dev,
                             "train": config.multilingual_train}
    plans = {}
    for group, splits in sizes.items():
        used: set[str] = set()
        for split, count in splits.items():
            name = f"{group}_{split}"
            languages = MULTILINGUAL if group == "multilingual" else ("en",)
            jobs = []
            for language in languages:
                domain = domains["general" if group == "source" else language if group == "multilingual" else group]
                pool = speakers[language, "train" if split in ("train", "pool") else "eval"]
                for index in range(count):
                    key = _key(config.seed, f"{name}/{language}", index)
                    rng = np.random.default_rng(key)
                    if isinstance(domain, SentencePool) and name == "source_train":
                        sentence = _training_sentence(domain, index)
                    elif isinstance(domain, SentencePool):
                        sentence = domain.sentence(split, index)
                    else:
                        sentence = _unused(domain, rng, used)
                    used.add(sentence.text)
                    speaker = pool[rng.integers(len(pool))]
                    uid = f"{name}-{language}-{index:05d}" if group == "multilingual" else f"{name}-{index:05d}"
                    utterance = _utterance(uid, f"audio/{name}/{uid}.{config.audio_format}", sentence, domain,
                                           speaker, split,
                                           group, config, rng)
                    jobs.append(_Job(utterance, speaker, key, augment=True))
            plans[name] = jobs
    return plans


def _training_sentence(pool: SentencePool, index: int) -> Sentence:
    """The index-th labeled training sentence: the training partition, then (for a training set larger than it, the
    pretrain profile's) the text-corpus partition - never a dev, test or conversation sentence."""
    train = pool.partitions["train"]
    return pool.sentence("train", index) if index < len(train) else pool.sentence("corpus", index - len(train))


def _unused(domain: Domain, rng: np.random.Generator, used: set[str], tries: int = 200) -> Sentence:
    """A grammar sentence not in `used` (a small grammar may run out: then the last draw, repeated, is kept)."""
    for _ in range(tries):
        sentence = domain.sample(rng)
        if sentence.text not in used:
            break
    return sentence


def _utterance(uid: str, audio: str, sentence: Sentence, domain: Domain | SentencePool, speaker: Speaker, split: str,
               group: str,
               config: BenchmarkConfig, rng: np.random.Generator, **extra) -> Utterance:
    context = None
    if group in TARGET_DOMAINS:
        own = [sentence.text[s.start:s.end] for s in sentence.entities]
        lexicon = [name for name in entity_lexicon(domain) if name not in own]
        extra_count = max(0, config.context_entities - len(set(own)))
        distractors = [lexicon[i] for i in rng.choice(len(lexicon), size=extra_count, replace=False)]
        names = list(dict.fromkeys(own + distractors))  # ordered: a set's order changes with PYTHONHASHSEED
        names = [names[i] for i in rng.permutation(len(names))]
        context = Context(description=domain.description, entities=tuple(names))
    meta = {"voice": speaker.describe()}
    return Utterance(id=uid, audio=audio, duration=0.0, language=domain.language, speaker=speaker.id,
                     domain=domain.name, split=split, text=sentence.text, context=context,
                     entities=sentence.entities, meta=meta, **extra)


def _distinct_voices(pool: list[Speaker], rng: np.random.Generator) -> list[Speaker]:
    """2-4 speakers of a conversation, no two with the same voice (an engine's voice at another pace is the same
    person to a diarizer; hibari has one voice)."""
    size, cast = int(rng.integers(2, 5)), []
    for i in rng.permutation(len(pool)):
        if len(cast) < size and (pool[i].engine, pool[i].voice) not in {(s.engine, s.voice) for s in cast}:
            cast.append(pool[i])
    if len(cast) < 2:
        raise ValueError("a conversation needs two distinct voices; the speaker pool has one")
    return cast


def _plan_conversations(config: BenchmarkConfig, domains: dict[str, Domain | SentencePool],
                        speakers: dict[tuple[str, str], list[Speaker]]) -> list[tuple[Conversation, list[_Job]]]:
    """Conversations of 2-4 speakers (6-14 turns in training, the configured range in dev and test); turn timing is
    decided when mixing, once durations are known."""
    planned = []
    for split in SPLITS_WITH_TEXT:
        fewest, most = TRAIN_CONVERSATION_TURNS if split == "train" else (config.eval_conversation_turns_min,
                                                                          config.eval_conversation_turns_max)
        for index in range(getattr(config, f"conversations_{split}")):
            key = _key(config.seed, f"conversations_{split}", index)
            rng = np.random.default_rng(key)
            cast = _distinct_voices(speakers["en", "train" if split == "train" else "eval"], rng)
            cid = f"conversation_{split}-{index:04d}"
            turns, previous = [], None
            for turn in range(int(rng.integers(fewest, most + 1))):
                speaker = rng.choice([s for s in cast if s is not previous])
                previous = speaker
                uid = f"{cid}-{turn:02d}"
                sentence = domains["general"].sentence(f"conversations_{split}", index * most + turn)
                utterance = _utterance(uid, f"audio/conversations_{split}/{cid}.wav", sentence,
                                       domains["general"], speaker, split, "conversation", config, rng,
                                       conversation=cid, turn=turn)
                turns.append(_Job(utterance, speaker, (*key, turn), augment=False))
            conversation = Conversation(cid, f"audio/conversations_{split}/{cid}.wav", 0.0, "en",
                                        tuple(s.id for s in cast), split)
            planned.append((conversation, turns))
    return planned


# -- synthesis (parallel) -----------------------------------------------------------------------------------------

def _synthesise_one(job: _Job, config: BenchmarkConfig, root: Path) -> tuple[str, float, dict]:
    rng = np.random.default_rng(job.rng_key)
    voice_seed = int(rng.integers(2 ** 31))
    augmentation = (draw_augmentation(rng, config.augment_probability, (config.snr_db_min, config.snr_db_max))
                    if job.augment else None)
    record = augmentation.record() if augmentation else {}
    turn = root / "audio" / ".turns" / f"{job.utterance.id}.npy"
    path = root / job.utterance.audio if job.utterance.conversation is None else turn
    if path.is_file():  # written by an interrupted run of the same configuration (atomically): the same audio
        seconds = sf.info(str(path)).frames / SAMPLE_RATE if path != turn else len(np.load(turn)) / SAMPLE_RATE
        return job.utterance.id, seconds, record
    audio = synthesize(job.speaker, job.utterance.text, seed=voice_seed)
    if augmentation:
        babble = _babble(rng, config) if augmentation.noise == "babble" else None
        audio = augment(audio, augmentation, rng, babble)
    if path == turn:  # turns are mixed into the conversation's file later
        with atomic_open(turn, "wb") as handle:
            np.save(handle, audio)
    else:
        write_audio(path, audio)
    return job.utterance.id, len(audio) / SAMPLE_RATE, record


def _babble(rng: np.random.Generator, config: BenchmarkConfig) -> np.ndarray:
    """Three other people talking at once (text-corpus sentences, never transcribed, by espeak speakers)."""
    domain = _domains(config.seed)["general"]
    voices = make_speakers("en", 3, rng, "babble-")
    corpus = domain.partitions["corpus"]
    talk = [synthesize(v, corpus[rng.integers(len(corpus))], seed=0) for v in voices]
    length = max(len(t) for t in talk)
    return sum(np.pad(t, (0, length - len(t))) for t in talk)


@lru_cache(maxsize=1)
def _domains(seed: int) -> dict[str, Domain | SentencePool]:
    return build_domains(seed)


def _worker(args):
    job, config, root = args
    return _synthesise_one(job, config, root)


def _synthesise_all(jobs: list[_Job], config: BenchmarkConfig, root: Path,
                    progress: bool) -> dict[str, tuple[float, dict]]:
    """Synthesise every job (in `config.workers` processes); returns id -> (duration, augmentation record)."""
    for job in jobs:
        (root / job.utterance.audio).parent.mkdir(parents=True, exist_ok=True)
    (root / "audio" / ".turns").mkdir(parents=True, exist_ok=True)
    tasks = [(job, config, root) for job in jobs]
    bar = tqdm(total=len(tasks), desc="synthesising", unit="utt", mininterval=5, disable=not progress)
    results = {}
    if config.workers == 1:
        outputs = map(_worker, tasks)
        for uid, seconds, record in outputs:
            results[uid] = (seconds, record)
            bar.update()
    else:
        # spawn, not fork: a Jupyter kernel may hold threads (and onnxruntime sessions) that fork would copy badly.
        with multiprocessing.get_context("spawn").Pool(config.workers) as pool:
            for uid, seconds, record in pool.imap_unordered(_worker, tasks, chunksize=16):
                results[uid] = (seconds, record)
                bar.update()
    bar.close()
    return results


def _finish(utterance: Utterance, synthesised: dict[str, tuple[float, dict]]) -> Utterance:
    """The planned utterance with its measured duration and the augmentation applied to it."""
    seconds, augmentation = synthesised[utterance.id]
    meta = {**utterance.meta, "augmentation": augmentation} if augmentation else utterance.meta
    return dataclasses.replace(utterance, duration=round(seconds, 4), meta=meta)


# -- conversations ------------------------------------------------------------------------------------------------

def _mix_conversations(conversations: list[tuple[Conversation, list[_Job]]],
                       synthesised: dict[str, tuple[float, dict]], config: BenchmarkConfig,
                       root: Path) -> dict[str, list[Utterance]]:
    """Lay the turns on a timeline (gaps of 0.1-1.0 s; a fifth of turns overlap the previous one) and mix them."""
    turns_dir = root / "audio" / ".turns"
    by_split: dict[str, tuple[list[Conversation], list[Utterance]]] = {s: ([], []) for s in SPLITS_WITH_TEXT}
    for conversation, jobs in conversations:
        rng = np.random.default_rng(_key(config.seed, conversation.id, 1))
        pieces, turns, cursor, previous_duration = [], [], 0.3, 0.0
        for job in jobs:
            audio = np.load(turns_dir / f"{job.utterance.id}.npy")
            duration = len(audio) / SAMPLE_RATE
            if previous_duration and rng.random() < 0.2:  # overlap: start before the previous speaker finishes
                cursor -= float(rng.uniform(0.2, min(1.0, 0.5 * previous_duration)))
            start = round(cursor, 3)
            pieces.append((int(start * SAMPLE_RATE), audio))
            turns.append(dataclasses.replace(_finish(job.utterance, synthesised), offset=start))
            cursor = start + duration + float(rng.uniform(0.1, 1.0))
            previous_duration = duration
        mix = np.zeros(int((cursor + 0.3) * SAMPLE_RATE), np.float32)
        for begin, audio in pieces:
            mix[begin:begin + len(audio)] += audio
        mix = add_noise(mix, make_noise("white", len(mix), rng), snr_db=35.0)  # a quiet room, not digital silence
        write_wav(root / conversation.audio, peak_normalise(mix))
        conversations_of_split, turns_of_split = by_split[conversation.split]
        conversations_of_split.append(dataclasses.replace(conversation, duration=round(len(mix) / SAMPLE_RATE, 4)))
        turns_of_split.extend(turns)
    for path in turns_dir.glob("*.npy"):
        path.unlink()
    turns_dir.rmdir()
    manifests = {}
    for split, (recordings, turns) in by_split.items():
        write_manifest(root / f"conversations_{split}.jsonl", recordings)
        write_manifest(root / f"conversation_turns_{split}.jsonl", turns)
        write_json(root / f"conversations_{split}.seglst.json", to_seglst(turns))
        write_text(root / f"conversations_{split}.rttm", to_rttm(turns))
        manifests[f"conversation_turns_{split}"] = turns
    return manifests


def to_seglst(turns: list[Utterance]) -> list[dict]:
    """Conversation turns as meeteval's SegLST (one segment per turn; words are the raw transcript)."""
    return [{"session_id": t.conversation, "speaker": t.speaker, "start_time": t.offset,
             "end_time": round(t.offset + t.duration, 4), "words": t.text} for t in turns]


def to_rttm(turns: list[Utterance]) -> str:
    """Conversation turns as RTTM speaker segments (for DER)."""
    return "".join(f"SPEAKER {t.conversation} 1 {t.offset:.3f} {t.duration:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
                   for t in turns)


# -- text corpus --------------------------------------------------------------------------------------------------

# Share of the text corpus per domain; the five languages split the last fifth.
MAX_SPOKEN_DRAWS = 10_000  # a grammar draw that repeats a spoken sentence this many times in a row has none left
CORPUS_SHARES = {"general": 0.4, "medical": 0.2, "finance": 0.2,
                 **{language: 0.2 / len(MULTILINGUAL) for language in MULTILINGUAL}}


def _write_text_corpus(config: BenchmarkConfig, domains: dict[str, Domain | SentencePool],
                       manifests: dict[str, list[Utterance]], root: Path) -> int:
    """Sentences from every domain, `text_corpus_factor` times as many words as all transcripts together.

    No sentence that is spoken anywhere in the benchmark enters the corpus: the LLM may know a domain's words and
    names, not the answers to the test (nor the unlabeled pool's transcripts).
    """
    spoken = {u.text for utterances in manifests.values() for u in utterances if u.text}
    spoken |= {u.text for name in manifests if name.endswith("_pool")
               for u in read_manifest(root / f"{name}_reference.jsonl", check_audio=False)}
    transcript_words = sum(len(text.split()) for text in spoken)
    budget = int(config.text_corpus_factor * max(transcript_words, 1))
    rows = []
    for name, share in CORPUS_SHARES.items():
        domain = domains[name]
        rng = np.random.default_rng(_key(config.seed, f"corpus/{name}", 0))
        written, target = 0, int(share * budget)
        # real text: the corpus partition in order (all of it at most); a grammar: as many draws as the budget needs
        draws = (Sentence(text) for text in domain.partitions["corpus"]) if isinstance(domain, SentencePool) else (
            domain.sample(rng) for _ in iter(int, 1))
        misses = 0  # consecutive draws of spoken sentences: a small grammar that a large split used up ends here
        for sentence in draws:
            if written >= target or misses >= MAX_SPOKEN_DRAWS:
                break
            if sentence.text in spoken:
                misses += 1
                continue
            misses = 0
            rows.append({"domain": domain.name, "language": domain.language, "text": sentence.text})
            written += len(sentence.text.split())
    write_jsonl(root / "text_corpus.jsonl", rows)
    return sum(len(row["text"].split()) for row in rows)


# -- statistics ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SplitStats:
    manifest: str
    utterances: int
    hours: float
    speakers: int
    languages: str
    vocabulary: int          # distinct normalised words (characters for ja/ko)
    entity_words: int        # entity word tokens in the transcripts
    entity_oov_rate: float | None  # share of them never seen in labeled training transcripts


def _manifest_names(root: Path) -> list[str]:
    return sorted(p.stem for p in root.glob("*.jsonl")
                  if p.stem != "text_corpus" and not p.stem.startswith("conversations_"))


def _training_vocabulary(root: Path) -> set[str]:
    vocabulary = set()
    for name in ("source_train", "multilingual_train", "conversation_turns_train"):
        for utterance in read_manifest(root / f"{name}.jsonl", check_audio=False):
            vocabulary.update(words(utterance.text, normaliser_for(utterance.language)))
    return vocabulary


def _entity_words(utterance: Utterance) -> list[str]:
    return [w for text in utterance.entity_texts() for w in words(text, normaliser_for(utterance.language))]


def statistics(root: str | Path) -> list[SplitStats]:
    """One row per manifest: size, speakers, vocabulary and entity out-of-vocabulary rate against training text."""
    root = Path(root)
    known = _training_vocabulary(root)
    rows = []
    for name in _manifest_names(root):
        utterances = read_manifest(root / f"{name}.jsonl", check_audio=False)
        vocabulary = {w for u in utterances if u.text for w in words(u.text, normaliser_for(u.language))}
        entity = [w for u in utterances for w in _entity_words(u)]
        oov = sum(w not in known for w in entity) / len(entity) if entity else None
        rows.append(SplitStats(name, len(utterances), round(sum(u.duration for u in utterances) / 3600, 3),
                               len({u.speaker for u in utterances}),
                               ",".join(sorted({u.language for u in utterances})), len(vocabulary), len(entity),
                               None if oov is None else round(oov, 4)))
    return rows


@dataclass(frozen=True)
class ConversationStats:
    split: str
    conversations: int
    minutes_min: float
    minutes_median: float
    minutes_max: float
    speakers: str              # how many conversations have 2, 3 and 4 speakers ("2:11 3:10 4:9")
    turns_median: float
    overlap_rate: float        # share of the speech time in which two or more people talk


def conversation_statistics(root: str | Path) -> list[ConversationStats]:
    """One row per conversation split: length, speakers, turns and overlapped speech (pyannote.core's timelines)."""
    from pyannote.core import Annotation, Segment

    root = Path(root)
    rows = []
    for split in SPLITS_WITH_TEXT:
        conversations = read_conversations(root / f"conversations_{split}.jsonl")
        if not conversations:
            continue
        annotations = {c.id: Annotation(uri=c.id) for c in conversations}
        for t in read_manifest(root / f"conversation_turns_{split}.jsonl", check_audio=False):
            annotations[t.conversation][Segment(t.offset, t.offset + t.duration), t.id] = t.speaker
        speech = sum(a.get_timeline().support().duration() for a in annotations.values())
        overlap = sum(a.get_overlap().duration() for a in annotations.values())
        minutes = np.array([c.duration for c in conversations]) / 60
        cast = np.bincount([len(c.speakers) for c in conversations], minlength=5)
        rows.append(ConversationStats(split, len(conversations), round(float(minutes.min()), 2),
                                      round(float(np.median(minutes)), 2), round(float(minutes.max()), 2),
                                      " ".join(f"{n}:{cast[n]}" for n in (2, 3, 4)),
                                      float(np.median([len(a) for a in annotations.values()])),
                                      round(overlap / speech, 4) if speech else 0.0))
    return rows


def entity_oov_rate(root: str | Path) -> float:
    """Share of entity word tokens in the target-domain dev/test/pool transcripts absent from training transcripts."""
    root = Path(root)
    known = _training_vocabulary(root)
    entity = [w for name in _manifest_names(root) if name.split("_")[0] in TARGET_DOMAINS and not name.endswith("_pool")
              for u in read_manifest(root / f"{name}.jsonl", check_audio=False) for w in _entity_words(u)]
    return round(sum(w not in known for w in entity) / len(entity), 4) if entity else 0.0


def content_hash(root: str | Path) -> str:
    """SHA-256 over every file of the benchmark (paths and bytes) but benchmark.json: equal iff the content is."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "benchmark.json"):
        digest.update(str(path.relative_to(root)).encode())
        sha256_file(path, digest)
    return digest.hexdigest()
