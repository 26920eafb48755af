"""Validation: every check a command passes before any data or model loads, one function per group, each
failure ONE line that names the key, the value and what is allowed (exit code 2).

These are the checks the dataclasses in schema.py cannot express (ranges, combinations, files); the allowed
values sit beside the fields there. compose.preflight runs them on every composed command line first.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from notus_lab.config import memory
from notus_lab.config.derived import looks_like_local_path, world_size
from notus_lab.config.published_sets import default_split
from notus_lab.config.schema import (
    DataConfig,
    HardwareConfig,
    JudgeConfig,
    ModelConfig,
    NotusConfig,
    OptimizerConfig,
    WandbConfig,
)
from notus_lab.config.strategies import binarizing_options, strategy
from notus_lab.core.errors import invalid


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise invalid(key, value, allowed)


def _one_of(key: str, value: Any, options) -> None:
    _require(value in options, key, value, "one of " + ", ".join(map(str, options)))


def _positive(key: str, value: float) -> None:
    _require(value is not None and math.isfinite(value) and value > 0, key, value, "a number > 0")


def _no_missing(cfg, prefix: str = "") -> None:
    if isinstance(cfg, DictConfig):
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            key = prefix + missing[0]
            raise invalid(key, None, f"a value (it is required; set {key}=...)", shown="???")


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
    _one_of("data.strategy", d.strategy, DataConfig.STRATEGIES)
    _one_of("data.rejected", d.rejected, DataConfig.REJECTED)
    _one_of("data.tie_policy", d.tie_policy, DataConfig.TIE_POLICIES)
    _one_of("data.vintage", d.vintage, DataConfig.VINTAGES)
    _one_of("data.curate_action", d.curate_action, DataConfig.CURATE_ACTIONS)
    _require(d.min_margin >= 0 and math.isfinite(d.min_margin), "data.min_margin", d.min_margin, "a number >= 0")
    if d.strategy == "aspect":
        _one_of("data.aspect", d.aspect, DataConfig.ASPECTS)
    _require(
        0 < d.test_size and math.isfinite(d.test_size) and (d.test_size < 1 or d.test_size == int(d.test_size)),
        "data.test_size",
        d.test_size,
        "a fraction in (0, 1) or a whole number of prompts >= 1",
    )
    _require(d.max_rows is None or d.max_rows > 0, "data.max_rows", d.max_rows, "null or an integer > 0")
    if d.decontaminate is not None:
        _one_of("data.decontaminate", d.decontaminate, DataConfig.DECONTAMINATE)
    if d.decontaminate_questions is not None:
        _require(
            os.path.isfile(os.path.expanduser(d.decontaminate_questions)),
            "data.decontaminate_questions",
            d.decontaminate_questions,
            "an existing file of questions",
        )
    if strategy(d.strategy).prebinarized:
        _require(
            d.source != "world",
            "data.source",
            d.source,
            "a file, datasets dir or hub id of prompt/chosen/rejected pairs with data=prebinarized",
        )
        _require(
            d.rejected == "random",
            "data.rejected",
            d.rejected,
            "random (data=prebinarized reads pairs whose rejected answer the set already chose)",
        )
    if d.source == "world":
        validate_world(d.world)
    else:
        validate_source(d)


def validate_world(w) -> None:
    """The bundled world's knobs (data.source=world)."""
    _require(w.rows >= 10, "data.world.rows", w.rows, "an integer >= 10")
    _require(0 <= w.critique_bug_rate <= 1, "data.world.critique_bug_rate", w.critique_bug_rate, "a number in [0, 1]")
    _require(0 <= w.na_rate <= 1, "data.world.na_rate", w.na_rate, "a number in [0, 1]")
    _require(0 < w.aspect_agreement < 1, "data.world.aspect_agreement", w.aspect_agreement, "a number in (0, 1)")
    _require(
        0 <= w.annotator_correlation < w.aspect_agreement,
        "data.world.annotator_correlation",
        w.annotator_correlation,
        f"a number in [0, data.world.aspect_agreement={w.aspect_agreement}) "
        "(shared error alone cannot exceed the agreement it explains)",
    )
    _require(
        0 <= w.critique_shared_error <= 1,
        "data.world.critique_shared_error",
        w.critique_shared_error,
        "a number in [0, 1]",
    )
    for key in ("difficulty_spread", "critique_noise", "rating_leniency"):
        _require(getattr(w, key) >= 0, f"data.world.{key}", getattr(w, key), "a number >= 0")
    _require(w.critique_curve > 0, "data.world.critique_curve", w.critique_curve, "a number > 0")
    _require(w.critique_step in (0.5, 1.0), "data.world.critique_step", w.critique_step, "0.5 or 1.0")


