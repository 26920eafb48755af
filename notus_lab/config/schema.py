"""Structured configs: the schema every YAML file in conf/ is checked against.

Hydra merges conf/*.yaml into these dataclasses, so a wrong type or an unknown key fails at composition time.
Each field is declared once, as TRL's DPOConfig declares its own: its default read from its one home in conf/
(`knob`, via notus_lab/config/homes.py; `required` where every option of the group sets it), one help line (its
meaning, range and conflicts) and, where a type cannot say it, what is allowed (`Allowed`). validate.py checks
every declared `Allowed` and adds only the combinations (a value that depends on another); the config reference
(docs/reference/config.md, `python -m notus_lab.config.reference`) is written from these declarations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from notus_lab.config.homes import home
from notus_lab.config.strategies import NAMES as STRATEGY_NAMES
from notus_lab.config.strategies import RULES

STRATEGIES = STRATEGY_NAMES  # the data= options, from the one registry (config/strategies.py)


@dataclass(frozen=True)
class Allowed:
    """What a field may hold: `text` is what the one-line error says is allowed, `test` decides."""

    text: str
    test: Callable[[Any], bool]

    def __call__(self, value) -> bool:
        try:
            return bool(self.test(value))
        except TypeError:
            return False


def _number(v) -> bool:
    return v is not None and not isinstance(v, bool) and math.isfinite(v)


def one_of(options) -> Allowed:
    return Allowed("one of " + ", ".join(map(str, options)), lambda v: v in options)


INT_GT0 = Allowed("an integer > 0", lambda v: v > 0)
OPTIONAL_INT_GT0 = Allowed("null or an integer > 0", lambda v: v is None or v > 0)
POSITIVE = Allowed("a number > 0", lambda v: _number(v) and v > 0)
AT_LEAST_0 = Allowed("a number >= 0", lambda v: _number(v) and v >= 0)
UNIT = Allowed("a number in [0, 1]", lambda v: 0 <= v <= 1)
OPEN_UNIT = Allowed("a number in (0, 1)", lambda v: 0 < v < 1)
UNIT_RIGHT_OPEN = Allowed("a number in [0, 1)", lambda v: 0 <= v < 1)
UNIT_LEFT_OPEN = Allowed("a number in (0, 1]", lambda v: 0 < v <= 1)
AT_LEAST_10 = Allowed("an integer >= 10", lambda v: v >= 10)
HALF_OR_WHOLE = Allowed("0.5 or 1.0", lambda v: v in (0.5, 1.0))
MAX_STEPS = Allowed("-1 or an integer > 0", lambda v: v == -1 or v > 0)
TEST_SIZE = Allowed(
    "a fraction in (0, 1) or a whole number of prompts >= 1",
    lambda v: _number(v) and 0 < v and (v < 1 or v == int(v)),
)
# llama.cpp's file types by the names GGUF repositories use (lower case) -> llama_ftype (llama.h). f16 is the
# converter's own output, the source of the others and the baseline they are judged against.
GGUF_TYPES = {
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "bf16": "LLAMA_FTYPE_MOSTLY_BF16",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q5_k_s": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q3_k_l": "LLAMA_FTYPE_MOSTLY_Q3_K_L",
    "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "q3_k_s": "LLAMA_FTYPE_MOSTLY_Q3_K_S",
    "q2_k": "LLAMA_FTYPE_MOSTLY_Q2_K",
}
GGUF_FILES = Allowed(
    "a list of " + ", ".join(GGUF_TYPES) + ", each once",
    lambda v: all(str(x).lower() in GGUF_TYPES for x in v) and len({str(x).lower() for x in v}) == len(v),
)
SWEEP_NAME = Allowed(
    "letters, digits, '_', '-' and '.' (it names a directory and a W&B group)",
    lambda v: __import__("re").fullmatch(r"[\w.-]+", v) is not None,
)


def knob(key: str, help: str, allowed: Allowed | None = None, factory: bool = False):
    """A field whose default lives in conf/ under `key` (homes.py), with its help and what it allows."""
    metadata = {"key": key, "help": help, "allowed": allowed}
    if factory:  # a list: every config gets its own copy
        return field(default_factory=lambda: home(key), metadata=metadata)
    return field(default=home(key), metadata=metadata)


def required(help: str, allowed: Allowed | None = None):
    """A field every option of its group sets (no default of its own)."""
    return field(default=MISSING, metadata={"key": None, "help": help, "allowed": allowed})


def section(cls, help: str):
    """A nested section."""
    return field(default_factory=cls, metadata={"key": None, "help": help, "allowed": None})


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
    UltraFeedback rows (50 rows of openbmb/UltraFeedback, revision 40b43656); docs/data.md says
    what each knob does."""

    rows: int = knob("data.world.rows", "how many rows the world generates", AT_LEAST_10)
    seed: int = knob(
        "data.world.seed", "the world's seed: texts from one random stream per row, annotations from another"
    )
    difficulty_spread: float = knob(
        "data.world.difficulty_spread",
        "std of a prompt's shift of its four completions' quality (hard and easy prompts)",
        AT_LEAST_0,
    )
    aspect_agreement: float = knob(
        "data.world.aspect_agreement",
        "observed mean pairwise correlation of the four aspect ratings (1-5; real: 0.71); the rating noise is "
        "derived to hold it",
        OPEN_UNIT,
    )
    annotator_correlation: float = knob(
        "data.world.annotator_correlation",
        "share of a rating's error shared by the completion's four aspects; in [0, data.world.aspect_agreement)",
    )
    rating_leniency: float = knob(
        "data.world.rating_leniency", "added to 1 + 4 x quality before rounding: good answers saturate at 5", AT_LEAST_0
    )
    na_rate: float = knob("data.world.na_rate", 'share of honesty ratings that are "N/A"', UNIT)
    critique_noise: float = knob(
        "data.world.critique_noise",
        "std of the critic's own error on the critique overall_score's 1-10 scale",
        AT_LEAST_0,
    )
    critique_shared_error: float = knob(
        "data.world.critique_shared_error", "share of the critic's error that is the annotators' shared error", UNIT
    )
    critique_curve: float = knob(
        "data.world.critique_curve",
        "lenience: 1 + 9 (1 - (1 - quality)^curve); 1 is linear, more saturates at 10",
        POSITIVE,
    )
    critique_step: float = knob(
        "data.world.critique_step", "the critique's resolution (half points, as real scores)", HALF_OR_WHOLE
    )
    critique_bug_rate: float = knob(
        "data.world.critique_bug_rate",
        "share of critique scores of 1 that the bug turns into 10; 0.2 bugs ~1.7 % of completions, as the real "
        "data (~2.6k of 256k); 1.0 is the bug at full strength (~8 %: the positive control), 0 the fixed data",
        UNIT,
    )


