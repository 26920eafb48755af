"""Structured configs: the schema every YAML file in conf/ is checked against.

Hydra merges conf/*.yaml into these dataclasses, so a wrong type or an unknown key fails at
composition time. notus_lab/config/validate.py adds the checks a type cannot express (ranges, combinations,
files), before any data or model is loaded. Values derived from the config live here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from notus_lab.config.homes import home

STRATEGIES = ("critique", "critique_curated", "mean_rating", "aspect", "multi_pair", "prebinarized")


ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sigmoid_norm",
)


OPTIMIZERS = (
    "rmsprop",
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_bnb_8bit",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "sgd",
    "adafactor",
)


SCHEDULERS = (
    "linear",
    "cosine",
    "constant",
    "constant_with_warmup",
    "cosine_with_restarts",
    "polynomial",
    "inverse_sqrt",
)


@dataclass
class WorldConfig:
    """The bundled synthetic UltraFeedback world (data.source=world). Defaults are calibrated to real
    UltraFeedback rows (50 rows of openbmb/UltraFeedback, revision 40b43656); README "The bundled world" says
    what each knob does."""

    rows: int = home("data.world.rows")
    seed: int = home("data.world.seed")
    # std of a prompt's shift of its four completions' quality
    difficulty_spread: float = home("data.world.difficulty_spread")
    # the four aspect ratings (1-5)
    # observed mean pairwise correlation of the four aspects (real: 0.71)
    aspect_agreement: float = home("data.world.aspect_agreement")
    # share of a rating's error shared by the completion's four aspects
    annotator_correlation: float = home("data.world.annotator_correlation")
    # added to 1 + 4 x quality before rounding: good answers saturate at 5
    rating_leniency: float = home("data.world.rating_leniency")
    na_rate: float = home("data.world.na_rate")  # share of honesty ratings that are "N/A"
    # the critique overall_score (1-10)
    critique_noise: float = home("data.world.critique_noise")  # std of the critic's own error, on its 1-10 scale
    # share of the critic's error that is the annotators' shared error
    critique_shared_error: float = home("data.world.critique_shared_error")
    # lenience: 1 + 9 (1 - (1 - quality)^curve); 1 is linear, more saturates at 10
    critique_curve: float = home("data.world.critique_curve")
    critique_step: float = home("data.world.critique_step")  # the critique's resolution (half points, as real scores)
    # share of critique scores of 1 that the bug turns into 10; 0.2 bugs ~1.7 % of completions, as the real
    # data (~2.6k of 256k); 1.0 is the bug at full strength (~8 %: the positive control), 0 the fixed data
    critique_bug_rate: float = home("data.world.critique_bug_rate")


@dataclass
class DataConfig:
    STRATEGIES: ClassVar = STRATEGIES
    REJECTED: ClassVar = ("random", "lowest")
    TIE_POLICIES: ClassVar = ("drop", "keep")
    VINTAGES: ClassVar = ("as_is", "fixed")
    CURATE_ACTIONS: ClassVar = ("drop", "rescore")
    ASPECTS: ClassVar = ASPECTS
    DECONTAMINATE: ClassVar = ("truthful_qa",)

    strategy: str = MISSING
    source: str = home("data.source")  # world | a local jsonl/json/parquet file or datasets dir | a hub id
    revision: Optional[str] = home("data.revision")  # hub revision; pin it for reproducible studies
    split: Optional[str] = home("data.split")  # split to read; None: the set's own (train_prefs for H4's), else train
    max_rows: Optional[int] = home("data.max_rows")  # read only the first N rows (quick looks at big files)
    # held-out prompts: carved once from the raw rows, before any strategy sees them
    test_size: float = home("data.test_size")  # < 1: fraction of prompts; >= 1: number of prompts
    split_seed: int = home("data.split_seed")
    # pair selection
    seed: int = home("data.seed")  # seeds the random rejected choice (per prompt, so rows are independent)
    rejected: str = home("data.rejected")  # random | lowest
    tie_policy: str = home("data.tie_policy")  # drop: rejected strictly lower | keep: equal scores allowed
    min_margin: float = home("data.min_margin")  # score_chosen - score_rejected must be >= this
    aspect: Optional[str] = home("data.aspect")  # strategy=aspect: which rating
    vintage: str = home("data.vintage")  # critique scores: as_is | fixed (apply upstream's 2023-12-29 fix)
    # critique_curated: mean aspect rating at or below => bug signature
    curate_threshold: float = home("data.curate_threshold")
    curate_action: str = home("data.curate_action")  # critique_curated: drop | rescore (score 10 -> 1)
    decontaminate: Optional[str] = home("data.decontaminate")  # truthful_qa
    # file of questions (one per line, or jsonl)
    decontaminate_questions: Optional[str] = home("data.decontaminate_questions")
    world: WorldConfig = field(default_factory=WorldConfig)


@dataclass
class TinyConfig:
    """The locally built SFT base (base.name=tiny): its Mistral shape and its SFT recipe
    (notus_lab/models/tiny_base.py)."""

    hidden_size: int = home("base.tiny.hidden_size")
    intermediate_size: int = home("base.tiny.intermediate_size")
    num_hidden_layers: int = home("base.tiny.num_hidden_layers")
    num_attention_heads: int = home("base.tiny.num_attention_heads")
    num_key_value_heads: int = home("base.tiny.num_key_value_heads")
    vocab_size: int = home("base.tiny.vocab_size")
    seed: int = home("base.tiny.seed")
    # world prompts of the SFT conversations (a world of their own, not the study's)
    sft_rows: int = home("base.tiny.sft_rows")
    # random completions per prompt: teachers of mixed quality
    sft_completions_per_prompt: int = home("base.tiny.sft_completions_per_prompt")
    # 0 keeps the random init (DPO without SFT: it collapses; see README)
    sft_epochs: float = home("base.tiny.sft_epochs")
    sft_lr: float = home("base.tiny.sft_lr")


@dataclass
class ShapeConfig:
    """The base's architecture numbers, for the memory preflight (notus_lab/config/memory.py); null: not checked."""

    num_parameters: Optional[float] = home("base.shape.num_parameters")
    hidden_size: Optional[int] = home("base.shape.hidden_size")
    intermediate_size: Optional[int] = home("base.shape.intermediate_size")
    num_hidden_layers: Optional[int] = home("base.shape.num_hidden_layers")
    num_attention_heads: Optional[int] = home("base.shape.num_attention_heads")
    num_key_value_heads: Optional[int] = home("base.shape.num_key_value_heads")
    vocab_size: Optional[int] = home("base.shape.vocab_size")


