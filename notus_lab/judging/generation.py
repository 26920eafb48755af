"""Generation: a trained policy and its reference answer chat prompts, batched by prompt length with a KV
cache on the run's device and precision, the same seeded decoding for both. Judged generations (head_to_head.py)
and the benchmark answer files (benchmarks.py) are made with it."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from notus_lab.core import chat
from notus_lab.core.cache import build_once
from notus_lab.core.keys import content_key
from notus_lab.models.tiny_base import cache_root


def device_for(cfg) -> str:
    """The run's device: its own GPU under a multi-process launch, the CPU otherwise."""
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cfg.hardware.device == "cuda" else "cpu"


def load_policy(cfg, model_dir: Path, base: str):
    """(policy, tokenizer) as trained, on the run's device and precision: the full model, or the base
    (quantized as in training) with the LoRA adapter on top."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from notus_lab.models.loading import attention, load_causal_lm, torch_dtype

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"  # decoder-only batches are padded on the left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = device_for(cfg)
    if (model_dir / "adapter_config.json").exists():
        from peft import PeftModel

        quantized = cfg.model.quantization != "none"
        base_model = load_causal_lm(cfg, base, quantized)
        if not quantized:
            base_model = base_model.to(device)
        policy = PeftModel.from_pretrained(base_model, str(model_dir))
    else:
        policy = AutoModelForCausalLM.from_pretrained(
            model_dir,
            dtype=torch_dtype(cfg.hardware.precision),
            attn_implementation=attention(cfg.hardware),
            use_safetensors=True,
        ).to(device)
    return policy.eval(), tokenizer


@contextmanager
def reference_of(cfg, policy, base: str):
    """The policy's DPO reference: the same model with its adapter off (LoRA), or the SFT base (full)."""
    if hasattr(policy, "disable_adapter"):
        with policy.disable_adapter():
            yield policy
        return
    from notus_lab.models.loading import load_causal_lm

    reference = load_causal_lm(cfg, base, quantized=False).to(policy.device).eval()
    try:
        yield reference
    finally:
        del reference


def complete(model, tokenizer, conversations: list[list[dict]], g) -> list[list[str]]:
    """`g.samples_per_prompt` answers (one when greedy) per chat conversation, in the base's own chat template
    with an empty system turn (Zephyr's `<|system|>\n</s>`). Batched by prompt length, so that a batch is not
    padded to the longest prompt of the set, KV-cached; each batch's sampling seed is fixed, so a policy and
    its reference draw with the same random numbers. Answers come back in the conversations' order."""
    import torch

    n = g.samples_per_prompt if g.do_sample else 1
    sampling = dict(do_sample=True, temperature=g.temperature, top_p=g.top_p) if g.do_sample else dict(do_sample=False)
    texts = [
        tokenizer.apply_chat_template(chat.opening(c), tokenize=False, add_generation_prompt=True)
        for c in conversations
    ]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda k: lengths[k])
    out = [None] * len(texts)
    for b, i in enumerate(range(0, len(order), g.batch_size)):
        batch = order[i : i + g.batch_size]
        enc = tokenizer([texts[k] for k in batch], return_tensors="pt", padding=True, add_special_tokens=False).to(
            model.device
        )
        torch.manual_seed(g.seed + b)
        with torch.inference_mode():
            ids = model.generate(
                **enc,
                max_new_tokens=g.max_new_tokens,
                num_return_sequences=n,
                use_cache=True,
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
            )
        answers = [
            t.strip() for t in tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        ]
        for j, k in enumerate(batch):
            out[k] = answers[j * n : (j + 1) * n]
    return out


def answer_prompts(
    cfg, model_dir: Path, base: str, prompts: list[str], base_fingerprint: str | None = None
) -> tuple[list[list[str]], list[list[str]], object]:
    """(policy answers, reference answers, tokenizer) for single-turn prompts, same decoding for both.
    With the base's fingerprint, the reference's answers are cached: every arm of a study that shares the
    base, the prompts and the decoding gets the same ones, computed once."""
    policy, tokenizer = load_policy(cfg, model_dir, base)
    chats = [[chat.message("user", p)] for p in prompts]
    policy_answers = complete(policy, tokenizer, chats, cfg.generation)

    def reference_answers() -> list[list[str]]:
        with reference_of(cfg, policy, base) as reference:
            return complete(reference, tokenizer, chats, cfg.generation)

    if base_fingerprint is None:
        return policy_answers, reference_answers(), tokenizer
    target = cache_root(cfg.base) / "reference_answers" / reference_key(cfg, base_fingerprint, prompts, tokenizer)
    build_once(target, "answers.json", lambda tmp: (tmp / "answers.json").write_text(json.dumps(reference_answers())))
    return policy_answers, json.loads((target / "answers.json").read_text()), tokenizer


def reference_key(cfg, base_fingerprint: str, prompts: list[str], tokenizer) -> str:
    """Everything the reference's answers depend on: the base as the reference holds it (quantized under
    QLoRA), its precision, attention and device, the prompts in the chat template, the decoding, the versions."""
    from importlib.metadata import version

    from notus_lab.models.loading import attention

    m, g, hw = cfg.model, cfg.generation, cfg.hardware
    held_as = (
        f"{m.adapter}|{m.quantization}|{m.bnb_4bit_quant_type}|{m.bnb_4bit_use_double_quant}"
        if m.adapter == "lora"
        else "full"
    )
    parts = [
        base_fingerprint,
        held_as,
        hw.precision,
        attention(hw),
        hw.device,
        str(tokenizer.chat_template),
        json.dumps(
            {
                k: g[k]
                for k in (
                    "samples_per_prompt",
                    "do_sample",
                    "temperature",
                    "top_p",
                    "max_new_tokens",
                    "batch_size",
                    "seed",
                )
            }
        ),
        version("torch"),
        version("transformers"),
        *prompts,
    ]
    return content_key(*parts, length=24)


def text_stats(answers: list[str], tokenizer) -> dict:
    """Degeneration diagnostics of a set of answers: distinct-2 (unique word bigrams over bigrams, per answer,
    averaged; an answer of fewer than two words counts 0), mean length in model tokens, and the share of all
    words taken by the most frequent one."""
    from collections import Counter

    distinct, words = [], Counter()
    for a in answers:
        w = a.split()
        words.update(w)
        bigrams = list(zip(w, w[1:]))
        distinct.append(len(set(bigrams)) / len(bigrams) if bigrams else 0.0)
    lengths = [len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]] if answers else [0]
    total = sum(words.values())
    return {
        "distinct_2": round(sum(distinct) / max(len(distinct), 1), 4),
        "mean_tokens": round(sum(lengths) / len(lengths), 2),
        "top_word_share": round(words.most_common(1)[0][1] / total, 4) if total else 1.0,
    }