@dataclass
class DataConfig:
    STRATEGIES: ClassVar = STRATEGY_NAMES  # what data= offers (config/strategies.py)
    REJECTED: ClassVar = ("random", "lowest")
    TIE_POLICIES: ClassVar = ("drop", "keep")
    VINTAGES: ClassVar = ("as_is", "fixed")
    CURATE_ACTIONS: ClassVar = ("drop", "rescore")
    ASPECTS: ClassVar = ASPECTS
    DECONTAMINATE: ClassVar = ("truthful_qa",)

    strategy: str = required(
        "the strategy whose rule this data= option applies (config/strategies.py; critique_fixed applies "
        "critique's on vintage fixed)",
        one_of(RULES),
    )
    source: str = knob("data.source", "world | a local jsonl/json/parquet file or datasets dir | a hub id")
    revision: Optional[str] = knob("data.revision", "hub revision; pin it for reproducible studies")
    split: Optional[str] = knob("data.split", "split to read; null: the set's own (train_prefs for H4's), else train")
    max_rows: Optional[int] = knob(
        "data.max_rows", "read only the first N rows (quick looks at big files)", OPTIONAL_INT_GT0
    )
    test_size: float = knob(
        "data.test_size",
        "held-out prompts, carved once from the raw rows before any strategy sees them: < 1 a fraction, >= 1 a "
        "number of prompts",
        TEST_SIZE,
    )
    split_seed: int = knob("data.split_seed", "seeds which prompts are held out (the same for every strategy)")
    seed: int = knob("data.seed", "seeds the random rejected choice (per prompt, so rows are independent)")
    rejected: str = knob(
        "data.rejected", "the rejected answer: a random lower one (H4/Zephyr, Notus) or the lowest", one_of(REJECTED)
    )
    tie_policy: str = knob(
        "data.tie_policy", "drop: rejected strictly lower | keep: equal scores allowed", one_of(TIE_POLICIES)
    )
    min_margin: float = knob("data.min_margin", "score_chosen - score_rejected must be >= this", AT_LEAST_0)
    aspect: Optional[str] = knob("data.aspect", "data=aspect: which rating scores a completion", one_of(ASPECTS))
    vintage: str = knob(
        "data.vintage", "critique scores: as_is | fixed (apply upstream's 2023-12-29 fix)", one_of(VINTAGES)
    )
    curate_threshold: float = knob(
        "data.curate_threshold", "critique_curated: mean aspect rating at or below => bug signature"
    )
    curate_action: str = knob(
        "data.curate_action", "critique_curated: drop | rescore (score 10 -> 1)", one_of(CURATE_ACTIONS)
    )
    decontaminate: Optional[str] = knob(
        "data.decontaminate", "drop training prompts that appear in this benchmark (null: none)", one_of(DECONTAMINATE)
    )
    decontaminate_questions: Optional[str] = knob(
        "data.decontaminate_questions", "file of questions (one per line, or jsonl)"
    )
    world: WorldConfig = section(WorldConfig, "the bundled world's knobs (data.source=world)")


