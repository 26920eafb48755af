"""The memory preflight: per-GPU memory a run needs, estimated before anything loads, from the base's
shape kept in its conf/base file (no hub needed) and the run's adaptation, engine and batch.

    weights (+ fp32 master copy), gradients, optimizer state, the frozen reference, LoRA/QLoRA adapters,
    activations of per-device batch x 2 (chosen and rejected go through together) x max_length, with or
    without gradient checkpointing, the logits, and an allowance for the CUDA context and fragmentation;
    divided by the ranks where ZeRO-3 or FSDP shard, moved to the CPU where DeepSpeed offloads.

An estimate, meant to catch the run that cannot fit (a full 7B on one GPU) before it costs GPU-hours, and
to say what would fit instead. metrics.json records it next to what CUDA measured, to keep it honest.
"""

from __future__ import annotations

import copy

from notus_lab.distributed import world_size

GB = 1024 ** 3
# optimizer state bytes per trainable parameter (torch keeps it in fp32; bitsandbytes 8-bit in 1 byte each)
OPTIMIZER_STATE = {"adamw_torch": 8, "adamw_torch_fused": 8, "rmsprop": 4, "sgd": 0, "adafactor": 0.5,
                   "adamw_bnb_8bit": 2, "paged_adamw_32bit": 8, "paged_adamw_8bit": 2}
CONTEXT_GB, FRAGMENTATION = 1.5, 0.10


def _zero(hw) -> dict:
    from omegaconf import OmegaConf

    z = OmegaConf.to_container(hw.deepspeed["zero_optimization"]) if hw.distributed == "deepspeed" else {}
    offloaded = lambda key: isinstance(z.get(key), dict) and z[key].get("device") in ("cpu", "nvme")  # noqa: E731
    return {"stage": z.get("stage", 0), "offload_param": offloaded("offload_param"),
            "offload_optimizer": offloaded("offload_optimizer")}


def lora_parameters(shape, m) -> int:
    """Adapter parameters: r x (in + out) per targeted projection per layer."""
    h, i = shape.hidden_size, shape.intermediate_size
    kv = h * shape.num_key_value_heads // shape.num_attention_heads
    dims = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return shape.num_hidden_layers * sum(m.lora_r * sum(dims[t]) for t in m.lora_target_modules if t in dims)


