"""Compose a command line with Hydra before anything loads, each swept value once, and turn Hydra's
multi-line errors into the one-line format."""

from __future__ import annotations

import re
import sys

from omegaconf import DictConfig, OmegaConf

from notus_lab.config.options import CONF_DIR, group_options, refuse_defaults_option
from notus_lab.config.schema import NotusConfig
from notus_lab.config.validate import validate
from notus_lab.core.errors import ConfigError, exit_on, message
from notus_lab.core.overrides import factors


def _one_line(exc: BaseException, overrides: list[str]) -> str:
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = exc  # Hydra wraps the OmegaConf error that knows the key
    while (cause.__cause__ or cause.__context__) is not None and not getattr(cause, "full_key", None):
        cause = cause.__cause__ or cause.__context__
    given = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    required = re.search(r"You must specify '([\w/]+)'", str(exc))
    if required:  # a group an experiment leaves to the user (`override /hardware: ???`)
        group = required.group(1)
        return message(
            group, None, f"one of {', '.join(group_options(group))} (this command needs a choice)", shown="???"
        )
    found = re.search(r"Could not (?:find|load) '([\w/]+)/([^']+)'", str(exc))
    if found:
        group, option = found.groups()
        return message(group, option, f"one of {', '.join(group_options(group))}")
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
        key = cause.full_key
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = (
            OmegaConf.select(OmegaConf.structured(NotusConfig), parent) if parent else OmegaConf.structured(NotusConfig)
        )
        keys = ", ".join(node.keys()) if isinstance(node, DictConfig) else "none"
        return message(
            key, given.get(key, "?"), why="unknown key", allowed=f"keys{' of ' + parent if parent else ''}: {keys}"
        )
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
        key = cause.full_key
        reason = str(cause).splitlines()[0]
        return message(key, given.get(key, "?"), why=reason)
    return f"{str(exc).strip().splitlines()[0]}"


def sweep_variants(overrides: list[str], sweeper_params: dict | None = None) -> list[list[str]]:
    """The override lists to check for a command: each swept value once, the other sweeps held at their
    first value (every value is tried without composing the cartesian product). The design is the one every
    sweeper runs (core/overrides.py: factors): `sweeper_params` (an experiment's hydra.sweeper.params) with the
    command line on top, key by key, read by Hydra's own parser (`range(...)`, `choice(...)`, `glob(...)`)."""
    design = factors(overrides, sweeper_params, group_options)
    fixed = [f.overrides()[0] for f in design if len(f.values) == 1]
    swept = [f.overrides() for f in design if len(f.values) != 1]
    if not swept:
        return [fixed]
    firsts = [vs[0] for vs in swept]
    return [fixed + firsts[:i] + [v] + firsts[i + 1 :] for i, vs in enumerate(swept) for v in vs]


def preflight(argv: list[str], config_name: str = "config", check=None) -> None:
    """Raise ConfigError (one line) if the command cannot run. `check(cfg)` defaults to `validate`.
    A sweep is checked value by value (`sweep_variants`), its experiment's own sweep included."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    refuse_defaults_option(argv)  # before --cfg/--help too: `hardware=_defaults` is never an option
    if any(a in ("-h", "--help", "--hydra-help", "-c", "--cfg") or a.startswith("--info") for a in argv):
        return
    check = check or validate
    overrides = [a for a in argv if not a.startswith("-") and not a.startswith(("hydra.", "hydra/", "+hydra"))]
    hydra_overrides = [a for a in argv if a.startswith(("hydra.", "hydra/", "+hydra"))]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            params = None
            if "-m" in argv or "--multirun" in argv:
                first = sweep_variants(overrides)[0]
                full = compose(config_name, overrides=first + hydra_overrides, return_hydra_config=True)
                hydra_cfg = full.hydra
                node = hydra_cfg.sweeper.get("params")
                params = OmegaConf.to_container(node) if isinstance(node, DictConfig) else {}
                check_sweep(hydra_cfg, full, factors(overrides, params, group_options))
            for v in sweep_variants(overrides, params):
                check(compose(config_name, overrides=v))
    except ConfigError:
        raise
    except Exception as exc:  # Hydra/OmegaConf parse and composition errors
        raise ConfigError(_one_line(exc, overrides)) from None


def check_sweep(hydra_cfg, cfg=None, design=None) -> None:
    """A sweep's own settings, before any arm starts: the sequential sweeper's, a SLURM request that holds what
    the run starts, and a SLURM launcher on a machine that has SLURM (submitit's "Could not detect srun" otherwise
    comes after the whole sweep was composed)."""
    import shutil

    from notus_lab.config.study import Settings, check_design

    sweeper = hydra_cfg.sweeper
    size = sweeper.get("max_batch_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(message("hydra.sweeper.max_batch_size", size, "an integer >= 1, or null (one batch)"))
    if str(sweeper.get("_target_", "")).endswith("SequentialSweeper"):
        fields = {k: sweeper.get(k) for k in Settings.__dataclass_fields__}
        settings = Settings(**fields).check()
        if design is not None:
            check_design(settings, design)
    slurm = "Slurm" in str(hydra_cfg.launcher.get("_target_", ""))
    if slurm and cfg is not None:
        from notus_lab.config.validate import check_request

        check_request(hydra_cfg.launcher, cfg)
    if slurm and not shutil.which("sbatch"):
        raise ConfigError(
            message(
                "hydra/launcher",
                hydra_cfg.runtime.choices.get("hydra/launcher", "slurm"),
                "hydra/launcher=parallel (./sweep.sh NAME --local), or a local cluster: scripts/slurm_local.sh start",
                why="no SLURM found on this machine (no sbatch on PATH)",
            )
        )


def run_checked(hydra_main, config_name: str = "config", check=None) -> None:
    """Preflight the command line (one-line errors, nothing loaded), then hand it to Hydra."""
    try:
        preflight(sys.argv[1:], config_name, check)
    except ConfigError as exc:
        exit_on(exc)
    hydra_main()
