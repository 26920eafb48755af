"""W&B and provenance. Tracking never fails a run, and secrets never reach an artefact."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

log = logging.getLogger("notus_lab")

SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN")
HF_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{20,}")
PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "hydra-core", "omegaconf",
            "wandb", "bitsandbytes", "submitit", "tokenizers")


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested metrics as W&B-style keys: {"eval": {"truth": {"loss": x}}} -> {"eval/truth/loss": x}."""
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def redact(obj):
    """The same object with every secret value (from the environment, or shaped like an HF token) masked."""
    secrets = [os.environ[k] for k in SECRET_ENV if len(os.environ.get(k, "")) >= 8]
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, "***")
        return HF_TOKEN_SHAPE.sub("***", obj)
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> None:
    """Atomic and redacted: a reader never sees half a file, nor a token."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(redact(obj), indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def write_jsonl(path: Path, records: list[dict]) -> None:
    """One JSON object per line, atomic and redacted like write_json."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(redact(r), ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    """The records of a jsonl file, blank lines skipped."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def log_generations(wb, records: list[dict], n: int = 64) -> None:
    """A sample of judged generations as a W&B table (the first `n` prompt x sample records)."""
    import wandb

    columns = ["prompt", "sample", "reference", "policy", "reference_score", "policy_score", "winner"]
    wb.log({"generations": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in records[:n]])})


def _git(*args) -> str:
    try:
        return subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), *args],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_commit() -> str:
    return _git("rev-parse", "HEAD") or "unknown"


def code_version() -> str:
    """The notus_lab code a run was made with: a hash of the package's sources. A commit that touches
    only tests or docs leaves it alone; any change to what runs changes it (git_commit says which commit)."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for source in sorted(package.glob("*.py")):
        h.update(source.name.encode())
        h.update(source.read_bytes())
    return h.hexdigest()[:16]


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
        "python": platform.python_version(), "platform": platform.platform(),
        "packages": versions, "data_fingerprint": data_fingerprint, "base_fingerprint": base_fingerprint,
    }


def wandb_run_id(run_dir: Path) -> str:
    """Stable per run dir, so a resumed run continues the same W&B run."""
    return hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]


def start_wandb(cfg, run_dir: Path, config: dict, tags: list[str], group: str | None, job_type: str):
    """An active W&B run, or None when disabled. Online failures fall back to offline with a warning."""
    if cfg.wandb.mode == "disabled":
        return None
    import wandb

    kwargs = dict(project=cfg.wandb.project, entity=cfg.wandb.entity, name=run_dir.name, group=group,
                  job_type=job_type, tags=tags, config=redact(config), dir=str(run_dir),
                  id=wandb_run_id(run_dir), resume="allow")
    try:
        return wandb.init(mode=cfg.wandb.mode, settings=wandb.Settings(init_timeout=cfg.wandb.init_timeout, silent=True), **kwargs)
    except Exception as exc:  # no network, bad key, server down: tracking must not cost the run
        if cfg.wandb.mode != "online":
            warnings.warn(f"W&B could not start ({type(exc).__name__}); training continues untracked")
            return None
        warnings.warn(f"W&B online failed ({type(exc).__name__}: {redact(str(exc))[:200]}); logging offline "
                      f"instead, upload later with `wandb sync {run_dir}/wandb`")
        try:
            # the failed online attempt leaves wandb's service unusable: reset it, and start our own
            # instead of reconnecting to one inherited from a parent process (WANDB_SERVICE)
            wandb.teardown()
            os.environ.pop("WANDB_SERVICE", None)
            return wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)
        except Exception as exc2:
            warnings.warn(f"W&B offline also failed ({type(exc2).__name__}); training continues untracked")
            return None
