"""Secrets (W&B and HF tokens) never reach an artefact: every writer passes what it writes through `redact`."""

from __future__ import annotations

import os
import re

SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN")


HF_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{20,}")


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