def validate_source(d) -> None:
    """data.source as a file, datasets dir or hub id: it exists, and a saved DatasetDict has the split."""
    if not looks_like_local_path(d.source):
        _require(
            re.fullmatch(r"[\w.-]+/[\w.-]+", d.source) is not None,
            "data.source",
            d.source,
            "world, an existing jsonl/json/parquet file or datasets directory, or a hub id (org/name)",
        )
        return
    path = os.path.expanduser(d.source)
    _require(
        os.path.exists(path),
        "data.source",
        d.source,
        "world, an existing jsonl/json/parquet file or datasets directory, or a hub id (org/name)",
    )
    splits = os.path.join(path, "dataset_dict.json")  # a saved DatasetDict names its splits here
    if os.path.isfile(splits):
        available = json.loads(open(splits).read()).get("splits", [])
        split = d.split or default_split(d.source, available)
        _require(split in available, "data.split", split, f"one of {', '.join(available)}")


def validate(cfg: DictConfig | NotusConfig) -> None:
    """Raise ConfigError (one line) for any setting that cannot work: each group in turn, then whether the
    run fits its hardware (the memory preflight)."""
    _no_missing(cfg)
    validate_data(cfg.data)
    validate_objective(cfg)
    validate_model(cfg.model)
    validate_optimizer(cfg.optimizer)
    validate_hardware(cfg.hardware)
    validate_train(cfg.train, cfg.hardware)
    validate_study(cfg)
    validate_generation(cfg.generation)
    validate_judge(cfg.judge, cfg.data)
    _one_of("wandb.mode", cfg.wandb.mode, WandbConfig.MODES)
    memory.check(cfg)  # last: a run that cannot fit its GPUs, with what would
    if cfg.export.merge:
        _require(cfg.model.adapter == "lora", "export.merge", True, "false with model.adapter=full (nothing to merge)")


def validate_objective(cfg) -> None:
    """The DPO loss and its knobs."""
    _positive("beta", cfg.beta)
    _one_of("loss_type", cfg.loss_type, NotusConfig.LOSS_TYPES)
    _require(cfg.rpo_alpha >= 0 and math.isfinite(cfg.rpo_alpha), "rpo_alpha", cfg.rpo_alpha, "a number >= 0")


def validate_model(m) -> None:
    _one_of("model.adapter", m.adapter, ModelConfig.ADAPTERS)
    _one_of("model.quantization", m.quantization, ModelConfig.QUANTIZATIONS)
    if m.adapter == "lora":
        _require(m.lora_r > 0, "model.lora_r", m.lora_r, "an integer > 0")
        _require(m.lora_alpha > 0, "model.lora_alpha", m.lora_alpha, "an integer > 0")
        _require(0 <= m.lora_dropout < 1, "model.lora_dropout", m.lora_dropout, "a number in [0, 1)")
        _require(
            len(m.lora_target_modules) > 0,
            "model.lora_target_modules",
            list(m.lora_target_modules),
            "a non-empty list of module names",
        )
    if m.quantization != "none":
        _require(
            m.adapter == "lora",
            "model.quantization",
            m.quantization,
            "none with model.adapter=full (quantized weights cannot be fully fine-tuned; use model=qlora)",
        )
        _one_of("model.bnb_4bit_quant_type", m.bnb_4bit_quant_type, ModelConfig.QUANT_TYPES)
        try:
            import bitsandbytes  # noqa: F401
        except Exception as exc:  # ImportError, or a broken native library
            raise invalid(
                "model.quantization",
                m.quantization,
                "none",
                why=f"bitsandbytes is not usable here ({type(exc).__name__})",
            ) from None


def validate_optimizer(o) -> None:
    _one_of("optimizer.name", o.name, OptimizerConfig.NAMES)
    _positive("optimizer.lr", o.lr)
    _one_of("optimizer.scheduler", o.scheduler, OptimizerConfig.SCHEDULERS)
    _require(0 <= o.warmup_ratio < 1, "optimizer.warmup_ratio", o.warmup_ratio, "a number in [0, 1)")
    _require(o.weight_decay >= 0, "optimizer.weight_decay", o.weight_decay, "a number >= 0")


