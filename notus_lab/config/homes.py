"""Every default value has one home, a YAML file of conf/: conf/config.yaml for the sections no group owns (train,
generation, eval, wandb, study, the DPO knobs), and conf/<group>/_defaults.yaml for what a group's options start
from (data, model, optimizer, base, hardware, judge). The schema (notus_lab/config/schema.py) reads its defaults
from here, so it holds types, allowed values and help, never a value of its own; tests/unit/test_defaults.py keeps
it that way."""

from __future__ import annotations

import copy
from functools import lru_cache

from omegaconf import OmegaConf

from notus_lab.config.paths import CONF_DIR

GROUPS = ("data", "model", "optimizer", "base", "hardware", "judge")


@lru_cache(maxsize=1)
def homes() -> dict:
    """Every default, as {section: values}: config.yaml's own keys, and each group's _defaults.yaml."""
    out = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"), resolve=False)
    out.pop("defaults", None), out.pop("hydra", None)
    for group in GROUPS:
        out[group] = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / "_defaults.yaml"), resolve=False)
    return out


def home(key: str):
    """The default of a dotted config key, read from its home (a copy: lists are never shared)."""
    node = homes()
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{key} has no default in conf/ (conf/config.yaml or conf/<group>/_defaults.yaml)")
        node = node[part]
    return copy.deepcopy(node)
