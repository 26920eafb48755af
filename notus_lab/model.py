"""Model stage: the base checkpoint (built locally for base=tiny), policy, reference, adapters.

The same loaders serve the tiny CPU model and zephyr-7b-sft-full; only the path differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

# Zephyr's template: "<|system|>\n</s>\n<|user|>\n{instruction}</s>\n<|assistant|>\n" + "{response}</s>\n"
ZEPHYR_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
TINY_BUILDER_VERSION = 1  # bump when the tiny model or tokenizer recipe changes


def cache_root(base_cfg) -> Path:
    root = base_cfg.cache_dir or os.environ.get("NOTUS_LAB_CACHE") or "~/.cache/notus_lab"
    return Path(os.path.expanduser(root))


def tiny_path(base_cfg) -> Path:
    """Content-addressed: a different shape or vocabulary never reuses an old build."""
    from notus_lab.world import vocabulary_text

    spec = json.dumps({"shape": dict(base_cfg.tiny), "text": vocabulary_text(), "v": TINY_BUILDER_VERSION},
                      sort_keys=True)
    return cache_root(base_cfg) / f"tiny-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


def build_tiny(base_cfg) -> Path:
    """Build (once) a small Mistral-architecture model and a BPE tokenizer trained on the world's text."""
    target = tiny_path(base_cfg)
    if (target / "model.safetensors").exists():
        return target
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    from notus_lab.world import vocabulary_text

    shape = base_cfg.tiny
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=shape.vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([vocabulary_text()] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>")
    tokenizer.chat_template = ZEPHYR_CHAT_TEMPLATE

    torch.manual_seed(shape.seed)
    config = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = MistralForCausalLM(config)
    # build beside the target and rename: concurrent sweep jobs never see a half-written model
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another process won the race; its build is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def base_path(base_cfg) -> str:
    return str(build_tiny(base_cfg)) if base_cfg.name == "tiny" else base_cfg.name


def fingerprint_base(path: str) -> str:
    """Hash of the weights and tokenizer files of a local checkpoint; the hub id + revision otherwise."""
    p = Path(path)
    if not p.is_dir():
        return f"hub:{path}"
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if f.suffix in (".safetensors", ".json") and f.is_file():
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def load_tokenizer(cfg, path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, revision=cfg.base.revision,
                                              trust_remote_code=cfg.base.trust_remote_code)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = ZEPHYR_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(precision: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def quantization_config(cfg):
    from transformers import BitsAndBytesConfig

    m = cfg.model
    if m.quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=m.bnb_4bit_quant_type,
                                  bnb_4bit_compute_dtype=torch_dtype(cfg.hardware.precision),
                                  bnb_4bit_use_double_quant=m.bnb_4bit_use_double_quant)
    if m.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_causal_lm(cfg, path: str, quantized: bool):
    from transformers import AutoModelForCausalLM

    kwargs = dict(revision=cfg.base.revision, trust_remote_code=cfg.base.trust_remote_code,
                  dtype=torch_dtype(cfg.hardware.precision), attn_implementation=cfg.hardware.attn_implementation,
                  use_safetensors=True)
    if quantized:
        kwargs["quantization_config"] = quantization_config(cfg)
        if cfg.hardware.device == "cuda":
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
    policy = load_causal_lm(cfg, path, quantized)
    if m.adapter == "full":
        reference = load_causal_lm(cfg, path, quantized=False)
        reference.requires_grad_(False)
        return policy, reference, None
    from peft import LoraConfig, prepare_model_for_kbit_training

    if quantized:
        policy = prepare_model_for_kbit_training(
            policy, use_gradient_checkpointing=cfg.hardware.gradient_checkpointing)
    peft_config = LoraConfig(r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout,
                             target_modules=list(m.lora_target_modules), bias="none", task_type="CAUSAL_LM")
    return policy, None, peft_config
