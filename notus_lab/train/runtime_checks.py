"""What a run checks about itself once things are built, and records in metrics.json: the engine
accelerate set up, how much of the model this rank holds, its precision and memory, and the optimizer
that really steps. Each of
these has silently differed from what the profile or recipe asked for (docs/hardware.md, "Scaling out")."""

from __future__ import annotations

from notus_lab.config import memory
from notus_lab.config.derived import world_size

ENGINES = {"none": ("no",), "ddp": ("multi_cpu", "multi_gpu"), "deepspeed": ("deepspeed",), "fsdp": ("fsdp",)}


def check_engine(hw, engine: str, processes: int) -> None:
    """Refuse to train on another setup than the profile asks for: accelerate falls back silently (FSDP on
    CPU ranks becomes DDP, `--cpu` starts one process), and the run would answer a different question."""

    if engine not in ENGINES[hw.distributed] or processes != world_size(hw):
        raise RuntimeError(
            f"hardware.distributed={hw.distributed!r} asks for {'/'.join(ENGINES[hw.distributed])} "
            f"over {world_size(hw)} processes, but accelerate set up {engine} over {processes}"
        )


def local_parameter_share(model) -> float:
    """The fraction of the policy's parameters this process holds: 1 under DDP, about 1/N when ZeRO-3 or
    FSDP really shard over N ranks (an engine that silently fell back to replication shows up here)."""
    from torch.distributed.tensor import DTensor

    local = total = 0
    for p in model.parameters():
        if hasattr(p, "ds_numel"):  # a DeepSpeed ZeRO-3 parameter: ds_tensor is this rank's partition
            total, local = total + p.ds_numel, local + p.ds_tensor.numel()
        elif isinstance(p, DTensor):  # FSDP2
            total, local = total + p.numel(), local + p.to_local().numel()
        else:
            total, local = total + p.numel(), local + p.numel()
    return round(local / max(total, 1), 4)


def precision_record(hw, policy_weights: str) -> dict:
    """How the policy was held and computed: its weights' dtype as loaded, and who casts to 16 bits
    (the Trainer's autocast, or DeepSpeed's bf16 engine keeping the fp32 master copy)."""
    deepspeed = hw.distributed == "deepspeed"
    return {
        "asked": hw.precision,
        "policy_weights": policy_weights,
        "autocast": None if deepspeed else {"bf16": "bfloat16", "fp16": "float16"}.get(hw.precision),
        "deepspeed_bf16": deepspeed and hw.precision == "bf16",
    }


def memory_record(cfg) -> dict:
    """The preflight's per-GPU and per-node estimates next to what CUDA measured on this rank: keeps the
    estimate honest."""
    import torch

    known = bool(cfg.base.shape.num_parameters)
    out = {
        "estimate": memory.estimate(cfg)["total"] if known else None,
        "host_estimate": memory.host_estimate(cfg)["total"] if known else None,
    }
    if torch.cuda.is_available():
        out["measured_peak"] = round(torch.cuda.max_memory_allocated() / memory.GB, 1)
    return out


# optimizer.name -> the class names that may really step for it (bitsandbytes names its own)
OPTIMIZER_CLASSES = {
    "rmsprop": ("RMSprop",),
    "adamw_torch": ("AdamW",),
    "adamw_torch_fused": ("AdamW",),
    "adamw_bnb_8bit": ("AdamW8bit", "AdamW"),
    "paged_adamw_32bit": ("PagedAdamW32bit", "PagedAdamW"),
    "paged_adamw_8bit": ("PagedAdamW8bit", "PagedAdamW"),
    "sgd": ("SGD",),
    "adafactor": ("Adafactor",),
}


def stepping_optimizer(optimizer):
    """The optimizer under the wrappers (accelerate's, DeepSpeed's ZeRO stages): the one that updates weights."""
    seen = set()
    while hasattr(optimizer, "optimizer") and id(optimizer) not in seen:
        seen.add(id(optimizer))
        optimizer = optimizer.optimizer
    return optimizer


def describe_optimizer(optimizer) -> dict:
    group = optimizer.param_groups[0] if getattr(optimizer, "param_groups", None) else {}
    out = {
        "class": type(optimizer).__name__,
        "module": type(optimizer).__module__,
        "lr": group.get("initial_lr", group.get("lr")),
    }  # the peak: the schedule's current value varies by step
    for key in ("betas", "alpha", "eps", "momentum", "weight_decay"):
        if key in group:
            value = group[key]
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def optimizer_check_callback(name: str, record: dict):
    """A TrainerCallback that, when training begins, finds the optimizer that really steps, records it in
    `record` and refuses to train with another class than `optimizer.name` asks for (with CPU offload,
    accelerate swaps a torch optimizer for DeepSpeedCPUAdam unless zero_force_ds_cpu_optimizer is false)."""
    from transformers import TrainerCallback

    class OptimizerCheck(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            built = stepping_optimizer(optimizer)
            record.update(describe_optimizer(built))
            if type(built).__name__ not in OPTIMIZER_CLASSES[name]:
                raise RuntimeError(
                    f"optimizer.name={name!r} asks for {'/'.join(OPTIMIZER_CLASSES[name])}, but {type(built).__name__} "
                    "steps the weights (with DeepSpeed's optimizer offload, set zero_force_ds_cpu_optimizer: false "
                    "in hardware.deepspeed to keep the recipe's optimizer)"
                )

    return OptimizerCheck()
