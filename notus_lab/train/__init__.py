"""One DPO arm: the pipeline's named steps over TRL's DPOTrainer, the launcher, stop signals, runtime checks."""