@dataclass
class TinyConfig:
    """The locally built SFT base (base.name=tiny): its Mistral shape and its SFT recipe
    (notus_lab/models/tiny_base.py)."""

    hidden_size: int = knob("base.tiny.hidden_size", "the tiny Mistral's width")
    intermediate_size: int = knob("base.tiny.intermediate_size", "its MLP width")
    num_hidden_layers: int = knob("base.tiny.num_hidden_layers", "its layers")
    num_attention_heads: int = knob("base.tiny.num_attention_heads", "its attention heads")
    num_key_value_heads: int = knob("base.tiny.num_key_value_heads", "its key/value heads (grouped-query attention)")
    vocab_size: int = knob("base.tiny.vocab_size", "its byte-level BPE vocabulary, trained on the world's words")
    seed: int = knob("base.tiny.seed", "seeds its init, its SFT world and its SFT run")
    sft_rows: int = knob(
        "base.tiny.sft_rows", "world prompts of the SFT conversations (a world of their own, not the study's)"
    )
    sft_completions_per_prompt: int = knob(
        "base.tiny.sft_completions_per_prompt", "random completions per prompt: teachers of mixed quality"
    )
    sft_epochs: float = knob(
        "base.tiny.sft_epochs", "SFT epochs; 0 keeps the random init (DPO without SFT: it collapses; docs: data)"
    )
    sft_lr: float = knob("base.tiny.sft_lr", "SFT learning rate")


@dataclass
class ShapeConfig:
    """The base's architecture numbers, for the memory preflight (notus_lab/config/memory.py); null: not checked."""

    num_parameters: Optional[float] = knob("base.shape.num_parameters", "parameters of the base (null: not checked)")
    hidden_size: Optional[int] = knob("base.shape.hidden_size", "its width (null: not checked)")
    intermediate_size: Optional[int] = knob("base.shape.intermediate_size", "its MLP width (null: not checked)")
    num_hidden_layers: Optional[int] = knob("base.shape.num_hidden_layers", "its layers (null: not checked)")
    num_attention_heads: Optional[int] = knob(
        "base.shape.num_attention_heads", "its attention heads (null: not checked)"
    )
    num_key_value_heads: Optional[int] = knob(
        "base.shape.num_key_value_heads", "its key/value heads (null: not checked)"
    )
    vocab_size: Optional[int] = knob("base.shape.vocab_size", "its vocabulary (null: not checked)")


@dataclass
class BaseConfig:
    name: str = required("tiny | a hub id | a local checkpoint dir")
    revision: Optional[str] = knob("base.revision", "hub revision of the base checkpoint; pin it")
    trust_remote_code: bool = knob(
        "base.trust_remote_code", "let transformers run the checkpoint's own code (off: safe loading)"
    )
    cache_dir: Optional[str] = knob("base.cache_dir", "where base=tiny is built; default ~/.cache/notus_lab")
    tiny: TinyConfig = section(TinyConfig, "the tiny base's shape and SFT recipe (base.name=tiny)")
    shape: ShapeConfig = section(ShapeConfig, "the base's architecture, for the memory preflight")


