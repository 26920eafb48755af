"""The memory preflight: the GPU memory per GPU and the host memory per node a run needs, estimated before
anything loads, from the base's shape kept in its conf/base file (no hub needed) and the run's adaptation,
engine, batch and node (hardware.node).

GPU: weights (+ fp32 master copy), gradients, optimizer state, the frozen reference, LoRA/QLoRA adapters,
activations of per-device batch x 2 (chosen and rejected go through together) x max_length, with or without
gradient checkpointing, the logits, and an allowance for the CUDA context and fragmentation; divided by the
ranks where ZeRO-3 or FSDP shard. A ZeRO-3 full fine-tune follows DeepSpeed's own model-state estimator
(deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs: bf16 parameters, fp32 gradient
partitions, fp32 master and optimizer state, the gathered largest layer, its 1.5 buffer factor on what is
offloaded), generalised from Adam to the run's optimizer; the tests hold it to DeepSpeed's numbers.
Host: what DeepSpeed offloads, a checkpoint loaded in every rank, the dataset in every rank, and each
process's own runtime.

An estimate, meant to catch the run that cannot fit (a full 7B on one GPU, an offloaded optimizer on a node
with the partition's default memory) before it costs GPU-hours, and to say what would fit instead.
metrics.json records it next to what CUDA measured, to keep it honest.
"""

from __future__ import annotations

import copy
import math
import os
import sys

from notus_lab.config.derived import world_size
from notus_lab.config.options import group_options, hardware_profile, load_option
from notus_lab.config.strategies import strategy
from notus_lab.core.errors import invalid

GB = 1024**3


# optimizer state bytes per trainable parameter (torch keeps it in fp32; bitsandbytes 8-bit in 1 byte each)
OPTIMIZER_STATE = {
    "adamw_torch": 8,
    "adamw_torch_fused": 8,
    "rmsprop": 4,
    "sgd": 0,
    "adafactor": 0.5,
    "adamw_bnb_8bit": 2,
    "paged_adamw_32bit": 8,
    "paged_adamw_8bit": 2,
}


CONTEXT_GB, FRAGMENTATION = 1.5, 0.10


BUFFER_FACTOR = 1.5  # DeepSpeed's estimator's additional_buffer_factor on offloaded (pinned) states


PROCESS_GB = 2.5  # host memory of one training process: Python, torch, the CUDA runtime, NCCL buffers


SHARD_GB = 5.0  # a checkpoint shard that a ZeRO-3 rank reads whole before partitioning it (hub shards: 5 GB)


DATASET_GB = {"world": 0.05, "raw": 2.0, "pairs": 0.5}


# DeepSpeed ZeRO-3's stage3_max_live_parameters default (deepspeed/runtime/zero/config.py): parameters a GPU may
# keep gathered at once before releasing them, in the run's 16-bit precision: up to ~1.9 GiB of bf16
MAX_LIVE_DEFAULT = 1e9  # rows in Python objects, per rank (UltraFeedback: 64k rows)


def _zero(cfg) -> dict:
    from omegaconf import OmegaConf

    hw = cfg.hardware
    z = OmegaConf.to_container(hw.deepspeed["zero_optimization"]) if hw.distributed == "deepspeed" else {}
    offloaded = lambda key: isinstance(z.get(key), dict) and z[key].get("device") in ("cpu", "nvme")  # noqa: E731
    bucket = z.get("stage3_prefetch_bucket_size", "auto")  # accelerate's `auto`: 0.9 x hidden^2
    bucket = 0.9 * cfg.base.shape.hidden_size**2 if bucket == "auto" else float(bucket)
    live = z.get("stage3_max_live_parameters", MAX_LIVE_DEFAULT)
    return {
        "stage": z.get("stage", 0),
        "offload_param": offloaded("offload_param"),
        "offload_optimizer": offloaded("offload_optimizer"),
        "prefetch_bucket": bucket,
        "max_live": MAX_LIVE_DEFAULT if live == "auto" else float(live),
    }