@dataclass
class BaseConfig:
    name: str = MISSING  # tiny | a hub id | a local checkpoint dir
    revision: Optional[str] = home("base.revision")
    trust_remote_code: bool = home("base.trust_remote_code")
    cache_dir: Optional[str] = home("base.cache_dir")  # where base=tiny is built; default ~/.cache/notus_lab
    tiny: TinyConfig = field(default_factory=TinyConfig)
    shape: ShapeConfig = field(default_factory=ShapeConfig)


@dataclass
class ModelConfig:
    """How the base is adapted: full fine-tuning, LoRA, or QLoRA."""

    ADAPTERS: ClassVar = ("full", "lora")
    QUANTIZATIONS: ClassVar = ("none", "4bit", "8bit")
    QUANT_TYPES: ClassVar = ("nf4", "fp4")

    adapter: str = MISSING  # full | lora
    quantization: str = MISSING  # none | 4bit | 8bit
    lora_r: int = home("model.lora_r")
    lora_alpha: int = home("model.lora_alpha")
    lora_dropout: float = home("model.lora_dropout")
    lora_target_modules: List[str] = field(default_factory=lambda: home("model.lora_target_modules"))
    bnb_4bit_quant_type: str = home("model.bnb_4bit_quant_type")
    bnb_4bit_use_double_quant: bool = home("model.bnb_4bit_use_double_quant")


@dataclass
class OptimizerConfig:
    NAMES: ClassVar = OPTIMIZERS
    SCHEDULERS: ClassVar = SCHEDULERS

    name: str = MISSING  # a transformers `optim` name
    lr: float = MISSING
    scheduler: str = MISSING
    warmup_ratio: float = MISSING
    weight_decay: float = home("optimizer.weight_decay")


@dataclass
class NodeConfig:
    """What one node must give a run (a SLURM job asks for exactly this: conf/hydra/launcher/slurm.yaml)."""

    gpus: Optional[int] = home("hardware.node.gpus")  # GPUs per node (null on CPU profiles)
    # cores per node: the ranks, their data loading, and a CPU optimizer where DeepSpeed offloads
    cpus: int = home("hardware.node.cpus")
    # host memory per node; the memory preflight refuses a run that needs more
    mem_gb: Optional[int] = home("hardware.node.mem_gb")


@dataclass
class HardwareConfig:
    """How the science is executed. Never changes what is learned, only where and how fast."""

    DEVICES: ClassVar = ("cpu", "cuda")
    PRECISIONS: ClassVar = ("fp32", "bf16", "fp16")
    ATTENTION: ClassVar = ("auto", "eager", "sdpa", "flash_attention_2")
    ENGINES: ClassVar = ("none", "ddp", "deepspeed", "fsdp")

    name: str = MISSING
    device: str = MISSING  # cpu | cuda
    num_processes: int = MISSING  # processes per node (GPUs per node, or CPU ranks)
    num_nodes: int = home("hardware.num_nodes")
    per_device_batch_size: int = MISSING
    eval_batch_size: int = MISSING
    precision: str = MISSING  # fp32 | bf16 | fp16
    gradient_checkpointing: bool = home("hardware.gradient_checkpointing")
    attn_implementation: str = MISSING  # eager | sdpa | flash_attention_2 | auto (flash-attention 2 where it runs)
    threads: Optional[int] = home("hardware.threads")  # torch CPU threads; None = torch's default
    distributed: str = MISSING  # none | ddp | deepspeed | fsdp
    # per GPU; the memory preflight checks the run fits (null: unchecked)
    gpu_memory_gb: Optional[float] = home("hardware.gpu_memory_gb")
    # bf16 dense peak per GPU: the report's 7B cost projections
    peak_tflops: Optional[float] = home("hardware.peak_tflops")
    deepspeed: Optional[Any] = home("hardware.deepspeed")  # a DeepSpeed config, as data
    fsdp: Optional[Any] = home("hardware.fsdp")  # accelerate FSDP settings, as data
    node: NodeConfig = field(default_factory=NodeConfig)


