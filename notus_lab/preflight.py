"""Preflight: every check a command passes before any data or model loads, each failure ONE line
that names the key, the value and what is allowed (exit code 2).

`validate()` holds the semantic checks the dataclasses in config.py cannot express; `preflight()`
composes the command line with Hydra first, so a typo in a key or option is one line too.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from notus_lab.config import (ASPECTS, CONF_DIR, LOSS_TYPES, OPTIMIZERS, SCHEDULERS, STRATEGIES, ConfigError,
                              NotusConfig, group_options, looks_like_local_path)
from notus_lab.published_sets import default_split


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: allowed {allowed}")


def _one_of(key: str, value: Any, options) -> None:
    _require(value in options, key, value, "one of " + ", ".join(map(str, options)))


def _positive(key: str, value: float) -> None:
    _require(value is not None and math.isfinite(value) and value > 0, key, value, "a number > 0")


def _no_missing(cfg, prefix: str = "") -> None:
    if isinstance(cfg, DictConfig):
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            key = prefix + missing[0]
            raise ConfigError(f"{key}=??? is invalid: allowed a value (it is required; set {key}=...)")


def _on_a_cuda_machine() -> bool:
    """Package checks for the GPU path only mean something where it will run: not on a login node that
    submits the job to the cluster."""
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def validate_data(d) -> None:
    """The data keys alone (all that `python -m notus_lab.binarize` needs)."""
    _no_missing(d, prefix="data.")
    _one_of("data.strategy", d.strategy, STRATEGIES)
    _one_of("data.rejected", d.rejected, ("random", "lowest"))
    _one_of("data.tie_policy", d.tie_policy, ("drop", "keep"))
    _one_of("data.vintage", d.vintage, ("as_is", "fixed"))
    _one_of("data.curate_action", d.curate_action, ("drop", "rescore"))
    _require(d.min_margin >= 0 and math.isfinite(d.min_margin), "data.min_margin", d.min_margin, "a number >= 0")
    if d.strategy == "aspect":
        _one_of("data.aspect", d.aspect, ASPECTS)
    _require(0 < d.test_size and math.isfinite(d.test_size) and (d.test_size < 1 or d.test_size == int(d.test_size)),
             "data.test_size", d.test_size, "a fraction in (0, 1) or a whole number of prompts >= 1")
    _require(d.max_rows is None or d.max_rows > 0, "data.max_rows", d.max_rows, "null or an integer > 0")
    if d.decontaminate is not None:
        _one_of("data.decontaminate", d.decontaminate, ("truthful_qa",))
    if d.decontaminate_questions is not None:
        _require(os.path.isfile(os.path.expanduser(d.decontaminate_questions)), "data.decontaminate_questions",
                 d.decontaminate_questions, "an existing file of questions")
    if d.strategy == "prebinarized":
        _require(d.source != "world", "data.source", d.source,
                 "a file, datasets dir or hub id of prompt/chosen/rejected pairs with data=prebinarized")
    if d.source == "world":
        w = d.world
        _require(w.rows >= 10, "data.world.rows", w.rows, "an integer >= 10")
        _require(0 <= w.critique_bug_rate <= 1, "data.world.critique_bug_rate", w.critique_bug_rate, "a number in [0, 1]")
        _require(0 <= w.na_rate <= 1, "data.world.na_rate", w.na_rate, "a number in [0, 1]")
        _require(0 < w.aspect_agreement < 1, "data.world.aspect_agreement", w.aspect_agreement, "a number in (0, 1)")
        _require(0 <= w.annotator_correlation < w.aspect_agreement, "data.world.annotator_correlation",
                 w.annotator_correlation, f"a number in [0, data.world.aspect_agreement={w.aspect_agreement}) "
                 "(shared error alone cannot exceed the agreement it explains)")
        _require(0 <= w.critique_shared_error <= 1, "data.world.critique_shared_error", w.critique_shared_error,
                 "a number in [0, 1]")
        for key in ("difficulty_spread", "critique_noise", "rating_leniency"):
            _require(getattr(w, key) >= 0, f"data.world.{key}", getattr(w, key), "a number >= 0")
        _require(w.critique_curve > 0, "data.world.critique_curve", w.critique_curve, "a number > 0")
        _require(w.critique_step in (0.5, 1.0), "data.world.critique_step", w.critique_step, "0.5 or 1.0")
    elif looks_like_local_path(d.source):
        path = os.path.expanduser(d.source)
        _require(os.path.exists(path), "data.source", d.source,
                 "world, an existing jsonl/json/parquet file or datasets directory, or a hub id (org/name)")
        splits = os.path.join(path, "dataset_dict.json")  # a saved DatasetDict names its splits here
        if os.path.isfile(splits):
            available = json.loads(open(splits).read()).get("splits", [])
            split = d.split or default_split(d.source, available)
            _require(split in available, "data.split", split, f"one of {', '.join(available)}")
    else:
        _require(re.fullmatch(r"[\w.-]+/[\w.-]+", d.source) is not None, "data.source", d.source,
                 "world, an existing jsonl/json/parquet file or datasets directory, or a hub id (org/name)")


def validate(cfg: DictConfig | NotusConfig) -> None:
    """Raise ConfigError (one line) for any setting that cannot work."""
    _no_missing(cfg)
    validate_data(cfg.data)
    m, hw, tr, opt = cfg.model, cfg.hardware, cfg.train, cfg.optimizer

    _positive("beta", cfg.beta)
    _one_of("loss_type", cfg.loss_type, LOSS_TYPES)
    _require(cfg.rpo_alpha >= 0 and math.isfinite(cfg.rpo_alpha), "rpo_alpha", cfg.rpo_alpha, "a number >= 0")

    _one_of("model.adapter", m.adapter, ("full", "lora"))
    _one_of("model.quantization", m.quantization, ("none", "4bit", "8bit"))
    if m.adapter == "lora":
        _require(m.lora_r > 0, "model.lora_r", m.lora_r, "an integer > 0")
        _require(m.lora_alpha > 0, "model.lora_alpha", m.lora_alpha, "an integer > 0")
        _require(0 <= m.lora_dropout < 1, "model.lora_dropout", m.lora_dropout, "a number in [0, 1)")
        _require(len(m.lora_target_modules) > 0, "model.lora_target_modules", list(m.lora_target_modules),
                 "a non-empty list of module names")
    if m.quantization != "none":
        _require(m.adapter == "lora", "model.quantization", m.quantization,
                 "none with model.adapter=full (quantized weights cannot be fully fine-tuned; use model=qlora)")
        _one_of("model.bnb_4bit_quant_type", m.bnb_4bit_quant_type, ("nf4", "fp4"))
        try:
            import bitsandbytes  # noqa: F401
        except Exception as exc:  # ImportError, or a broken native library
            raise ConfigError(f"model.quantization={m.quantization!r} is invalid: bitsandbytes is not usable here "
                              f"({type(exc).__name__}); allowed none") from None

    _one_of("optimizer.name", opt.name, OPTIMIZERS)
    _positive("optimizer.lr", opt.lr)
    _one_of("optimizer.scheduler", opt.scheduler, SCHEDULERS)
    _require(0 <= opt.warmup_ratio < 1, "optimizer.warmup_ratio", opt.warmup_ratio, "a number in [0, 1)")
    _require(opt.weight_decay >= 0, "optimizer.weight_decay", opt.weight_decay, "a number >= 0")

    _one_of("hardware.device", hw.device, ("cpu", "cuda"))
    _one_of("hardware.precision", hw.precision, ("fp32", "bf16", "fp16"))
    _one_of("hardware.attn_implementation", hw.attn_implementation, ("auto", "eager", "sdpa", "flash_attention_2"))
    _one_of("hardware.distributed", hw.distributed, ("none", "ddp", "deepspeed", "fsdp"))
    _require(hw.per_device_batch_size > 0, "hardware.per_device_batch_size", hw.per_device_batch_size, "an integer > 0")
    _require(hw.eval_batch_size > 0, "hardware.eval_batch_size", hw.eval_batch_size, "an integer > 0")
    _require(hw.num_processes > 0, "hardware.num_processes", hw.num_processes, "an integer > 0")
    _require(hw.num_nodes > 0, "hardware.num_nodes", hw.num_nodes, "an integer > 0")
    _require(hw.threads is None or hw.threads > 0, "hardware.threads", hw.threads, "null or an integer > 0")
    if hw.device == "cpu":  # bf16 runs on CPU too (autocast): the rehearsal of a GPU profile's precision
        _require(hw.precision != "fp16", "hardware.precision", hw.precision, "fp32 or bf16 on hardware.device=cpu")
        _require(hw.attn_implementation != "flash_attention_2", "hardware.attn_implementation",
                 hw.attn_implementation, "eager or sdpa on hardware.device=cpu")
        # accelerate shards with FSDP on accelerators only: on CPU ranks it silently trains DDP instead
        _require(hw.distributed != "fsdp", "hardware.distributed", hw.distributed,
                 "none, ddp or deepspeed on hardware.device=cpu (accelerate runs FSDP on GPUs only)")
    if hw.attn_implementation == "flash_attention_2" and _on_a_cuda_machine():
        import importlib.util

        _require(importlib.util.find_spec("flash_attn") is not None, "hardware.attn_implementation", hw.attn_implementation,
                 "auto, sdpa or eager: flash_attn is not installed here (pip install flash-attn --no-build-isolation)")
    if hw.distributed == "deepspeed":
        _require(isinstance(hw.deepspeed, DictConfig) and "zero_optimization" in hw.deepspeed, "hardware.deepspeed",
                 hw.deepspeed, "a DeepSpeed config with zero_optimization (see conf/hardware/a100_40gb_x8.yaml)")
        try:
            import deepspeed  # noqa: F401
        except Exception as exc:
            raise ConfigError(f"hardware.distributed='deepspeed' is invalid: deepspeed is not usable here "
                              f"({type(exc).__name__}; pip install -e '.[deepspeed]'); "
                              f"allowed none, ddp or fsdp") from None
    if hw.distributed == "fsdp":
        _require(isinstance(hw.fsdp, DictConfig) and "fsdp" in hw.fsdp, "hardware.fsdp", hw.fsdp,
                 "the Trainer's fsdp and fsdp_config as data (see conf/hardware/fsdp_x8.yaml)")
    world_size = hw.num_processes * hw.num_nodes
    _require(world_size == 1 or hw.distributed != "none", "hardware.distributed", hw.distributed,
             f"ddp, deepspeed or fsdp when {world_size} processes run")

    _require(tr.global_batch_size > 0, "train.global_batch_size", tr.global_batch_size, "an integer > 0")
    per_step = hw.per_device_batch_size * world_size
    _require(tr.global_batch_size % per_step == 0, "train.global_batch_size", tr.global_batch_size,
             f"a multiple of hardware.per_device_batch_size x processes = {hw.per_device_batch_size} x "
             f"{world_size} = {per_step}")
    _require(tr.max_length > 0, "train.max_length", tr.max_length, "an integer > 0")
    _require(0 < tr.max_prompt_length < tr.max_length, "train.max_prompt_length", tr.max_prompt_length,
             f"an integer in [1, train.max_length={tr.max_length})")
    _require(tr.epochs > 0 or tr.max_steps > 0, "train.epochs", tr.epochs, "a number > 0 (or train.max_steps > 0)")
    _require(tr.max_steps == -1 or tr.max_steps > 0, "train.max_steps", tr.max_steps, "-1 or an integer > 0")
    _require(tr.logging_steps > 0, "train.logging_steps", tr.logging_steps, "an integer > 0")
    _require(tr.save_steps > 0, "train.save_steps", tr.save_steps, "an integer > 0")
    _require(tr.eval_steps is None or tr.eval_steps > 0, "train.eval_steps", tr.eval_steps, "null or an integer > 0")

    for s in cfg.eval.signals:
        _one_of("eval.signals", s, [o for o in group_options("data") if o != "prebinarized"])
    _require(re.fullmatch(r"[\w.-]+", cfg.sweep_name) is not None, "sweep_name", cfg.sweep_name,
             "letters, digits, '_', '-' and '.' (it names a directory and a W&B group)")

    g, j = cfg.generation, cfg.judge
    for key in ("samples_per_prompt", "max_new_tokens", "batch_size"):
        _require(getattr(g, key) > 0, f"generation.{key}", getattr(g, key), "an integer > 0")
    _require(g.max_prompts is None or g.max_prompts > 0, "generation.max_prompts", g.max_prompts, "null or an integer > 0")
    _positive("generation.temperature", g.temperature)
    _require(0 < g.top_p <= 1, "generation.top_p", g.top_p, "a number in (0, 1]")
    _one_of("judge.name", j.name, ("truth", "reward_model", "none"))
    _require(j.batch_size > 0, "judge.batch_size", j.batch_size, "an integer > 0")
    if j.name == "truth":
        _require(cfg.data.source == "world", "judge.name", j.name,
                 f"reward_model or none with data.source={cfg.data.source!r} (the truth is known in the bundled world only)")
    if j.name == "reward_model":
        _require(j.model is not None, "judge.model", j.model,
                 "`tiny` (a reward model built here), a local reward-model dir, or a hub id (org/name)")
        if j.model != "tiny" and looks_like_local_path(j.model):
            _require(os.path.isfile(os.path.join(os.path.expanduser(j.model), "config.json")), "judge.model", j.model,
                     "an existing reward-model dir (with config.json), `tiny`, or a hub id (org/name)")

    _one_of("wandb.mode", cfg.wandb.mode, ("offline", "online", "disabled"))
    from notus_lab import memory

    memory.check(cfg)  # last: a run that cannot fit its GPUs, with what would
    if cfg.export.merge:
        _require(m.adapter == "lora", "export.merge", True, "false with model.adapter=full (nothing to merge)")


# ---------------------------------------------------------------------------------------------
# Preflight: compose the command's overrides once, and turn Hydra's multi-line errors into one line.


def _one_line(exc: BaseException, overrides: list[str]) -> str:
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = exc  # Hydra wraps the OmegaConf error that knows the key
    while (cause.__cause__ or cause.__context__) is not None and not getattr(cause, "full_key", None):
        cause = cause.__cause__ or cause.__context__
    given = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    required = re.search(r"You must specify '([\w/]+)'", str(exc))
    if required:  # a group an experiment leaves to the user (`override /hardware: ???`)
        group = required.group(1)
        return f"{group}=??? is invalid: allowed one of {', '.join(group_options(group))} (this command needs a choice)"
    found = re.search(r"Could not (?:find|load) '([\w/]+)/([^']+)'", str(exc))
    if found:
        group, option = found.groups()
        return f"{group}={option!r} is invalid: allowed one of {', '.join(group_options(group))}"
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
        key = cause.full_key
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.select(OmegaConf.structured(NotusConfig), parent) if parent else OmegaConf.structured(NotusConfig)
        keys = ", ".join(node.keys()) if isinstance(node, DictConfig) else "none"
        return f"{key}={given.get(key, '?')!r} is invalid: unknown key; allowed keys{' of ' + parent if parent else ''}: {keys}"
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
        key = cause.full_key
        reason = str(cause).splitlines()[0]
        return f"{key}={given.get(key, '?')!r} is invalid: {reason}"
    return f"{str(exc).strip().splitlines()[0]}"


def sweep_variants(overrides: list[str], sweeper_params: dict | None = None) -> list[list[str]]:
    """The override lists to check for a command: each swept value once, the other sweeps held at their
    first value (every value is tried without composing the cartesian product). Sweeps are read by
    Hydra's own parser, so `range(...)`, `choice(...)`, `glob(...)`, `key=a,b` and quoted values holding
    commas mean what they mean to Hydra; `sweeper_params` (an experiment's hydra.sweeper.params) sweep
    the keys the command line leaves alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    parser = OverridesParser.create()
    given = [(text, parser.parse_override(text)) for text in overrides]
    named = {o.get_key_element().lstrip("+~") for _, o in given}
    given += [(f"{k}={v}", parser.parse_override(f"{k}={v}")) for k, v in (sweeper_params or {}).items()
              if k not in named]
    fixed, swept = [], []
    for text, o in given:
        if not o.is_sweep_override():
            fixed.append(text)
            continue
        value = o.value()
        values = value.filter(group_options(o.key_or_group)) if isinstance(value, Glob) else list(o.sweep_string_iterator())
        swept.append([f"{o.get_key_element()}={v}" for v in values])
    if not swept:
        return [fixed]
    firsts = [vs[0] for vs in swept]
    return [fixed + firsts[:i] + [v] + firsts[i + 1:] for i, vs in enumerate(swept) for v in vs]


def preflight(argv: list[str], config_name: str = "config", check=None) -> None:
    """Raise ConfigError (one line) if the command cannot run. `check(cfg)` defaults to `validate`.
    A sweep is checked value by value (`sweep_variants`), its experiment's own sweep included."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    if any(a in ("-h", "--help", "--hydra-help", "-c", "--cfg") or a.startswith("--info") for a in argv):
        return
    check = check or validate
    overrides = [a for a in argv if not a.startswith("-") and not a.startswith(("hydra.", "hydra/", "+hydra"))]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            params = None
            if "-m" in argv or "--multirun" in argv:
                first = sweep_variants(overrides)[0]
                node = compose(config_name, overrides=first, return_hydra_config=True).hydra.sweeper.get("params")
                params = OmegaConf.to_container(node) if isinstance(node, DictConfig) else {}
            for v in sweep_variants(overrides, params):
                check(compose(config_name, overrides=v))
    except ConfigError:
        raise
    except Exception as exc:  # Hydra/OmegaConf parse and composition errors
        raise ConfigError(_one_line(exc, overrides)) from None


def fail(exc: ConfigError) -> NoReturn:
    """How every entrypoint reports bad input: one line on stderr, exit code 2."""
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)


def launch(hydra_main, config_name: str = "config", check=None) -> None:
    """Preflight the command line (one-line errors, nothing loaded), then hand it to Hydra."""
    try:
        preflight(sys.argv[1:], config_name, check)
    except ConfigError as exc:
        fail(exc)
    hydra_main()
