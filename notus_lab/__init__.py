"""notus_lab: preference tuning of language models with DPO, one Hydra entrypoint over TRL."""

__version__ = "0.1.0"
