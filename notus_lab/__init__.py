"""notus_lab: preference tuning of language models with DPO, one Hydra entrypoint over TRL."""

from __future__ import annotations

__version__ = "0.1.0"
