"""Content keys and the cache root: the one place a cache's name is made from what it depends on. A key is a
sha256 prefix over the parts (text as UTF-8, bytes as they are, anything else as sorted JSON), so a change to
any part is a new key and a rebuild, never a stale reuse."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def _bytes(part) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode()
    return json.dumps(part, sort_keys=True, default=str).encode()


def content_key(*parts, length: int = 16) -> str:
    """The key of these parts, in order ("\\x00" between them)."""
    return hashlib.sha256(b"\x00".join(_bytes(p) for p in parts)).hexdigest()[:length]


def streamed_key(chunks, length: int = 16) -> str:
    """The key of a stream of parts too large to hold at once (files, row by row)."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(_bytes(chunk))
    return h.hexdigest()[:length]


def file_chunks(path: Path, size: int = 1 << 20):
    with open(path, "rb") as fh:
        yield from iter(lambda: fh.read(size), b"")


def cache_root(cache_dir: str | None = None) -> Path:
    """Where built artefacts are kept: base.cache_dir, else $NOTUS_LAB_CACHE, else ~/.cache/notus_lab."""
    return Path(os.path.expanduser(cache_dir or os.environ.get("NOTUS_LAB_CACHE") or "~/.cache/notus_lab"))
