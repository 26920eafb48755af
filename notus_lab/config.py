"""Structured configs: the schema every YAML file in conf/ is checked against.

Hydra merges conf/*.yaml into these dataclasses, so a wrong type or an unknown key fails at
composition time. `validate()` adds the semantic checks (ranges, combinations, files) that a type
cannot express, and runs before any data or model is loaded. Every failure is ONE line that names
the key, the value and what is allowed.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, NoReturn, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"

STRATEGIES = ("critique", "critique_curated", "mean_rating", "aspect", "multi_pair", "prebinarized")
ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm",
)
OPTIMIZERS = ("rmsprop", "adamw_torch", "adamw_torch_fused", "adamw_bnb_8bit", "paged_adamw_32bit",
              "paged_adamw_8bit", "sgd", "adafactor")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts",
              "polynomial", "inverse_sqrt")


class ConfigError(ValueError):
    """A bad setting, reported as one line before anything heavy happens."""


@dataclass
class WorldConfig:
    """The bundled synthetic UltraFeedback world (data.source=world)."""

    rows: int = 3000
    seed: int = 0
    critique_bug_rate: float = 1.0  # share of critique scores of 1 that the bug turns into 10
    critique_noise: float = 0.9  # std of the critic's view of true quality, on its 1-10 scale
    rating_noise: float = 0.8  # std of each aspect rating's view, on the 1-5 scale
    na_rate: float = 0.05  # share of honesty ratings that are "N/A"


@dataclass
class DataConfig:
    strategy: str = MISSING
    source: str = "world"  # world | a local jsonl/json/parquet file or datasets dir | a hub id
    revision: Optional[str] = None  # hub revision; pin it for reproducible studies
    split: str = "train"  # split of a hub/local dataset to read
    max_rows: Optional[int] = None  # read only the first N rows (quick looks at big files)
    # held-out prompts: carved once from the raw rows, before any strategy sees them
    test_size: float = 0.1  # < 1: fraction of prompts; >= 1: number of prompts
    split_seed: int = 42
    # pair selection
    seed: int = 42  # seeds the random rejected choice (per prompt, so rows are independent)
    rejected: str = "random"  # random | lowest
    tie_policy: str = "drop"  # drop: rejected strictly lower | keep: equal scores allowed
    min_margin: float = 0.0  # score_chosen - score_rejected must be >= this
    aspect: Optional[str] = None  # strategy=aspect: which rating
    vintage: str = "as_is"  # critique scores: as_is | fixed (apply upstream's 2023-12-29 fix)
    curate_threshold: float = 2.0  # critique_curated: mean aspect rating at or below => bug signature
    curate_action: str = "drop"  # critique_curated: drop | rescore (score 10 -> 1)
    decontaminate: Optional[str] = None  # truthful_qa
    decontaminate_questions: Optional[str] = None  # file of questions (one per line, or jsonl)
    world: WorldConfig = field(default_factory=WorldConfig)


@dataclass
class TinyConfig:
    """Shape of the locally built Mistral-architecture model (base.name=tiny)."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_size: int = 1024
    seed: int = 0


@dataclass
class BaseConfig:
    name: str = "tiny"  # tiny | a hub id | a local checkpoint dir
    revision: Optional[str] = None
    trust_remote_code: bool = False
    cache_dir: Optional[str] = None  # where base=tiny is built; default ~/.cache/notus_lab
    tiny: TinyConfig = field(default_factory=TinyConfig)


