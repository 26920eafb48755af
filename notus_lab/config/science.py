"""What a run learns, as opposed to where and how it executes: the keys that do not change the science
(one list: they neither move a run to a new dir nor change its fingerprint), and what changed between two runs."""

from __future__ import annotations

import re

from omegaconf import OmegaConf

from notus_lab.core.keys import content_key
from notus_lab.core.overrides import as_dict, key_of
from notus_lab.core.provenance import git_commit
from notus_lab.core.redaction import redact
from notus_lab.core.run_dir import RunDir

# settings that change where or how a run executes, never what it learns: a relaunch may change them, and
# an override of one leaves the run in its dir. "x." covers every key under x; a group choice (hardware=...)
# stays in the dir name, so a sweep over profiles gives each its own dir.
NOT_SCIENCE = (
    "wandb.",
    "hardware.",
    "study.",
    "sweep_name",
    "run_name",
    "train.resume",
    "train.reference_cache_dir",
    "train.precompute_reference",
    "train.logging_steps",
    "train.save_steps",
    "base.cache_dir",
    "generation.batch_size",
    "judge.batch_size",
    "export.gguf",
)


def is_science(key: str) -> bool:
    """Whether a dotted config key (or an override's key) can change what a run learns or measures."""
    key = key.lstrip("+~")
    return not any(key.startswith(p) if p.endswith(".") else key == p for p in NOT_SCIENCE)


def science(resolved: dict, prefix: str = "") -> dict:
    """The resolved config as {dotted key: value}, without the keys that do not change the science."""
    out = {}
    for k, v in resolved.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(science(v, key + "."))
        elif is_science(key):
            out[key] = v
    return out


def science_fingerprint(resolved: dict) -> str:

    return content_key(science(resolved))


def what_changed(rd: RunDir, resolved: dict, code: str) -> str | None:
    """Why the run already in `rd` is not this command's: the science keys whose values differ, or
    the code version. None when it is the same run (or when there is none yet)."""
    import json

    import yaml

    if not rd.config.exists():
        return None
    before, now = science(yaml.safe_load(rd.config.read_text()) or {}), science(redact(resolved))
    changed = [
        f"{k} {before.get(k)!r} -> {now.get(k)!r}"
        for k in sorted(before.keys() | now.keys())
        if before.get(k) != now.get(k)
    ]
    if changed:
        return f"config ({'; '.join(changed[:3])}{f'; +{len(changed) - 3} more' if len(changed) > 3 else ''})"
    old = json.loads(rd.provenance.read_text()) if rd.provenance.exists() else {}
    if old.get("code_version", code) != code:
        return (
            f"code ({old['code_version']} -> {code}; commits {old.get('git_commit', '?')[:12]} -> {git_commit()[:12]})"
        )
    return None


def science_overrides(overrides) -> str:
    """Hydra's override_dirname of the command's science overrides: sorted, comma-joined, as typed. A key given
    twice is refused (core/overrides.py: as_dict): sorted, `data=a data=b` and `data=b data=a` would name one dir
    for two configs."""
    overrides = list(overrides)
    as_dict(overrides)
    return ",".join(sorted(o for o in overrides if is_science(key_of(o))))


def run_dir_name(overrides) -> str:
    """A run's dir name from the command's overrides (conf/config.yaml: hydra.run.dir, hydra.sweep.subdir):
    same science, same directory; a non-science override never moves a run."""
    return _slug(science_overrides(overrides))


def _slug(override_dirname: str) -> str:
    """A file-system-safe name from an override_dirname."""
    if not override_dirname:
        return "default"
    name = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", override_dirname)
    if len(name) <= 200:
        return name
    # too long for a file name: keep a readable head, and a hash of the whole so arms never collide

    return f"{name[:180]}...{content_key(override_dirname, length=12)}"


if not OmegaConf.has_resolver("run_dir_name"):
    OmegaConf.register_new_resolver("run_dir_name", run_dir_name)