@dataclass
class ModelConfig:
    """How the base is adapted: full fine-tuning, LoRA, or QLoRA."""

    ADAPTERS: ClassVar = ("full", "lora")
    QUANTIZATIONS: ClassVar = ("none", "4bit", "8bit")
    QUANT_TYPES: ClassVar = ("nf4", "fp4")

    adapter: str = required("full | lora", one_of(ADAPTERS))
    quantization: str = required("none | 4bit | 8bit; not none needs adapter lora (QLoRA)", one_of(QUANTIZATIONS))
    lora_r: int = knob("model.lora_r", "LoRA rank (adapter lora)", INT_GT0)
    lora_alpha: int = knob("model.lora_alpha", "LoRA scaling alpha", INT_GT0)
    lora_dropout: float = knob("model.lora_dropout", "dropout on the LoRA layers", UNIT_RIGHT_OPEN)
    lora_target_modules: List[str] = knob(
        "model.lora_target_modules", "the modules LoRA adapts (a non-empty list)", factory=True
    )
    bnb_4bit_quant_type: str = knob(
        "model.bnb_4bit_quant_type", "bitsandbytes 4-bit type (quantization 4bit)", one_of(QUANT_TYPES)
    )
    bnb_4bit_use_double_quant: bool = knob(
        "model.bnb_4bit_use_double_quant", "quantize the quantization constants too (bitsandbytes)"
    )


@dataclass
class OptimizerConfig:
    NAMES: ClassVar = OPTIMIZERS
    SCHEDULERS: ClassVar = SCHEDULERS

    name: str = required("a transformers `optim` name", one_of(NAMES))
    lr: float = required("peak learning rate (base=tiny sets its own)", POSITIVE)
    scheduler: str = required("learning-rate schedule (transformers lr_scheduler_type)", one_of(SCHEDULERS))
    warmup_ratio: float = required("share of the steps spent warming up", UNIT_RIGHT_OPEN)
    weight_decay: float = knob("optimizer.weight_decay", "decoupled weight decay", AT_LEAST_0)


@dataclass
class NodeConfig:
    """What one node must give a run (a SLURM job asks for exactly this: conf/hydra/launcher/slurm.yaml)."""

    gpus: Optional[int] = knob("hardware.node.gpus", "GPUs per node (null on CPU profiles)")
    cpus: int = knob(
        "hardware.node.cpus",
        "cores per node: the ranks, their data loading, and a CPU optimizer where DeepSpeed offloads",
    )
    mem_gb: Optional[int] = knob(
        "hardware.node.mem_gb", "host memory per node; the memory preflight refuses a run that needs more"
    )


@dataclass
class HardwareConfig:
    """How the science is executed. Never changes what is learned, only where and how fast."""

    DEVICES: ClassVar = ("cpu", "cuda")
    PRECISIONS: ClassVar = ("fp32", "bf16", "fp16")
    ATTENTION: ClassVar = ("auto", "eager", "sdpa", "flash_attention_2")
    ENGINES: ClassVar = ("none", "ddp", "deepspeed", "fsdp")

    name: str = required("the profile's name (conf/hardware/<name>.yaml)")
    device: str = required("cpu | cuda", one_of(DEVICES))
    num_processes: int = required("processes per node (GPUs per node, or CPU ranks)", INT_GT0)
    num_nodes: int = knob("hardware.num_nodes", "nodes the run spans", INT_GT0)
    per_device_batch_size: int = required(
        "pairs per device per micro-step; accumulation is derived from train.global_batch_size", INT_GT0
    )
    eval_batch_size: int = required("pairs per device per evaluation step", INT_GT0)
    precision: str = required("fp32 | bf16 | fp16 (not fp16 on cpu)", one_of(PRECISIONS))
    gradient_checkpointing: bool = knob(
        "hardware.gradient_checkpointing", "recompute activations in the backward pass: less memory, more time"
    )
    attn_implementation: str = required(
        "eager | sdpa | flash_attention_2 | auto (flash-attention 2 where it runs)", one_of(ATTENTION)
    )
    threads: Optional[int] = knob("hardware.threads", "torch CPU threads; null: torch's default", OPTIONAL_INT_GT0)
    distributed: str = required(
        "none | ddp | deepspeed | fsdp (fsdp on GPUs only; more than one process needs one)", one_of(ENGINES)
    )
    gpu_memory_gb: Optional[float] = knob(
        "hardware.gpu_memory_gb", "per GPU; the memory preflight checks the run fits (null: unchecked)"
    )
    peak_tflops: Optional[float] = knob(
        "hardware.peak_tflops", "bf16 dense peak per GPU: the report's 7B cost projections"
    )
    deepspeed: Optional[Any] = knob("hardware.deepspeed", "a DeepSpeed config, as data")
    fsdp: Optional[Any] = knob("hardware.fsdp", "accelerate FSDP settings, as data")
    node: NodeConfig = section(NodeConfig, "what one node must give the run (the SLURM request)")


