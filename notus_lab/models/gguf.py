"""GGUF files for llama.cpp, made by llama.cpp's own tools from a finished run's model.

- Convert: llama.cpp's `convert_hf_to_gguf.py` writes the f16 file, with the tokenizer and the chat template in
  its metadata. The converter is the one vendored in the source distribution of the installed
  llama-cpp-python, so it matches the library that reads its files. pip fetches that sdist once into the cache.
- Quantize: `llama_model_quantize` through llama-cpp-python's bindings. It is the function behind llama.cpp's
  `llama-quantize` tool, which the Python package does not build.
- Read back: the `gguf` package reads each file's metadata (tensor types, chat template), and llama.cpp's
  tokenizer is checked against the run's own on the world's texts.

Needs the `gguf` extra: pip install 'notus_lab[gguf]' (llama-cpp-python compiles llama.cpp: minutes).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

from notus_lab.config.schema import GGUF_TYPES
from notus_lab.config.validate import require_llama_cpp
from notus_lab.core.cache import build_once
from notus_lab.core.errors import ConfigError, invalid

log = logging.getLogger("notus_lab")

BASELINE = "f16"
# what the converter needs from llama.cpp's tree (the rest of the sdist is the C++ the wheel already built)
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")


def parse_quantizations(value, key: str = "export.gguf") -> list[str]:
    """The requested files, f16 first (the baseline every other is judged against, and their source); each
    name once, in llama.cpp's spelling (q4_k_m, Q4_K_M), or a one-line ConfigError naming the allowed ones."""
    names = [str(v).strip().lower() for v in (value.split(",") if isinstance(value, str) else value)]
    names = [n for n in names if n]
    allowed = ", ".join(GGUF_TYPES)
    for n in names:
        if n not in GGUF_TYPES:
            raise invalid(key, n, f"one or more of {allowed}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise invalid(key, ",".join(names), f"each of {allowed} once", why=f"{', '.join(twice)} given twice")
    return [BASELINE, *(n for n in names if n != BASELINE)] if names else []


def converter_dir(cache: Path) -> Path:
    """llama.cpp's converter as vendored by the installed llama-cpp-python's sdist: fetched once with pip
    (so that pip's own index settings apply), its converter parts kept in the cache under its version."""
    v = require_llama_cpp()
    target = Path(cache) / "llama.cpp" / f"llama-cpp-python-{v}"
    return build_once(target, "convert_hf_to_gguf.py", lambda tmp: _fetch_converter(v, tmp))


def _fetch_converter(v: str, out: Path) -> None:
    with tempfile.TemporaryDirectory() as download:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", download]
            + ["--disable-pip-version-check", "--quiet", f"llama-cpp-python=={v}"],
            capture_output=True,
            text=True,
        )
        sdists = list(Path(download).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            last = (done.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
            raise ConfigError(
                f"export.gguf needs llama.cpp's converter from the llama-cpp-python=={v} sdist, and pip could not "
                f"fetch it ({last[:200]}); run once where pip reaches its index, or put the sdist's "
                f"vendor/llama.cpp/{{{','.join(CONVERTER_PARTS)}}} in {out.parent}/llama-cpp-python-{v}"
            )
        with tarfile.open(sdists[0]) as tar:
            root = f"{tar.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
            wanted = [
                m
                for m in tar.getmembers()
                if m.name.startswith(root) and m.name[len(root) :].split("/")[0] in CONVERTER_PARTS
            ]
            for m in wanted:
                m.name = m.name[len(root) :]
            tar.extractall(out, members=wanted, filter="data")


def pre_tokenizer(model_dir: Path) -> str | None:
    """llama.cpp's name for the BPE pre-tokenizer of a tokenizer its table does not know. llama.cpp keys its
    pre-tokenizers by a hash of known models' token ids, so a tokenizer trained here is unknown to it even when
    it splits text exactly as one it knows. "gpt-2" where tokenizer.json's pre-tokenizer is GPT-2's own
    (ByteLevel with its regex and no prefix space): llama.cpp's gpt2 pre-tokenizer applies the same regex. None
    otherwise: the converter's own table must know the tokenizer. `tokenizer_check` proves the choice."""
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return None
    pre = json.loads(path.read_text()).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False):
        return "gpt-2"
    return None


def convert(model_dir: Path, out: Path, cache: Path) -> Path:
    """The f16 GGUF of a Hugging Face model dir, by llama.cpp's converter in a process of its own
    (notus_lab/models/gguf_convert.py); a failure is one line with the converter's last words."""
    converter = converter_dir(cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    command = [sys.executable, "-m", "notus_lab.models.gguf_convert", str(converter), pre_tokenizer(model_dir) or "-"]
    command += [str(model_dir), "--outfile", str(partial), "--outtype", BASELINE]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ConfigError(f"llama.cpp's convert_hf_to_gguf.py could not convert {model_dir}: {last[:300]}")
    partial.rename(out)
    return out


def quantize(source: Path, out: Path, name: str, threads: int) -> Path:
    """`source` (the f16 file) quantized to `name` by llama.cpp's llama_model_quantize."""
    import ctypes

    import llama_cpp

    quiet()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, GGUF_TYPES[name])
    params.nthread = threads
    partial = out.with_suffix(".partial")
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
    if rc != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"llama_model_quantize({source.name} -> {name}) returned {rc}")
    partial.rename(out)
    return out


def describe(path: Path) -> dict:
    """What a GGUF file holds, read back with the gguf package: its size, llama.cpp's file type, how many
    tensors of each type (a K-quant falls back to another type on rows not a multiple of 256), the chat template."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def field(name: str):
        f = reader.fields.get(name)
        return None if f is None else f.contents()

    return {
        "bytes": path.stat().st_size,
        "file_type": field("general.file_type"),
        "tensor_types": dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items())),
        "tensors": len(reader.tensors),
        "chat_template": field("tokenizer.chat_template"),
        "tokenizer_pre": field("tokenizer.ggml.pre"),
    }


def tokenizer_check(path: Path, tokenizer, texts: list[str]) -> dict:
    """llama.cpp's tokenizer (from the file's own vocabulary) against the run's, on `texts`: the same token ids
    for every one, or the first text that differs."""
    llm = load(path, vocab_only=True)
    differ = [
        t
        for t in texts
        if llm.tokenize(t.encode(), add_bos=False, special=True) != tokenizer(t, add_special_tokens=False)["input_ids"]
    ]
    first = differ[0] if differ else None
    return {"texts": len(texts), "identical": len(texts) - len(differ), "first_difference": first}


def load(path: Path, **kwargs):
    """llama-cpp-python's Llama on a file, quiet; a file llama.cpp cannot load is a one-line ConfigError."""
    from llama_cpp import Llama

    quiet()
    try:
        return Llama(model_path=str(path), verbose=False, **kwargs)
    except ValueError as exc:
        raise ConfigError(
            f"llama.cpp cannot load {path} ({exc}); Llama(model_path=..., verbose=True) prints why"
        ) from None


def quiet() -> None:
    """llama.cpp's own log (every tensor it quantizes, every context it makes) only for errors: the run records
    what was built (describe), and Llama(verbose=True) shows the rest."""
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
