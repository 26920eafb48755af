"""Where the YAML groups live and what each offers: conf/ beside the package in a checkout, inside it
when installed."""

from __future__ import annotations

from omegaconf import OmegaConf

from notus_lab.config.paths import CONF_DIR, PACKAGE  # noqa: F401  (PACKAGE: where the sources are)
from notus_lab.config.schema import HardwareConfig


def _register_help_resolver() -> None:
    """`${notus_options:GROUP}` in conf/hydra/help/notus.yaml: a group's options, as `group_options` lists them."""
    if not OmegaConf.has_resolver("notus_options"):
        OmegaConf.register_new_resolver("notus_options", lambda group: ", ".join(group_options(group)))


def group_options(group: str) -> list[str]:
    """The options of a group; `_defaults` is the group's defaults (notus_lab/config/homes.py), not an option."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


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


def base_option(option: str = "tiny"):
    """A base option's `base` node as a run would compose it (its defaults included)."""
    from notus_lab.config.schema import BaseConfig

    return OmegaConf.merge(OmegaConf.structured(BaseConfig), load_option("base", option).base)


def hardware_profile(option: str):
    """A conf/hardware option on its own, with the schema's defaults for what it leaves out."""

    return OmegaConf.merge(OmegaConf.structured(HardwareConfig), load_option("hardware", option))


def refuse_defaults_option(argv: list[str]) -> None:
    """`group=_defaults` (also `+group=`, in a sweep's list, with --cfg or --help) is one line: the file is where the
    group's options start from (notus_lab/config/homes.py), never an option itself. Hydra would compose it."""
    from notus_lab.core.errors import invalid

    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        group, value = arg.lstrip("+~").split("=", 1)
        if (CONF_DIR / group).is_dir() and "_defaults" in [v.strip() for v in value.split(",")]:
            raise invalid(
                group,
                "_defaults",
                f"one of {', '.join(group_options(group))}",
                why=f"conf/{group}/_defaults.yaml holds the defaults the options start from, not an option",
            )


_register_help_resolver()
