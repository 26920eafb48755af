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

    rows: int = 3000
    seed: int = 0
    difficulty_spread: float = 0.25  # std of a prompt's shift of its four completions' quality
    # the four aspect ratings (1-5)
    aspect_agreement: float = 0.71  # observed mean pairwise correlation of the four aspects (real: 0.71)
    annotator_correlation: float = 0.3  # share of a rating's error shared by the completion's four aspects
    rating_leniency: float = 0.5  # added to 1 + 4 x quality before rounding: good answers saturate at 5
    na_rate: float = 0.05  # share of honesty ratings that are "N/A"
    # the critique overall_score (1-10)
    critique_noise: float = 1.0  # std of the critic's own error, on its 1-10 scale
    critique_shared_error: float = 0.0  # share of the critic's error that is the annotators' shared error
    critique_curve: float = 3.0  # lenience: 1 + 9 (1 - (1 - quality)^curve); 1 is linear, more saturates at 10
    critique_step: float = 0.5  # the critique's resolution (half points, as real scores)
    # share of critique scores of 1 that the bug turns into 10; 0.2 bugs ~1.7 % of completions, as the real
    # data (~2.6k of 256k); 1.0 is the bug at full strength (~8 %: the positive control), 0 the fixed data
    critique_bug_rate: float = 0.2


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
    source: str = "world"  # world | a local jsonl/json/parquet file or datasets dir | a hub id
    revision: Optional[str] = None  # hub revision; pin it for reproducible studies
    split: Optional[str] = None  # split to read; None: the set's own (train_prefs for H4's), else train
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
    """The locally built SFT base (base.name=tiny): its Mistral shape and its SFT recipe
    (notus_lab/models/tiny_base.py)."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_size: int = 1024
    seed: int = 0
    sft_rows: int = 4000  # world prompts of the SFT conversations (a world of their own, not the study's)
    sft_completions_per_prompt: int = 2  # random completions per prompt: teachers of mixed quality
    sft_epochs: float = 3.0  # 0 keeps the random init (DPO without SFT: it collapses; see README)
    sft_lr: float = 3e-3


@dataclass
class ShapeConfig:
    """The base's architecture numbers, for the memory preflight (notus_lab/config/memory.py); null: not checked."""

    num_parameters: Optional[float] = None
    hidden_size: Optional[int] = None
    intermediate_size: Optional[int] = None
    num_hidden_layers: Optional[int] = None
    num_attention_heads: Optional[int] = None
    num_key_value_heads: Optional[int] = None
    vocab_size: Optional[int] = None


@dataclass
class BaseConfig:
    name: str = "tiny"  # tiny | a hub id | a local checkpoint dir
    revision: Optional[str] = None
    trust_remote_code: bool = False
    cache_dir: Optional[str] = None  # where base=tiny is built; default ~/.cache/notus_lab
    tiny: TinyConfig = field(default_factory=TinyConfig)
    shape: ShapeConfig = field(default_factory=ShapeConfig)


