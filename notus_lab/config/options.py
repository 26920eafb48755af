"""Where the YAML groups live and what each offers: conf/ beside the package in a checkout, inside it
when installed."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from notus_lab.config.schema import HardwareConfig

PACKAGE = Path(__file__).resolve().parents[1]
# an installed package carries conf/ inside it (pyproject: package-dir); a checkout has it beside the package
CONF_DIR = PACKAGE / "conf" if (PACKAGE / "conf" / "config.yaml").is_file() else PACKAGE.parent / "conf"


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def load_option(group: str, option: str):
    """A group option's YAML as Hydra would compose it alone: its `defaults` (options of the same group)
    first, then its own keys."""
    node = OmegaConf.load(CONF_DIR / group / f"{option}.yaml")
    parents = [d for d in node.pop("defaults", []) if isinstance(d, str) and d != "_self_"]
    return OmegaConf.merge(*[load_option(group, p) for p in parents], node)


def eval_data_configs(cfg) -> dict:
    """{name: DataConfig} labelling the held-out prompts: each `eval.signals` data option's rule on the
    run's own source and split, ties dropped and rejected random (a tie is no preference to score)."""
    out = {}
    for name in cfg.eval.signals:
        option = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
        merged = OmegaConf.merge(cfg.data, option, {"tie_policy": "drop", "min_margin": 0.0, "rejected": "random"})
        out[name] = OmegaConf.to_object(merged)
    return out


def hardware_profile(option: str):
    """A conf/hardware option on its own, with the schema's defaults for what it leaves out."""

    return OmegaConf.merge(OmegaConf.structured(HardwareConfig), load_option("hardware", option))
