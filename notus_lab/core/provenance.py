"""What a run was made with: the commit, a hash of the code that runs, the packages, the inputs."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from notus_lab.core.keys import streamed_key
from notus_lab.core.redaction import redact

PACKAGE = Path(__file__).resolve().parents[1]  # notus_lab/: every source file of every subpackage
PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "hydra-core",
    "omegaconf",
    "wandb",
    "bitsandbytes",
    "submitit",
    "tokenizers",
)


def _git(*args) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(PACKAGE.parent), *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_commit() -> str:
    return _git("rev-parse", "HEAD") or "unknown"


def code_version() -> str:
    """The notus_lab code a run was made with: a hash of the package's sources. A commit that touches
    only tests or docs leaves it alone; any change to what runs changes it (git_commit says which commit)."""
    sources = sorted(PACKAGE.rglob("*.py"))
    return streamed_key(part for s in sources for part in (s.relative_to(PACKAGE).as_posix(), s.read_bytes()))


def provenance(data_fingerprint: str, base_fingerprint: str, science_fingerprint: str) -> dict:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "git_commit": git_commit(),
        "code_version": code_version(),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "science_fingerprint": science_fingerprint,
        "command": redact(" ".join(sys.argv)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "data_fingerprint": data_fingerprint,
        "base_fingerprint": base_fingerprint,
    }
