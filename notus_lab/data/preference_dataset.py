"""Pairs as the `datasets.Dataset` TRL trains on, saved under a content key so arms that share pairs
share the tokenized set and its precomputed reference log-probs."""

from __future__ import annotations

import os
from pathlib import Path

from notus_lab.core import chat, keys
from notus_lab.core.cache import build_once


def truncated_prompts(pairs: list[dict], tokenizer, max_prompt_length: int, max_length: int | None) -> list[str]:
    """The recipes' rule (TRL 0.7, which Zephyr and Notus trained with; truncation_mode keep_end): a prompt
    keeps its last `max_prompt_length` tokens only when prompt + the longer answer exceed `max_length`; a
    long prompt with short answers is kept whole. (TRL 1.x dropped max_prompt_length.)"""
    prompts = [p["prompt"] for p in pairs]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    if max_length is None:
        longer = [0] * len(pairs)
    else:
        chosen = tokenizer([p["chosen"] for p in pairs], add_special_tokens=False)["input_ids"]
        rejected = tokenizer([p["rejected"] for p in pairs], add_special_tokens=False)["input_ids"]
        longer = [max(len(c), len(r)) for c, r in zip(chosen, rejected)]
    return [
        tokenizer.decode(ids[-max_prompt_length:])
        if len(ids) > max_prompt_length and (max_length is None or len(ids) + n > max_length)
        else p
        for p, ids, n in zip(prompts, prompt_ids, longer)
    ]


def to_preference_dataset(pairs: list[dict], tokenizer, max_prompt_length: int, max_length: int | None = None):
    """TRL's conversational preference format, prompts truncated by the recipes' rule (truncated_prompts)."""
    import datasets

    prompts = truncated_prompts(pairs, tokenizer, max_prompt_length, max_length)
    return datasets.Dataset.from_dict(
        {
            "prompt": [chat.prompt_messages(p) for p in prompts],
            "chosen": [chat.answer(p["chosen"]) for p in pairs],
            "rejected": [chat.answer(p["rejected"]) for p in pairs],
        }
    )


def reference_key(
    pairs: list[dict],
    tokenizer,
    max_prompt_length: int,
    max_length: int | None,
    *,
    base: str,
    precision: str,
    attention: str,
    quantization: str,
    trl: str,
) -> str:
    """The key of a set of pairs as TRL tokenizes them and of the reference log-probs it precomputes on them:
    everything they depend on, listed here and nowhere else. The pairs, the tokenizer (vocabulary and chat
    template), the prompt truncation and max_length, the base's fingerprint (weights, or hub id @ commit), the
    precision, the attention implementation, the base's quantization, and TRL's version (its tokenization)."""
    vocabulary = tokenizer.backend_tokenizer.to_str() if hasattr(tokenizer, "backend_tokenizer") else ""
    return keys.content_key(
        vocabulary,
        str(getattr(tokenizer, "chat_template", "")),
        max_prompt_length,
        max_length,
        base,
        precision,
        attention,
        quantization,
        trl,
        [[p["prompt"], p["chosen"], p["rejected"]] for p in pairs],
        length=20,
    )


def cached_preference_dataset(
    pairs: list[dict], tokenizer, max_prompt_length: int, max_length: int | None, cache_dir: Path, **depends
):
    """`to_preference_dataset`, saved once under `reference_key` (`depends`: its keyword arguments). Loaded from
    disk, the dataset has cache files and a stable fingerprint, so TRL's tokenization and its precomputed
    reference log-probs are computed once and reused by every arm that shares the key (a beta, loss, seed or
    optimizer sweep) and never by one that does not."""
    import datasets

    key = reference_key(pairs, tokenizer, max_prompt_length, max_length, **depends)
    target = Path(os.path.expanduser(cache_dir)) / key
    build_once(
        target,
        "dataset_info.json",
        lambda tmp: to_preference_dataset(pairs, tokenizer, max_prompt_length, max_length).save_to_disk(str(tmp)),
    )
    return datasets.load_from_disk(str(target))
