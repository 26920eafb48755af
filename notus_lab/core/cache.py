"""Caches built once per machine: the tiny base, the tiny reward model, tokenized preference datasets and
their reference log-probs. A build goes into a temp dir beside its target and is renamed into place, so a
reader never sees half of one; a second process that wants the same target waits on the lock, then uses
the first one's build."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


@contextmanager
def held(lock_path: Path):
    """An exclusive lock on a file (the OS drops it if the holder dies)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_once(target: Path, done: str, build: Callable[[Path], None]) -> Path:
    """`target`, made by `build(tmp_dir)` unless it exists; `done` is the file whose presence means complete."""
    target = Path(target)
    if (target / done).exists():
        return target
    with held(target.parent / f".{target.name}.lock"):
        if (target / done).exists():  # another process built it while this one waited
            return target
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
        try:
            build(tmp)
            shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier build
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