def lora_parameters(shape, m) -> int:
    """Adapter parameters: r x (in + out) per targeted projection per layer."""
    h, i = shape.hidden_size, shape.intermediate_size
    kv = h * shape.num_key_value_heads // shape.num_attention_heads
    dims = {
        "q_proj": (h, h),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (h, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }
    return shape.num_hidden_layers * sum(m.lora_r * sum(dims[t]) for t in m.lora_target_modules if t in dims)


def fsdp_root_parameters(shape) -> int:
    """Parameters FSDP's root unit holds when every decoder layer is its own unit (transformer_layer_cls_to_wrap):
    the input embedding, the final norm and an untied lm_head, gathered whole while the root runs."""
    tied = bool(getattr(shape, "tie_word_embeddings", False))
    return shape.vocab_size * shape.hidden_size * (1 if tied else 2) + shape.hidden_size


def largest_module(shape) -> int:
    """Parameters of the largest single module (DeepSpeed's `largest_layer_params`): the embedding or lm_head,
    or an MLP projection."""
    return max(shape.vocab_size * shape.hidden_size, shape.hidden_size * shape.intermediate_size)


def zero3_model_states(
    total_params: float,
    largest_layer_params: float,
    gpus_per_node: int,
    nodes: int = 1,
    offload_optimizer: bool = False,
    offload_param: bool = False,
    optimizer_bytes: float = 12,
    buffer_factor: float = BUFFER_FACTOR,
) -> tuple[float, float]:
    """(host bytes per node, GPU bytes per GPU) of a ZeRO-3 model's states, in DeepSpeed's estimator's terms
    (zero_init): 2 bytes of bf16 parameters, 4 of fp32 gradients and `optimizer_bytes` of fp32 master copy and
    optimizer state per parameter (Adam: 4 + 8 = 12, its default). GPUs hold their partition and the gathered
    largest layer; what is offloaded lives on the node's CPUs, times the buffer factor."""
    gpus = gpus_per_node * nodes
    gathered = 4 * largest_layer_params
    on_gpu = (0 if offload_param else 2) + (0 if offload_optimizer else 4 + optimizer_bytes)
    on_cpu = (2 if offload_param else 0) + (4 + optimizer_bytes if offload_optimizer else 0)
    if not on_cpu:  # nothing offloaded: each process stages the largest layer in host memory
        return gathered * gpus_per_node * buffer_factor, gathered + total_params * on_gpu / gpus
    return total_params * on_cpu / nodes * buffer_factor, gathered + total_params * on_gpu / gpus


def _zero3_full(cfg, n: float, ranks: int, zero: dict, state: float, low: int) -> dict:
    """GPU bytes of a ZeRO-3 full fine-tune: the policy's states as DeepSpeed estimates them, and the frozen
    bf16 reference, partitioned (and offloaded with the parameters)."""
    shape, hw = cfg.base.shape, cfg.hardware
    largest = largest_module(shape)
    _, states = zero3_model_states(
        n, largest, hw.num_processes, hw.num_nodes, zero["offload_optimizer"], zero["offload_param"], 4 + state
    )
    weights = 0 if zero["offload_param"] else n * low / ranks
    gradients = 0 if zero["offload_optimizer"] else 4 * n / ranks
    prefetch = 2 * zero["prefetch_bucket"]  # the next module's parameters, gathered ahead in bf16
    # beyond the estimator's largest layer: the parameters ZeRO-3 keeps live (gathered, not yet released) at once
    live = min(zero["max_live"], n) * low
    return {
        "weights": weights,
        "gradients": gradients,
        "optimizer": states - 4 * largest - weights - gradients,
        "gathered_layer": 4 * largest + prefetch,
        "live_parameters": live,
        "reference": 0 if cfg.train.precompute_reference or zero["offload_param"] else n * low / ranks,
    }


def estimate(cfg) -> dict:
    """{component: GB per GPU, ..., "total": GB}."""
    shape, hw, m, tr = cfg.base.shape, cfg.hardware, cfg.model, cfg.train
    n = float(shape.num_parameters)
    ranks = world_size(hw)
    zero = _zero(cfg)
    half = hw.precision in ("bf16", "fp16")
    low = 2 if half else 4  # bytes of a weight or activation in the run's precision
    full_shard = (hw.distributed == "deepspeed" and zero["stage"] == 3) or hw.distributed == "fsdp"
    shard_states = ranks if (hw.distributed == "deepspeed" and zero["stage"] >= 1) or hw.distributed == "fsdp" else 1
    shard_grads = ranks if (hw.distributed == "deepspeed" and zero["stage"] >= 2) or hw.distributed == "fsdp" else 1
    shard_weights = ranks if full_shard else 1
    state = OPTIMIZER_STATE.get(cfg.optimizer.name, 8)
    parts = {}
    if m.adapter == "full" and hw.distributed == "deepspeed" and zero["stage"] == 3:
        parts = _zero3_full(cfg, n, ranks, zero, state, low)
    elif m.adapter == "full":
        # DeepSpeed keeps bf16 weights and an fp32 master copy in the optimizer; elsewhere the policy is fp32
        deepspeed = hw.distributed == "deepspeed"
        weights = n * (low if deepspeed else 4)
        master = 4 * n if deepspeed and half else 0
        parts["weights"] = weights / shard_weights
        parts["gradients"] = 4 * n / shard_grads  # fp32: DeepSpeed reduces into fp32 partitions, elsewhere fp32 weights
        parts["optimizer"] = 0 if zero["offload_optimizer"] else (n * state + master) / shard_states
        parts["reference"] = 0 if tr.precompute_reference else n * low / shard_weights
    else:
        base_bytes = {"4bit": 0.5 * 1.07, "8bit": 1.0}.get(m.quantization, low)  # nf4 carries block scales
        adapters = lora_parameters(shape, m)
        parts["weights"] = (n * base_bytes + 4 * adapters) / shard_weights
        parts["gradients"] = 4 * adapters / shard_grads
        parts["optimizer"] = adapters * state / shard_states
        parts["reference"] = 0  # the base with the adapter switched off
        if zero["offload_param"]:  # ZeRO-3 keeps a few layers' gathered weights on the GPU at a time
            parts["weights"] = 2 * n / shape.num_hidden_layers * low + 4 * adapters
    if hw.distributed == "fsdp":  # the root unit (embeddings, final norm, lm_head) stays gathered in its forward
        parts["fsdp_root_unit"] = fsdp_root_parameters(shape) * low
    # activations: chosen and rejected run together, so 2 x per-device sequences of max_length tokens
    tokens = 2 * hw.per_device_batch_size * tr.max_length
    h, layers = shape.hidden_size, shape.num_hidden_layers
    per_layer = tokens * h * 34 * low / 2  # the standard 34 x hidden bytes per token per layer (16-bit)
    if hw.attn_implementation == "eager":
        per_layer += 5 * shape.num_attention_heads * tokens * tr.max_length * low / 2  # the score matrices
    checkpointing = hw.gradient_checkpointing or (
        hw.distributed == "fsdp" and hw.fsdp.fsdp_config.get("activation_checkpointing")
    )
    parts["activations"] = (layers * tokens * h * low + per_layer) if checkpointing else layers * per_layer
    parts["logits"] = tokens * shape.vocab_size * 4 * 2  # fp32 logits and their gradient
    gb = {k: v / GB for k, v in parts.items()}
    gb["overhead"] = CONTEXT_GB + FRAGMENTATION * sum(gb.values())
    gb["total"] = sum(gb.values())
    return {k: round(v, 1) for k, v in gb.items()}


def _dataset_kind(d) -> str:
    return "world" if d.source == "world" else "pairs" if strategy(d.strategy).prebinarized else "raw"


def host_estimate(cfg) -> dict:
    """{component: GB of host memory per node, ..., "total": GB}: DeepSpeed's offloaded states (the policy's
    and, with the parameters offloaded, the frozen reference's), the checkpoint every rank loads, the dataset
    every rank holds, and every process's runtime."""
    shape, hw, m = cfg.base.shape, cfg.hardware, cfg.model
    n = float(shape.num_parameters)
    ranks = hw.num_processes  # per node
    zero = _zero(cfg)
    low = 2 if hw.precision in ("bf16", "fp16") else 4
    parts = {}
    if hw.distributed == "deepspeed" and zero["stage"] == 3:
        trainable = n if m.adapter == "full" else lora_parameters(shape, m)
        state = 4 + OPTIMIZER_STATE.get(cfg.optimizer.name, 8)
        policy, _ = zero3_model_states(
            trainable,
            largest_module(shape),
            hw.num_processes,
            hw.num_nodes,
            zero["offload_optimizer"],
            zero["offload_param"],
            state,
        )
        frozen = (n if m.adapter == "full" and not cfg.train.precompute_reference else 0) + (
            n if m.adapter != "full" else 0
        )
        parts["deepspeed_states"] = policy
        parts["offloaded_reference"] = frozen * low / hw.num_nodes * BUFFER_FACTOR if zero["offload_param"] else 0
    sharded_load = (hw.distributed == "deepspeed" and zero["stage"] == 3) or hw.distributed == "fsdp"
    copies = 2 if m.adapter == "full" and not cfg.train.precompute_reference else 1  # policy (+ reference)
    # ZeRO-3 (zero.Init) and FSDP partition while loading: a rank reads a shard at a time; otherwise every rank
    # holds its whole copy in host memory before moving it to its GPU
    per_rank = min(n * low, SHARD_GB * GB) if sharded_load else copies * n * low
    parts["checkpoint_loading"] = ranks * per_rank
    parts["dataset"] = ranks * DATASET_GB[_dataset_kind(cfg.data)] * GB
    parts["processes"] = (ranks + 1) * PROCESS_GB * GB  # the ranks and their launcher
    gb = {k: v / GB for k, v in parts.items()}
    gb["total"] = sum(gb.values())
    return {k: round(v, 1) for k, v in gb.items()}


def alternatives(cfg) -> list[tuple[str, float]]:
    """Settings that would fit the same science: another adaptation, or another GPU profile."""
    from omegaconf import OmegaConf

    out = []
    if cfg.model.adapter == "full":
        for option in ("lora", "qlora"):
            other = copy.deepcopy(cfg)
            other.model = OmegaConf.merge(other.model, load_option("model", option))
            out.append((f"model={option}", estimate(other)["total"], other.hardware.gpu_memory_gb))
    for option in group_options("hardware"):
        other = copy.deepcopy(cfg)
        other.hardware = hardware_profile(option)
        hw = other.hardware
        if (
            option == cfg.hardware.name
            or hw.device != "cuda"
            or not hw.gpu_memory_gb
            or cfg.train.global_batch_size % (hw.per_device_batch_size * world_size(hw))
        ):
            continue
        out.append((f"hardware={option}", estimate(other)["total"], hw.gpu_memory_gb))
    return [(setting, total) for setting, total, memory in out if memory and total <= memory]


def summary(cfg) -> str:
    """The preflight's line: both memories, against what the profile's GPUs and node have."""
    hw, gpu, host = cfg.hardware, estimate(cfg), host_estimate(cfg)
    node = f" of the {hw.node.mem_gb:g} GB the node asks for" if hw.node.mem_gb else " (hardware.node.mem_gb unset)"
    return (
        f"memory preflight (hardware={hw.name}): ~{gpu['total']:g} GB per GPU of {hw.gpu_memory_gb:g}; "
        f"~{host['total']:g} GB host per node{node} "
        f"({', '.join(f'{k} {v:g}' for k, v in host.items() if k != 'total' and v >= 0.1)})"
    )


_said = set()


def check(cfg) -> None:
    """One line, before anything loads, when the run cannot fit its GPUs or its node's memory; with what
    would. A run that fits prints its preflight line once (stderr)."""

    hw, shape = cfg.hardware, cfg.base.shape
    if hw.device != "cuda" or not hw.gpu_memory_gb or not shape.num_parameters:
        return
    need = estimate(cfg)
    adaptation = (
        "full fine-tuning" if cfg.model.adapter == "full" else f"{cfg.model.adapter} ({cfg.model.quantization})"
    )
    if need["total"] > hw.gpu_memory_gb:
        parts = ", ".join(f"{k} {v:g}" for k, v in need.items() if k != "total" and v >= 0.1)
        fits = (
            ", ".join(f"{s} (~{t:g} GB)" for s, t in alternatives(cfg))
            or "none of the profiles here; lower hardware.per_device_batch_size or train.max_length"
        )
        raise invalid(
            "hardware.gpu_memory_gb",
            hw.gpu_memory_gb,
            fits,
            shown=f"{hw.gpu_memory_gb:g}",
            why=f"{adaptation} of {cfg.base.name} on hardware={hw.name} needs ~{need['total']:g} GB per GPU ({parts})",
        )
    host = host_estimate(cfg)
    if hw.node.mem_gb and host["total"] > hw.node.mem_gb:
        parts = ", ".join(f"{k} {v:g}" for k, v in host.items() if k != "total" and v >= 0.1)
        raise invalid(
            "hardware.node.mem_gb",
            hw.node.mem_gb,
            f"hardware.node.mem_gb >= {math.ceil(host['total'])} (a node that has it), or a profile that offloads less",
            shown=f"{hw.node.mem_gb:g}",
            why=f"{adaptation} of {cfg.base.name} on hardware={hw.name} needs ~{host['total']:g} GB of host "
            f"memory per node ({parts})",
        )
    line = summary(cfg)
    if line not in _said and "LOCAL_RANK" not in os.environ:  # the launcher says it; its ranks re-check silently
        _said.add(line)
        print(line, file=sys.stderr)
