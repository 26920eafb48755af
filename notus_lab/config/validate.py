"""Validation: every check a command passes before any data or model loads, one function per group, each
failure ONE line that names the key, the value and what is allowed (exit code 2).

What each field allows is declared once, beside the field in schema.py (`knob(..., allowed)`): `_declared` checks
a section's fields against those declarations, and this file adds only what one field cannot say (combinations,
files, packages). compose.preflight runs them on every composed command line first.
"""

from __future__ import annotations

import json
import math
import os
import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from omegaconf import DictConfig, OmegaConf

from notus_lab.config import memory
from notus_lab.config.derived import looks_like_local_path, world_size
from notus_lab.config.published_sets import default_split
from notus_lab.config.schema import (
    DataConfig,
    ExportConfig,
    GenerationConfig,
    HardwareConfig,
    JudgeConfig,
    ModelConfig,
    NotusConfig,
    OptimizerConfig,
    TrainConfig,
    WandbConfig,
    WorldConfig,
)
from notus_lab.config.strategies import binarizing_options, strategy
from notus_lab.core.errors import ConfigError, invalid


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise invalid(key, value, allowed)


def _one_of(key: str, value: Any, options) -> None:
    _require(value in options, key, value, "one of " + ", ".join(map(str, options)))


def allowed(cls, name: str):
    """What schema.py declares a field of `cls` allows (None: its type says it all)."""
    return cls.__dataclass_fields__[name].metadata.get("allowed")


def _declared(node, cls, prefix: str, *names: str) -> None:
    """Each named field of a section against what schema.py declares it allows, in this order."""
    for name in names:
        rule, value = allowed(cls, name), getattr(node, name)
        _require(rule(value), f"{prefix}{name}", value, rule.text)


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
    _declared(d, DataConfig, "data.", "strategy", "rejected", "tie_policy", "vintage", "curate_action", "min_margin")
    if strategy(d.strategy).signal == "aspect":
        _declared(d, DataConfig, "data.", "aspect")
    _declared(d, DataConfig, "data.", "test_size", "max_rows")
    if d.decontaminate is not None:
        _declared(d, DataConfig, "data.", "decontaminate")
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
    _declared(w, WorldConfig, "data.world.", "rows", "critique_bug_rate", "na_rate", "aspect_agreement")
    _require(  # a bound that depends on another knob: a combination, not a declaration
        0 <= w.annotator_correlation < w.aspect_agreement,
        "data.world.annotator_correlation",
        w.annotator_correlation,
        f"a number in [0, data.world.aspect_agreement={w.aspect_agreement}) "
        "(shared error alone cannot exceed the agreement it explains)",
    )
    _declared(
        w,
        WorldConfig,
        "data.world.",
        "critique_shared_error",
        "difficulty_spread",
        "critique_noise",
        "rating_leniency",
        "critique_curve",
        "critique_step",
    )


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
    _declared(cfg.wandb, WandbConfig, "wandb.", "mode")
    memory.check(cfg)  # last: a run that cannot fit its GPUs, with what would
    if cfg.export.merge:
        _require(cfg.model.adapter == "lora", "export.merge", True, "false with model.adapter=full (nothing to merge)")
    _declared(cfg.export, ExportConfig, "export.", "gguf")
    if cfg.export.gguf:
        require_llama_cpp()


def validate_objective(cfg) -> None:
    """The DPO loss and its knobs."""
    _declared(cfg, NotusConfig, "", "beta", "loss_type", "rpo_alpha")


def validate_model(m) -> None:
    _declared(m, ModelConfig, "model.", "adapter", "quantization")
    if m.adapter == "lora":
        _declared(m, ModelConfig, "model.", "lora_r", "lora_alpha", "lora_dropout")
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
        _declared(m, ModelConfig, "model.", "bnb_4bit_quant_type")
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
    _declared(o, OptimizerConfig, "optimizer.", "name", "lr", "scheduler", "warmup_ratio", "weight_decay")


def validate_hardware(hw) -> None:
    _declared(
        hw,
        HardwareConfig,
        "hardware.",
        "device",
        "precision",
        "attn_implementation",
        "distributed",
        "per_device_batch_size",
        "eval_batch_size",
        "num_processes",
        "num_nodes",
        "threads",
    )
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
    _declared(tr, TrainConfig, "train.", "global_batch_size")
    per_step = hw.per_device_batch_size * world_size(hw)
    _require(
        tr.global_batch_size % per_step == 0,
        "train.global_batch_size",
        tr.global_batch_size,
        f"a multiple of hardware.per_device_batch_size x processes = {hw.per_device_batch_size} x "
        f"{world_size(hw)} = {per_step}",
    )
    _declared(tr, TrainConfig, "train.", "max_length")
    _require(
        0 < tr.max_prompt_length < tr.max_length,
        "train.max_prompt_length",
        tr.max_prompt_length,
        f"an integer in [1, train.max_length={tr.max_length})",
    )
    _require(tr.epochs > 0 or tr.max_steps > 0, "train.epochs", tr.epochs, "a number > 0 (or train.max_steps > 0)")
    _declared(tr, TrainConfig, "train.", "max_steps", "logging_steps", "save_steps", "eval_steps")


def validate_study(cfg) -> None:
    """The keys that name and label a study."""
    for s in cfg.eval.signals:
        _one_of("eval.signals", s, binarizing_options())
    _declared(cfg, NotusConfig, "", "sweep_name")


def validate_generation(g) -> None:
    _declared(g, GenerationConfig, "generation.", "samples_per_prompt", "max_new_tokens", "batch_size", "max_prompts")
    _declared(g, GenerationConfig, "generation.", "temperature", "top_p")


def validate_judge(j, d) -> None:
    _declared(j, JudgeConfig, "judge.", "name", "batch_size")
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


def require_llama_cpp() -> str:
    """llama-cpp-python's version, or a one-line ConfigError saying how to install it."""
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"export.gguf needs llama-cpp-python and gguf ({exc.name} is missing): pip install 'notus_lab[gguf]'"
        ) from None
    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return version("llama-cpp-python")
