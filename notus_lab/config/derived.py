"""Values derived from the config, computed in one place."""

from __future__ import annotations

import os
from pathlib import Path


def world_size(hw) -> int:
    return hw.num_processes * hw.num_nodes


def gradient_accumulation_steps(cfg) -> int:
    """Derived so that the global batch (a science knob) is the same on every hardware profile."""
    hw = cfg.hardware
    return cfg.train.global_batch_size // (hw.per_device_batch_size * world_size(hw))


def looks_like_local_path(source: str) -> bool:
    return (
        source.startswith((".", "/", "~"))
        or Path(source).suffix in (".jsonl", ".json", ".parquet")
        or os.path.exists(os.path.expanduser(source))
    )