@dataclass
class ModelConfig:
    """How the base is adapted: full fine-tuning, LoRA, or QLoRA."""

    ADAPTERS: ClassVar = ("full", "lora")
    QUANTIZATIONS: ClassVar = ("none", "4bit", "8bit")
    QUANT_TYPES: ClassVar = ("nf4", "fp4")

    adapter: str = "full"  # full | lora
    quantization: str = "none"  # none | 4bit | 8bit
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: List[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = False


@dataclass
class OptimizerConfig:
    NAMES: ClassVar = OPTIMIZERS
    SCHEDULERS: ClassVar = SCHEDULERS

    name: str = "adamw_torch"  # a transformers `optim` name
    lr: float = 5e-7
    scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0


@dataclass
class NodeConfig:
    """What one node must give a run (a SLURM job asks for exactly this: conf/hydra/launcher/slurm.yaml)."""

    gpus: Optional[int] = None  # GPUs per node (null on CPU profiles)
    cpus: int = 2  # cores per node: the ranks, their data loading, and a CPU optimizer where DeepSpeed offloads
    mem_gb: Optional[int] = None  # host memory per node; the memory preflight refuses a run that needs more


@dataclass
class HardwareConfig:
    """How the science is executed. Never changes what is learned, only where and how fast."""

    DEVICES: ClassVar = ("cpu", "cuda")
    PRECISIONS: ClassVar = ("fp32", "bf16", "fp16")
    ATTENTION: ClassVar = ("auto", "eager", "sdpa", "flash_attention_2")
    ENGINES: ClassVar = ("none", "ddp", "deepspeed", "fsdp")

    name: str = "cpu"
    device: str = "cpu"  # cpu | cuda
    num_processes: int = 1  # processes per node (GPUs per node, or CPU ranks)
    num_nodes: int = 1
    per_device_batch_size: int = 8
    eval_batch_size: int = 32
    precision: str = "fp32"  # fp32 | bf16 | fp16
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"  # eager | sdpa | flash_attention_2 | auto (flash-attention 2 where it runs)
    threads: Optional[int] = None  # torch CPU threads; None = torch's default
    distributed: str = "none"  # none | ddp | deepspeed | fsdp
    gpu_memory_gb: Optional[float] = None  # per GPU; the memory preflight checks the run fits (null: unchecked)
    peak_tflops: Optional[float] = None  # bf16 dense peak per GPU: the report's 7B cost projections
    deepspeed: Optional[Any] = None  # a DeepSpeed config, as data
    fsdp: Optional[Any] = None  # accelerate FSDP settings, as data
    node: NodeConfig = field(default_factory=NodeConfig)


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
    eval_steps: Optional[int] = None  # evaluate on the held-out sets every N steps (eval curves); null: at the end only
    resume: bool = True  # pick up the newest complete checkpoint in the run dir
    # Compute the reference model's log-probs once, before training, and cache them (with the tokenized
    # pairs) under a content key: arms of a sweep that differ only in beta, loss, seed or optimizer reuse them.
    precompute_reference: bool = False
    reference_cache_dir: Optional[str] = None  # where those are kept; default <base cache>/datasets


@dataclass
class WandbConfig:
    MODES: ClassVar = ("offline", "online", "disabled")

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
        default_factory=lambda: ["critique", "critique_fixed", "critique_curated", "mean_rating"]
    )


@dataclass
class GenerationConfig:
    """How the policy and its reference answer the held-out prompts after training (the same decoding
    for both; README "Judged generations"). Every prompt gets `samples_per_prompt` answers from each."""

    samples_per_prompt: int = 2
    do_sample: bool = True  # false: greedy, one answer per prompt
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 64  # a world answer is ~37 tokens; raise it for real benchmarks (AlpacaEval: 2048)
    batch_size: int = 64  # prompts per generate() call
    max_prompts: Optional[int] = None  # the first N held-out prompts (null: all of them)
    seed: int = 0  # sampling seed, shared by policy and reference


@dataclass
class JudgeConfig:
    """Who compares the policy's answer with the reference's (conf/judge/*.yaml)."""

    NAMES: ClassVar = ("truth", "reward_model", "none")

    name: str = "truth"  # truth (bundled world only) | reward_model | none
    model: Optional[str] = None  # reward_model: a local dir, a hub id, or `tiny` (built here on first use)
    revision: Optional[str] = None  # hub revision of the reward model; pin it
    trust_remote_code: bool = False
    batch_size: int = 64


@dataclass
class ExportConfig:
    merge: bool = False  # LoRA/QLoRA: also save the merged full model


@dataclass
class StudyConfig:
    """How a study decides, not what a run learns (never part of a run's identity)."""

    # the equivalence margin delta, in the decision metric's units (0.05 = 5 points of win rate): two strategies
    # whose difference provably lies inside +-margin are "equivalent". hydra/sweeper=sequential needs it (> 0)
    margin: Optional[float] = None


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

    beta: float = 0.1
    loss_type: str = "sigmoid"
    # weight of an NLL term on the chosen answer added to the preference loss (RPO; TRL loss_type "sft");
    # 0 is plain DPO, as Notus and Zephyr trained
    rpo_alpha: float = 0.0
    run_name: Optional[str] = None  # default: derived from the command's overrides
    sweep_name: str = "adhoc"  # names a study: its sweep dir and its W&B group


def register_configs() -> None:
    ConfigStore.instance().store(name="notus_schema", node=NotusConfig)


register_configs()