def validate_hardware(hw) -> None:
    _one_of("hardware.device", hw.device, HardwareConfig.DEVICES)
    _one_of("hardware.precision", hw.precision, HardwareConfig.PRECISIONS)
    _one_of("hardware.attn_implementation", hw.attn_implementation, HardwareConfig.ATTENTION)
    _one_of("hardware.distributed", hw.distributed, HardwareConfig.ENGINES)
    _require(hw.per_device_batch_size > 0, "hardware.per_device_batch_size", hw.per_device_batch_size, "an integer > 0")
    _require(hw.eval_batch_size > 0, "hardware.eval_batch_size", hw.eval_batch_size, "an integer > 0")
    _require(hw.num_processes > 0, "hardware.num_processes", hw.num_processes, "an integer > 0")
    _require(hw.num_nodes > 0, "hardware.num_nodes", hw.num_nodes, "an integer > 0")
    _require(hw.threads is None or hw.threads > 0, "hardware.threads", hw.threads, "null or an integer > 0")
    if hw.device == "cpu":  # bf16 runs on CPU too (autocast): the rehearsal of a GPU profile's precision
        _require(hw.precision != "fp16", "hardware.precision", hw.precision, "fp32 or bf16 on hardware.device=cpu")
        _require(
            hw.attn_implementation != "flash_attention_2",
            "hardware.attn_implementation",
            hw.attn_implementation,
            "eager or sdpa on hardware.device=cpu",
        )
        # accelerate shards with FSDP on accelerators only: on CPU ranks it silently trains DDP instead
        _require(
            hw.distributed != "fsdp",
            "hardware.distributed",
            hw.distributed,
            "none, ddp or deepspeed on hardware.device=cpu (accelerate runs FSDP on GPUs only)",
        )
    if hw.attn_implementation == "flash_attention_2" and _on_a_cuda_machine():
        import importlib.util

        _require(
            importlib.util.find_spec("flash_attn") is not None,
            "hardware.attn_implementation",
            hw.attn_implementation,
            "auto, sdpa or eager: flash_attn is not installed here (pip install flash-attn --no-build-isolation)",
        )
    if hw.distributed == "deepspeed":
        _require(
            isinstance(hw.deepspeed, DictConfig) and "zero_optimization" in hw.deepspeed,
            "hardware.deepspeed",
            hw.deepspeed,
            "a DeepSpeed config with zero_optimization (see conf/hardware/a100_40gb_x8.yaml)",
        )
        try:
            import deepspeed  # noqa: F401
        except Exception as exc:
            raise invalid(
                "hardware.distributed",
                "deepspeed",
                "none, ddp or fsdp",
                why=f"deepspeed is not usable here ({type(exc).__name__}; pip install -e '.[deepspeed]')",
            ) from None
    if hw.distributed == "fsdp":
        _require(
            isinstance(hw.fsdp, DictConfig) and "fsdp" in hw.fsdp,
            "hardware.fsdp",
            hw.fsdp,
            "the Trainer's fsdp and fsdp_config as data (see conf/hardware/fsdp_x8.yaml)",
        )
    processes = world_size(hw)
    _require(
        processes == 1 or hw.distributed != "none",
        "hardware.distributed",
        hw.distributed,
        f"ddp, deepspeed or fsdp when {processes} processes run",
    )


def validate_train(tr, hw) -> None:
    _require(tr.global_batch_size > 0, "train.global_batch_size", tr.global_batch_size, "an integer > 0")
    per_step = hw.per_device_batch_size * world_size(hw)
    _require(
        tr.global_batch_size % per_step == 0,
        "train.global_batch_size",
        tr.global_batch_size,
        f"a multiple of hardware.per_device_batch_size x processes = {hw.per_device_batch_size} x "
        f"{world_size(hw)} = {per_step}",
    )
    _require(tr.max_length > 0, "train.max_length", tr.max_length, "an integer > 0")
    _require(
        0 < tr.max_prompt_length < tr.max_length,
        "train.max_prompt_length",
        tr.max_prompt_length,
        f"an integer in [1, train.max_length={tr.max_length})",
    )
    _require(tr.epochs > 0 or tr.max_steps > 0, "train.epochs", tr.epochs, "a number > 0 (or train.max_steps > 0)")
    _require(tr.max_steps == -1 or tr.max_steps > 0, "train.max_steps", tr.max_steps, "-1 or an integer > 0")
    _require(tr.logging_steps > 0, "train.logging_steps", tr.logging_steps, "an integer > 0")
    _require(tr.save_steps > 0, "train.save_steps", tr.save_steps, "an integer > 0")
    _require(tr.eval_steps is None or tr.eval_steps > 0, "train.eval_steps", tr.eval_steps, "null or an integer > 0")


