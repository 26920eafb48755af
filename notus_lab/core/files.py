"""Artefact files written atomically (a reader never sees half a file) and redacted."""

from __future__ import annotations

import json
import os
from pathlib import Path

from notus_lab.core.redaction import redact


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested metrics as W&B-style keys: {"eval": {"truth": {"loss": x}}} -> {"eval/truth/loss": x}."""
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


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