@dataclass
class TrainConfig:
    global_batch_size: int = knob(
        "train.global_batch_size",
        "pairs per optimizer step (science): per_device x accumulation x world size; a multiple of per_device "
        "x processes",
        INT_GT0,
    )
    epochs: float = knob("train.epochs", "passes over the pairs (> 0, unless train.max_steps > 0)")
    max_steps: int = knob(
        "train.max_steps",
        "> 0: this many optimizer steps instead of epochs (a budget shared by a study's arms)",
        MAX_STEPS,
    )
    max_length: int = knob(
        "train.max_length", "tokens of prompt + answer kept (TRL max_length; the 7B recipes: 1024)", INT_GT0
    )
    max_prompt_length: int = knob(
        "train.max_prompt_length",
        "prompt tokens kept (the end of the prompt) before templating; below train.max_length",
    )
    seed: int = knob("train.seed", "the training seed: a study's seed unit")
    logging_steps: int = knob("train.logging_steps", "log the train metrics every N steps", INT_GT0)
    save_steps: int = knob(
        "train.save_steps", "checkpoint every N steps (a stopped run resumes from the newest)", INT_GT0
    )
    eval_steps: Optional[int] = knob(
        "train.eval_steps",
        "evaluate on the held-out sets every N steps (eval curves); null: at the end only",
        OPTIONAL_INT_GT0,
    )
    resume: bool = knob("train.resume", "pick up the newest complete checkpoint in the run dir")
    precompute_reference: bool = knob(
        "train.precompute_reference",
        "compute the reference's log-probs once before training and cache them by content: arms differing only "
        "in beta, loss, seed or optimizer reuse them",
    )
    reference_cache_dir: Optional[str] = knob(
        "train.reference_cache_dir", "where the cached reference log-probs are kept; null: <base cache>/datasets"
    )


@dataclass
class WandbConfig:
    MODES: ClassVar = ("offline", "online", "disabled")

    mode: str = knob("wandb.mode", "offline | online | disabled", one_of(MODES))
    project: str = knob("wandb.project", "W&B project")
    entity: Optional[str] = knob("wandb.entity", "W&B entity (null: your default)")
    group: Optional[str] = knob("wandb.group", "W&B group (a sweep sets its sweep_name)")
    tags: List[str] = knob("wandb.tags", "W&B tags (a sweep adds the arm's overrides)", factory=True)
    init_timeout: float = knob("wandb.init_timeout", "seconds to reach the server before falling back to offline")


@dataclass
class EvalConfig:
    signals: List[str] = knob(
        "eval.signals",
        "binarizing data= options whose rules label the held-out prompts (ties dropped), beside the truth in "
        "the world: one cross-eval matrix for every arm",
        factory=True,
    )


@dataclass
class GenerationConfig:
    """How the policy and its reference answer the held-out prompts after training (the same decoding
    for both; docs/judges.md). Every prompt gets `samples_per_prompt` answers from each."""

    samples_per_prompt: int = knob(
        "generation.samples_per_prompt", "answers per held-out prompt from the policy and from the reference", INT_GT0
    )
    do_sample: bool = knob("generation.do_sample", "false: greedy, one answer per prompt")
    temperature: float = knob("generation.temperature", "sampling temperature (do_sample true)", POSITIVE)
    top_p: float = knob(
        "generation.top_p",
        "nucleus sampling: the smallest set of tokens holding this share of probability",
        UNIT_LEFT_OPEN,
    )
    max_new_tokens: int = knob(
        "generation.max_new_tokens",
        "a world answer is ~37 tokens; raise it for real benchmarks (AlpacaEval: 2048)",
        INT_GT0,
    )
    batch_size: int = knob("generation.batch_size", "prompts per generate() call", INT_GT0)
    max_prompts: Optional[int] = knob(
        "generation.max_prompts", "the first N held-out prompts (null: all of them)", OPTIONAL_INT_GT0
    )
    seed: int = knob("generation.seed", "sampling seed, shared by policy and reference")