def estimate(cfg) -> dict:
    """{component: GB per GPU, ..., "total": GB}."""
    shape, hw, m, tr = cfg.base.shape, cfg.hardware, cfg.model, cfg.train
    n = float(shape.num_parameters)
    ranks = world_size(hw)
    zero = _zero(hw)
    half = hw.precision in ("bf16", "fp16")
    low = 2 if half else 4  # bytes of a weight or activation in the run's precision
    full_shard = (hw.distributed == "deepspeed" and zero["stage"] == 3) or hw.distributed == "fsdp"
    shard_states = ranks if (hw.distributed == "deepspeed" and zero["stage"] >= 1) or hw.distributed == "fsdp" else 1
    shard_grads = ranks if (hw.distributed == "deepspeed" and zero["stage"] >= 2) or hw.distributed == "fsdp" else 1
    shard_weights = ranks if full_shard else 1
    state = OPTIMIZER_STATE.get(cfg.optimizer.name, 8)
    parts = {}
    if m.adapter == "full":
        # DeepSpeed keeps bf16 weights and an fp32 master copy in the optimizer; elsewhere the policy is fp32
        deepspeed = hw.distributed == "deepspeed"
        weights = n * (low if deepspeed else 4)
        master = 4 * n if deepspeed and half else 0
        parts["weights"] = weights / shard_weights
        parts["gradients"] = n * (low if deepspeed else 4) / shard_grads
        parts["optimizer"] = (n * state + master) / shard_states
        parts["reference"] = 0 if tr.precompute_reference else n * low / shard_weights
    else:
        base_bytes = {"4bit": 0.5 * 1.07, "8bit": 1.0}.get(m.quantization, low)  # nf4 carries block scales
        adapters = lora_parameters(shape, m)
        parts["weights"] = (n * base_bytes + 4 * adapters) / shard_weights
        parts["gradients"] = 4 * adapters / shard_grads
        parts["optimizer"] = adapters * state / shard_states
        parts["reference"] = 0  # the base with the adapter switched off
    if zero["offload_param"]:  # ZeRO-3 keeps a few layers' gathered weights on the GPU at a time
        layer = n / shape.num_hidden_layers * low
        parts["weights"] = 2 * layer + (4 * lora_parameters(shape, m) if m.adapter == "lora" else 0)
        parts["reference"] = 0 if parts["reference"] == 0 else 2 * layer
    if zero["offload_optimizer"]:
        parts["optimizer"] = 0
        parts["gradients"] = 0 if zero["stage"] == 3 else parts["gradients"]
    # activations: chosen and rejected run together, so 2 x per-device sequences of max_length tokens
    tokens = 2 * hw.per_device_batch_size * tr.max_length
    h, layers = shape.hidden_size, shape.num_hidden_layers
    per_layer = tokens * h * 34 * low / 2  # the standard 34 x hidden bytes per token per layer (16-bit)
    if hw.attn_implementation == "eager":
        per_layer += 5 * shape.num_attention_heads * tokens * tr.max_length * low / 2  # the score matrices
    checkpointing = hw.gradient_checkpointing or (hw.distributed == "fsdp" and hw.fsdp.fsdp_config.get("activation_checkpointing"))
    parts["activations"] = (layers * tokens * h * low + per_layer) if checkpointing else layers * per_layer
    parts["logits"] = tokens * shape.vocab_size * 4 * 2  # fp32 logits and their gradient
    gb = {k: v / GB for k, v in parts.items()}
    gb["overhead"] = CONTEXT_GB + FRAGMENTATION * sum(gb.values())
    gb["total"] = sum(gb.values())
    return {k: round(v, 1) for k, v in gb.items()}


def alternatives(cfg) -> list[tuple[str, float]]:
    """Settings that would fit the same science: another adaptation, or another GPU profile."""
    from omegaconf import OmegaConf

    from notus_lab.config import HardwareConfig, group_options, load_option

    out = []
    if cfg.model.adapter == "full":
        for option in ("lora", "qlora"):
            other = copy.deepcopy(cfg)
            other.model = OmegaConf.merge(other.model, load_option("model", option))
            out.append((f"model={option}", estimate(other)["total"], other.hardware.gpu_memory_gb))
    for option in group_options("hardware"):
        other = copy.deepcopy(cfg)
        other.hardware = OmegaConf.merge(OmegaConf.structured(HardwareConfig), load_option("hardware", option))
        hw = other.hardware
        if option == cfg.hardware.name or hw.device != "cuda" or not hw.gpu_memory_gb or \
                cfg.train.global_batch_size % (hw.per_device_batch_size * world_size(hw)):
            continue
        out.append((f"hardware={option}", estimate(other)["total"], hw.gpu_memory_gb))
    return [(setting, total) for setting, total, memory in out if memory and total <= memory]


def check(cfg) -> None:
    """One line, before anything loads, when the run cannot fit its GPUs; with what would."""
    from notus_lab.config import ConfigError

    hw, shape = cfg.hardware, cfg.base.shape
    if hw.device != "cuda" or not hw.gpu_memory_gb or not shape.num_parameters:
        return
    need = estimate(cfg)
    if need["total"] <= hw.gpu_memory_gb:
        return
    parts = ", ".join(f"{k} {v:g}" for k, v in need.items() if k != "total" and v >= 0.1)
    fits = ", ".join(f"{s} (~{t:g} GB)" for s, t in alternatives(cfg)) or "none of the profiles here; lower " \
        "hardware.per_device_batch_size or train.max_length"
    adaptation = "full fine-tuning" if cfg.model.adapter == "full" else f"{cfg.model.adapter} ({cfg.model.quantization})"
    raise ConfigError(f"hardware.gpu_memory_gb={hw.gpu_memory_gb:g} is invalid: {adaptation} of {cfg.base.name} on "
                      f"hardware={hw.name} needs ~{need['total']:g} GB per GPU ({parts}); allowed: {fits}")
