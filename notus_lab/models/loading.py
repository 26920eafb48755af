"""Model stage: the base checkpoint (base=tiny is built by notus_lab/models/tiny_base.py), policy, reference, adapters.

The same loaders serve the tiny CPU model and zephyr-7b-sft-full; only the path differs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from notus_lab.core.keys import file_chunks, streamed_key
from notus_lab.models.tiny_base import ZEPHYR_CHAT_TEMPLATE, build_tiny


def base_path(base_cfg) -> str:
    """A local dir or hub id to load the base from; base=tiny is built here on first use."""
    if base_cfg.name != "tiny":
        return base_cfg.name

    return str(build_tiny(base_cfg))


def resolved_revision(repo_id: str, revision: str | None) -> str:
    """The commit a hub revision (a branch, a tag, None for main) points to: from the local HF cache, else
    the hub's metadata; 'unresolved:<revision>' when neither answers (offline, nothing cached)."""
    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(cached, str):  # .../snapshots/<commit>/config.json
        return Path(cached).parent.name
    if not constants.HF_HUB_OFFLINE:
        try:
            from huggingface_hub import HfApi

            return HfApi().model_info(repo_id, revision=revision).sha
        except Exception:  # no network, no such repo: the run will say so when it loads
            pass
    return f"unresolved:{revision or 'main'}"


def fingerprint_base(path: str, revision: str | None = None) -> str:
    """Hash of the weights and tokenizer files of a local checkpoint; the hub id @ its resolved commit
    otherwise, so that cached reference log-probs are never reused across revisions of a base."""
    p = Path(path)
    if not p.is_dir():
        return f"hub:{path}@{resolved_revision(path, revision)}"
    files = [f for f in sorted(p.iterdir()) if f.suffix in (".safetensors", ".json") and f.is_file()]
    return streamed_key(part for f in files for part in (f.name, *file_chunks(f)))


def load_tokenizer(cfg, path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path, revision=cfg.base.revision, trust_remote_code=cfg.base.trust_remote_code
    )
    if tokenizer.chat_template is None:
        tokenizer.chat_template = ZEPHYR_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def sharded(cfg) -> bool:
    return cfg.hardware.distributed in ("deepspeed", "fsdp")


def quantization_config(cfg):
    """bitsandbytes settings. Under ZeRO-3 / FSDP the 4-bit weights are stored in the compute dtype
    (`bnb_4bit_quant_storage`), so the engine can shard them like every other parameter."""
    from transformers import BitsAndBytesConfig

    m = cfg.model
    if m.quantization == "4bit":
        compute = torch_dtype(cfg.hardware.precision)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=m.bnb_4bit_quant_type,
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=m.bnb_4bit_use_double_quant,
            bnb_4bit_quant_storage=compute if sharded(cfg) else torch.uint8,
        )
    if m.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def attention(hw) -> str:
    """The attention implementation to load: `auto` is flash-attention 2 where it can run (CUDA and the
    flash_attn package), SDPA elsewhere. The preflight refuses an explicit flash_attention_2 that cannot."""
    if hw.attn_implementation != "auto":
        return hw.attn_implementation
    import importlib.util

    usable = hw.device == "cuda" and torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
    return "flash_attention_2" if usable else "sdpa"


def weights_dtype(cfg, trainable: bool) -> torch.dtype:
    """The dtype the weights are loaded in. A trainable full policy stays fp32 unless DeepSpeed keeps the fp32
    master copy itself: the Trainer only autocasts, and at the recipes' lr of 5e-7 a bf16 weight cannot
    hold most updates (the nearest bf16 neighbour of 1.0 is 1/128 away). Frozen weights (the reference, a
    LoRA base) are loaded in the run's precision; LoRA adapters are created in fp32 by peft."""
    if trainable and cfg.model.adapter == "full" and cfg.hardware.distributed != "deepspeed":
        return torch.float32
    return torch_dtype(cfg.hardware.precision)


def load_causal_lm(cfg, path: str, quantized: bool, trainable: bool = False):
    from transformers import AutoModelForCausalLM

    kwargs = dict(
        revision=cfg.base.revision,
        trust_remote_code=cfg.base.trust_remote_code,
        dtype=weights_dtype(cfg, trainable),
        attn_implementation=attention(cfg.hardware),
        use_safetensors=True,
    )
    if quantized:
        kwargs["quantization_config"] = quantization_config(cfg)
        if cfg.hardware.device == "cuda" and not sharded(cfg):  # ZeRO-3 / FSDP place the shards themselves
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def load_models(cfg, path: str):
    """(policy, reference or None, peft_config or None).

    Full fine-tuning gets an EXPLICIT reference loaded from the same checkpoint: left to itself TRL
    reloads one from the model's name_or_path. With LoRA the reference is the base with adapters
    disabled, which costs no extra memory.
    """
    m = cfg.model
    quantized = m.quantization != "none"
    policy = load_causal_lm(cfg, path, quantized, trainable=True)
    if m.adapter == "full":
        reference = load_causal_lm(cfg, path, quantized=False)
        reference.requires_grad_(False)
        return policy, reference, None
    from peft import prepare_model_for_kbit_training

    if quantized:
        policy = prepare_model_for_kbit_training(policy, use_gradient_checkpointing=cfg.hardware.gradient_checkpointing)
    return policy, None, lora_config(m)


def lora_config(m):
    """peft's LoraConfig for the `model` group's adapter settings."""
    from peft import LoraConfig

    return LoraConfig(
        r=m.lora_r,
        lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout,
        target_modules=list(m.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