@dataclass
class JudgeConfig:
    """Who compares the policy's answer with the reference's (conf/judge/*.yaml)."""

    NAMES: ClassVar = ("truth", "reward_model", "none")

    name: str = required("truth (bundled world only) | reward_model | none", one_of(NAMES))
    model: Optional[str] = knob(
        "judge.model", "reward_model: a local dir, a hub id, or `tiny` (built here on first use)"
    )
    revision: Optional[str] = knob("judge.revision", "hub revision of the reward model; pin it")
    trust_remote_code: bool = knob("judge.trust_remote_code", "let transformers run the reward model's own code")
    batch_size: int = knob("judge.batch_size", "answers scored per judge call", INT_GT0)


@dataclass
class ExportConfig:
    merge: bool = knob("export.merge", "LoRA/QLoRA: also save the merged full model (needs adapter lora)")
    gguf: List[str] = knob(
        "export.gguf",
        "GGUF files for llama.cpp made after training, by llama.cpp's own converter and quantizer, each judged "
        "head to head against the f16 file on the held-out prompts (python -m notus_lab.export does the same for a "
        "finished run). f16 is always made: the baseline. Needs the gguf extra. [] makes none",
        allowed=GGUF_FILES,
        factory=True,
    )


@dataclass
class StudyConfig:
    """How a study decides, not what a run learns (never part of a run's identity)."""

    margin: Optional[float] = knob(
        "study.margin",
        "the equivalence margin delta, in the decision metric's units (0.05 = 5 points of win rate): two "
        'strategies whose difference provably lies inside +-margin are "equivalent". hydra/sweeper=sequential '
        "needs it (> 0)",
    )


@dataclass
class NotusConfig:
    data: DataConfig = section(
        DataConfig, "how rows become pairs: the data= strategy, its source and its held-out split"
    )
    base: BaseConfig = section(BaseConfig, "the checkpoint DPO starts from")
    model: ModelConfig = section(ModelConfig, "how the base is adapted: full, LoRA or QLoRA")
    optimizer: OptimizerConfig = section(OptimizerConfig, "optimizer, learning rate, schedule and warmup")
    hardware: HardwareConfig = section(HardwareConfig, "how and where the run executes (never what it learns)")
    train: TrainConfig = section(TrainConfig, "the training budget and its bookkeeping")
    wandb: WandbConfig = section(WandbConfig, "W&B logging")
    export: ExportConfig = section(ExportConfig, "what is saved beside the model")
    generation: GenerationConfig = section(
        GenerationConfig, "how the policy and its reference answer the held-out prompts"
    )
    judge: JudgeConfig = section(JudgeConfig, "who compares their answers")
    eval: EvalConfig = section(EvalConfig, "how the held-out pairs are labelled")
    study: StudyConfig = section(StudyConfig, "how a study decides")
    LOSS_TYPES: ClassVar = LOSS_TYPES

    beta: float = knob(
        "beta", "DPO's beta: how far the policy may move from the reference (TRL DPOConfig.beta)", POSITIVE
    )
    loss_type: str = knob("loss_type", "the preference loss (TRL DPOConfig.loss_type)", one_of(LOSS_TYPES))
    rpo_alpha: float = knob(
        "rpo_alpha",
        'weight of an NLL term on the chosen answer added to the preference loss (RPO; TRL loss_type "sft"); 0 '
        "is plain DPO, as Notus and Zephyr trained",
        AT_LEAST_0,
    )
    run_name: Optional[str] = knob("run_name", "default: derived from the command's overrides")
    sweep_name: str = knob("sweep_name", "names a study: its sweep dir and its W&B group", SWEEP_NAME)


def register_configs() -> None:
    ConfigStore.instance().store(name="notus_schema", node=NotusConfig)


register_configs()