def validate_study(cfg) -> None:
    """The keys that name and label a study."""
    for s in cfg.eval.signals:
        _one_of("eval.signals", s, binarizing_options())
    _require(
        re.fullmatch(r"[\w.-]+", cfg.sweep_name) is not None,
        "sweep_name",
        cfg.sweep_name,
        "letters, digits, '_', '-' and '.' (it names a directory and a W&B group)",
    )


def validate_generation(g) -> None:
    for key in ("samples_per_prompt", "max_new_tokens", "batch_size"):
        _require(getattr(g, key) > 0, f"generation.{key}", getattr(g, key), "an integer > 0")
    _require(
        g.max_prompts is None or g.max_prompts > 0, "generation.max_prompts", g.max_prompts, "null or an integer > 0"
    )
    _positive("generation.temperature", g.temperature)
    _require(0 < g.top_p <= 1, "generation.top_p", g.top_p, "a number in (0, 1]")


def validate_judge(j, d) -> None:
    _one_of("judge.name", j.name, JudgeConfig.NAMES)
    _require(j.batch_size > 0, "judge.batch_size", j.batch_size, "an integer > 0")
    if j.name == "truth":
        _require(
            d.source == "world",
            "judge.name",
            j.name,
            f"reward_model or none with data.source={d.source!r} (the truth is known in the bundled world only)",
        )
    if j.name == "reward_model":
        _require(
            j.model is not None,
            "judge.model",
            j.model,
            "`tiny` (a reward model built here), a local reward-model dir, or a hub id (org/name)",
        )
        if j.model != "tiny" and looks_like_local_path(j.model):
            _require(
                os.path.isfile(os.path.join(os.path.expanduser(j.model), "config.json")),
                "judge.model",
                j.model,
                "an existing reward-model dir (with config.json), `tiny`, or a hub id (org/name)",
            )


def check_request(launcher, cfg) -> None:
    """A SLURM job (hydra/launcher=slurm*) asks for what the run will start on each node: a GPU per rank on a GPU
    profile (no more, no less), a core per rank at least, the nodes, and the host memory the preflight estimates."""
    hw = cfg.hardware
    ranks = hw.num_processes
    gpus = launcher.get("gpus_per_node") or 0
    if hw.device == "cuda" and gpus != ranks:
        raise invalid(
            "hydra.launcher.gpus_per_node",
            gpus,
            f"{ranks}",
            why=f"hardware={hw.name} starts {ranks} rank(s) per node (hardware.num_processes), one GPU each",
        )
    if hw.device != "cuda" and gpus:
        raise invalid("hydra.launcher.gpus_per_node", gpus, "0", why=f"hardware={hw.name} runs on {hw.device}")
    cpus = launcher.get("cpus_per_task") or 1
    if cpus < ranks:
        raise invalid(
            "hydra.launcher.cpus_per_task",
            cpus,
            f">= {ranks}",
            why=f"hardware={hw.name} starts {ranks} rank(s) per node, each needing a core",
        )
    if (launcher.get("nodes") or 1) != hw.num_nodes:
        raise invalid(
            "hydra.launcher.nodes",
            launcher.get("nodes"),
            f"{hw.num_nodes}",
            why=f"hardware.num_nodes={hw.num_nodes}: the run starts its ranks on that many nodes",
        )
    mem = launcher.get("mem_gb")
    if mem and hw.device == "cuda" and cfg.base.shape.num_parameters:
        need = memory.host_estimate(cfg)["total"]
        if mem < need:
            raise invalid(
                "hydra.launcher.mem_gb",
                mem,
                f">= {math.ceil(need)}",
                why=f"the memory preflight estimates ~{need:g} GB of host memory per node for hardware={hw.name}",
            )