@dataclass
class ModelConfig:
    """How the base is adapted: full fine-tuning, LoRA, or QLoRA."""

    adapter: str = "full"  # full | lora
    quantization: str = "none"  # none | 4bit | 8bit
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: List[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = False


@dataclass
class OptimizerConfig:
    name: str = "adamw_torch"  # a transformers `optim` name
    lr: float = 5e-7
    scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0


@dataclass
class HardwareConfig:
    """How the science is executed. Never changes what is learned, only where and how fast."""

    name: str = "cpu"
    device: str = "cpu"  # cpu | cuda
    num_processes: int = 1  # processes per node (GPUs per node, or CPU ranks)
    num_nodes: int = 1
    per_device_batch_size: int = 8
    eval_batch_size: int = 32
    precision: str = "fp32"  # fp32 | bf16 | fp16
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"  # eager | sdpa | flash_attention_2
    threads: Optional[int] = None  # torch CPU threads; None = torch's default
    distributed: str = "none"  # none | ddp | deepspeed | fsdp
    deepspeed: Optional[Any] = None  # a DeepSpeed config, as data
    fsdp: Optional[Any] = None  # accelerate FSDP settings, as data


@dataclass
class TrainConfig:
    global_batch_size: int = 32  # science: per_device x accumulation x world size
    epochs: float = 1.0
    max_steps: int = -1
    max_length: int = 1024
    max_prompt_length: int = 512  # prompt tokens kept (the end of the prompt) before templating
    seed: int = 42
    logging_steps: int = 10
    save_steps: int = 200
    resume: bool = True  # pick up the newest complete checkpoint in the run dir
    # Compute the reference model's log-probs once, before training, and cache them (with the tokenized
    # pairs) under a content key: arms of a sweep that differ only in beta, loss, seed or optimizer reuse them.
    precompute_reference: bool = False


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled
    project: str = "notus_lab"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    init_timeout: float = 30.0  # seconds to reach the server before falling back to offline


@dataclass
class EvalConfig:
    # The held-out prompts are labelled by each of these data options (conf/data/<name>.yaml, applied
    # to the run's source with ties dropped) and by the truth in the bundled world; every model is
    # scored under all of them, so all arms of a sweep share one cross-eval matrix.
    signals: List[str] = field(
        default_factory=lambda: ["critique", "critique_fixed", "critique_curated", "mean_rating"])


@dataclass
class ExportConfig:
    merge: bool = False  # LoRA/QLoRA: also save the merged full model


@dataclass
class NotusConfig:
    data: DataConfig = field(default_factory=DataConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    beta: float = 0.1
    loss_type: str = "sigmoid"
    run_name: Optional[str] = None  # default: derived from the command's overrides
    sweep_name: str = "adhoc"  # names a study: its sweep dir and its W&B group


def register_configs() -> None:
    ConfigStore.instance().store(name="notus_schema", node=NotusConfig)


def _slug(override_dirname: str) -> str:
    """A run-dir name from Hydra's override_dirname: same command, same directory."""
    if not override_dirname:
        return "default"
    name = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", override_dirname)
    if len(name) <= 200:
        return name
    # too long for a file name: keep a readable head, and a hash of the whole so arms never collide
    import hashlib

    return f"{name[:180]}...{hashlib.sha256(override_dirname.encode()).hexdigest()[:12]}"


if not OmegaConf.has_resolver("slug"):
    OmegaConf.register_new_resolver("slug", _slug)
if not OmegaConf.has_resolver("gpus_on_cuda"):  # a SLURM request for GPUs only when the profile runs on them
    OmegaConf.register_new_resolver("gpus_on_cuda", lambda device, n: n if device == "cuda" else None)
register_configs()


# ---------------------------------------------------------------------------------------------
# Semantic validation: one line, before any model or data loads.


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: allowed {allowed}")


def _one_of(key: str, value: Any, options) -> None:
    _require(value in options, key, value, "one of " + ", ".join(map(str, options)))


def _positive(key: str, value: float) -> None:
    _require(value is not None and math.isfinite(value) and value > 0, key, value, "a number > 0")


def looks_like_local_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).suffix in (".jsonl", ".json", ".parquet") \
        or os.path.exists(os.path.expanduser(source))


def _no_missing(cfg, prefix: str = "") -> None:
    if isinstance(cfg, DictConfig):
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            key = prefix + missing[0]
            raise ConfigError(f"{key}=??? is invalid: allowed a value (it is required; set {key}=...)")


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
        _require(w.rating_noise >= 0, "data.world.rating_noise", w.rating_noise, "a number >= 0")
        _require(w.critique_noise >= 0, "data.world.critique_noise", w.critique_noise, "a number >= 0")
    elif looks_like_local_path(d.source):
        _require(os.path.exists(os.path.expanduser(d.source)), "data.source", d.source,
                 "world, an existing jsonl/json/parquet file or datasets directory, or a hub id (org/name)")
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
    _one_of("hardware.attn_implementation", hw.attn_implementation, ("eager", "sdpa", "flash_attention_2"))
    _one_of("hardware.distributed", hw.distributed, ("none", "ddp", "deepspeed", "fsdp"))
    _require(hw.per_device_batch_size > 0, "hardware.per_device_batch_size", hw.per_device_batch_size, "an integer > 0")
    _require(hw.eval_batch_size > 0, "hardware.eval_batch_size", hw.eval_batch_size, "an integer > 0")
    _require(hw.num_processes > 0, "hardware.num_processes", hw.num_processes, "an integer > 0")
    _require(hw.num_nodes > 0, "hardware.num_nodes", hw.num_nodes, "an integer > 0")
    _require(hw.threads is None or hw.threads > 0, "hardware.threads", hw.threads, "null or an integer > 0")
    if hw.device == "cpu":
        _require(hw.precision == "fp32", "hardware.precision", hw.precision, "fp32 on hardware.device=cpu")
        _require(hw.attn_implementation != "flash_attention_2", "hardware.attn_implementation",
                 hw.attn_implementation, "eager or sdpa on hardware.device=cpu")
        # accelerate shards with FSDP on accelerators only: on CPU ranks it silently trains DDP instead
        _require(hw.distributed != "fsdp", "hardware.distributed", hw.distributed,
                 "none, ddp or deepspeed on hardware.device=cpu (accelerate runs FSDP on GPUs only)")
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

    for s in cfg.eval.signals:
        _one_of("eval.signals", s, [o for o in group_options("data") if o != "prebinarized"])
    _require(re.fullmatch(r"[\w.-]+", cfg.sweep_name) is not None, "sweep_name", cfg.sweep_name,
             "letters, digits, '_', '-' and '.' (it names a directory and a W&B group)")

    _one_of("wandb.mode", cfg.wandb.mode, ("offline", "online", "disabled"))
    if cfg.export.merge:
        _require(m.adapter == "lora", "export.merge", True, "false with model.adapter=full (nothing to merge)")


def eval_data_configs(cfg) -> dict:
    """{name: DataConfig} labelling the held-out prompts: each `eval.signals` data option's rule on the
    run's own source and split, ties dropped and rejected random (a tie is no preference to score)."""
    out = {}
    for name in cfg.eval.signals:
        option = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
        merged = OmegaConf.merge(cfg.data, option, {"tie_policy": "drop", "min_margin": 0.0, "rejected": "random"})
        out[name] = OmegaConf.to_object(merged)
    return out


def gradient_accumulation_steps(cfg) -> int:
    """Derived so that the global batch (a science knob) is the same on every hardware profile."""
    hw = cfg.hardware
    return cfg.train.global_batch_size // (hw.per_device_batch_size * hw.num_processes * hw.num_nodes)


# ---------------------------------------------------------------------------------------------
# Preflight: compose the command's overrides once, and turn Hydra's multi-line errors into one line.


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _one_line(exc: BaseException, overrides: list[str]) -> str:
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = exc  # Hydra wraps the OmegaConf error that knows the key
    while (cause.__cause__ or cause.__context__) is not None and not getattr(cause, "full_key", None):
        cause = cause.__cause__ or cause.__context__
    given = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
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


def preflight(argv: list[str], config_name: str = "config", check=None) -> None:
    """Raise ConfigError (one line) if the command cannot run. `check(cfg)` defaults to `validate`.

    A sweep (`key=a,b`) is checked one value at a time, the other sweeps held at their first value:
    every value is tried without composing the cartesian product."""
    from hydra import compose, initialize_config_dir

    if any(a in ("-h", "--help", "--hydra-help", "-c", "--cfg") or a.startswith("--info") for a in argv):
        return
    check = check or validate
    overrides = [a for a in argv if not a.startswith("-") and not a.startswith(("hydra.", "hydra/", "+hydra"))]
    swept = {o.split("=", 1)[0]: o.split("=", 1)[1].split(",") for o in overrides
             if "," in o.split("=", 1)[-1] and not o.split("=", 1)[-1].startswith("[")}
    fixed = [o for o in overrides if o.split("=", 1)[0] not in swept]
    first = [f"{k}={vs[0]}" for k, vs in swept.items()]
    variants = [fixed + [f"{k}={v}" if o.startswith(k + "=") else o for o in first]
                for k, vs in swept.items() for v in vs] or [overrides]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            for v in variants:
                check(compose(config_name, overrides=v))
    except ConfigError:
        raise
    except Exception as exc:  # Hydra/OmegaConf composition errors
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
