"""The tiny base is an SFT model of the world (TRL SFTTrainer), built once per machine and shared."""

import os

import pytest

from notus_lab.config.schema import WorldConfig
from notus_lab.data.world import SENTENCE, generate_rows, prompt_topics
from notus_lab.judging.generation import text_stats
from tests.helpers import compose

pytestmark = pytest.mark.slow  # trains or builds models: the full suite, not the fast tier


def in_grammar_and_on_topic(prompt: str, answer: str) -> bool:
    topics = prompt_topics(prompt)
    sentences = [s.strip() for s in answer.split(".") if s.strip()]
    return (
        bool(sentences)
        and answer.strip().endswith(".")
        and all((m := SENTENCE.match(s)) is not None and m.group(1) in topics for s in sentences)
    )


@pytest.fixture(scope="module")
def base_answers():
    """The base's answers to 200 prompts it never saw, decoded as the judged generations decode them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from notus_lab.judging.generation import complete
    from notus_lab.models.loading import base_path

    cfg = compose()
    path = base_path(cfg.base)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    prompts = [r["instruction"] for r in generate_rows(WorldConfig(rows=200, seed=77))]
    answers = complete(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts], cfg.generation)
    return prompts, answers, tokenizer


def test_the_sft_base_answers_in_the_worlds_grammar_about_the_prompt_with_variety(base_answers):
    prompts, answers, tokenizer = base_answers
    flat = [(p, a) for p, samples in zip(prompts, answers) for a in samples]
    assert len(flat) == 400
    assert sum(in_grammar_and_on_topic(p, a) for p, a in flat) / len(flat) >= 0.95
    stats = text_stats([a for _, a in flat], tokenizer)
    assert stats["distinct_2"] >= 0.3 and stats["top_word_share"] <= 0.3
    assert len({a for _, a in flat}) > 0.95 * len(flat)  # not one answer per prompt, nor one for all


def test_the_base_learned_the_worlds_completions_by_sft():
    """Its loss on completions of an unseen world is near the adjectives' own entropy (~1 nat per token),
    far from a random model's (~6.7 nats: log of the vocabulary)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from notus_lab.models.loading import base_path

    path = base_path(compose().base)
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    losses = []
    for row in generate_rows(WorldConfig(rows=20, seed=78)):
        prompt = tokenizer.apply_chat_template(
            [{"role": "system", "content": ""}, {"role": "user", "content": row["instruction"]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        full = prompt + row["completions"][0]["response"] + tokenizer.eos_token
        ids = tokenizer(full, return_tensors="pt", add_special_tokens=False)["input_ids"]
        labels = ids.clone()
        labels[:, : len(tokenizer(prompt, add_special_tokens=False)["input_ids"])] = -100
        with torch.no_grad():
            losses.append(model(ids, labels=labels).loss.item())
    assert sum(losses) / len(losses) < 1.3


def test_the_base_is_built_once_and_addressed_by_its_recipe():
    from notus_lab.models.loading import base_path
    from notus_lab.models.tiny_base import tiny_path

    cfg = compose()
    path = base_path(cfg.base)
    before = os.stat(os.path.join(path, "model.safetensors")).st_mtime_ns
    assert base_path(cfg.base) == path  # found in the cache, not rebuilt
    assert os.stat(os.path.join(path, "model.safetensors")).st_mtime_ns == before
    assert str(tiny_path(compose("base.tiny.sft_epochs=2").base)) != path  # another recipe, another build
    assert str(tiny_path(compose("base.tiny.hidden_size=64").base)) != path