@dataclass
class TrainConfig:
    global_batch_size: int = home("train.global_batch_size")  # science: per_device x accumulation x world size
    epochs: float = home("train.epochs")
    max_steps: int = home("train.max_steps")
    max_length: int = home("train.max_length")
    # prompt tokens kept (the end of the prompt) before templating
    max_prompt_length: int = home("train.max_prompt_length")
    seed: int = home("train.seed")
    logging_steps: int = home("train.logging_steps")
    save_steps: int = home("train.save_steps")
    # evaluate on the held-out sets every N steps (eval curves); null: at the end only
    eval_steps: Optional[int] = home("train.eval_steps")
    resume: bool = home("train.resume")  # pick up the newest complete checkpoint in the run dir
    # Compute the reference model's log-probs once, before training, and cache them (with the tokenized
    # pairs) under a content key: arms of a sweep that differ only in beta, loss, seed or optimizer reuse them.
    precompute_reference: bool = home("train.precompute_reference")
    # where those are kept; default <base cache>/datasets
    reference_cache_dir: Optional[str] = home("train.reference_cache_dir")


@dataclass
class WandbConfig:
    MODES: ClassVar = ("offline", "online", "disabled")

    mode: str = home("wandb.mode")  # offline | online | disabled
    project: str = home("wandb.project")
    entity: Optional[str] = home("wandb.entity")
    group: Optional[str] = home("wandb.group")
    tags: List[str] = field(default_factory=lambda: home("wandb.tags"))
    init_timeout: float = home("wandb.init_timeout")  # seconds to reach the server before falling back to offline


@dataclass
class EvalConfig:
    # The held-out prompts are labelled by each of these data options (conf/data/<name>.yaml, applied
    # to the run's source with ties dropped) and by the truth in the bundled world; every model is
    # scored under all of them, so all arms of a sweep share one cross-eval matrix.
    signals: List[str] = field(default_factory=lambda: home("eval.signals"))


@dataclass
class GenerationConfig:
    """How the policy and its reference answer the held-out prompts after training (the same decoding
    for both; README "Judged generations"). Every prompt gets `samples_per_prompt` answers from each."""

    samples_per_prompt: int = home("generation.samples_per_prompt")
    do_sample: bool = home("generation.do_sample")  # false: greedy, one answer per prompt
    temperature: float = home("generation.temperature")
    top_p: float = home("generation.top_p")
    # a world answer is ~37 tokens; raise it for real benchmarks (AlpacaEval: 2048)
    max_new_tokens: int = home("generation.max_new_tokens")
    batch_size: int = home("generation.batch_size")  # prompts per generate() call
    max_prompts: Optional[int] = home("generation.max_prompts")  # the first N held-out prompts (null: all of them)
    seed: int = home("generation.seed")  # sampling seed, shared by policy and reference


@dataclass
class JudgeConfig:
    """Who compares the policy's answer with the reference's (conf/judge/*.yaml)."""

    NAMES: ClassVar = ("truth", "reward_model", "none")

    name: str = MISSING  # truth (bundled world only) | reward_model | none
    # reward_model: a local dir, a hub id, or `tiny` (built here on first use)
    model: Optional[str] = home("judge.model")
    revision: Optional[str] = home("judge.revision")  # hub revision of the reward model; pin it
    trust_remote_code: bool = home("judge.trust_remote_code")
    batch_size: int = home("judge.batch_size")


@dataclass
class ExportConfig:
    merge: bool = home("export.merge")  # LoRA/QLoRA: also save the merged full model


@dataclass
class StudyConfig:
    """How a study decides, not what a run learns (never part of a run's identity)."""

    # the equivalence margin delta, in the decision metric's units (0.05 = 5 points of win rate): two strategies
    # whose difference provably lies inside +-margin are "equivalent". hydra/sweeper=sequential needs it (> 0)
    margin: Optional[float] = home("study.margin")


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
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    LOSS_TYPES: ClassVar = LOSS_TYPES

    beta: float = home("beta")
    loss_type: str = home("loss_type")
    # weight of an NLL term on the chosen answer added to the preference loss (RPO; TRL loss_type "sft");
    # 0 is plain DPO, as Notus and Zephyr trained
    rpo_alpha: float = home("rpo_alpha")
    run_name: Optional[str] = home("run_name")  # default: derived from the command's overrides
    sweep_name: str = home("sweep_name")  # names a study: its sweep dir and its W&B group


def register_configs() -> None:
    ConfigStore.instance().store(name="notus_schema", node=NotusConfig)


register_configs()
