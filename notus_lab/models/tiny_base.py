"""The tiny base (base=tiny): an SFT model of the bundled world, built on this machine.

Notus and Zephyr are dSFT -> dDPO: DPO starts from zephyr-7b-sft-full, distilled from UltraChat. The tiny
base is made the same way, small: a BPE tokenizer trained on the world's words, a Mistral-architecture
model of under a million parameters, and supervised fine-tuning with TRL's `SFTTrainer` on the world's
conversations (prompts with completions of mixed quality, none of them from the study's rows). The result
answers world prompts in the world's grammar, about the prompt's topics, with the mixed quality of its
teachers, so DPO has something to improve and judged generations mean something.

Built once per machine (about two minutes on 2 cores) into ~/.cache/notus_lab (or $NOTUS_LAB_CACHE):
content-addressed by the shape, the SFT recipe and the world's text, written beside its target and renamed
into place (a reader never sees half a model), and built by one process while the others wait for it.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

from notus_lab.config.schema import WorldConfig
from notus_lab.core import chat, keys
from notus_lab.core.cache import build_once
from notus_lab.data.world import RESPONSE_SENTENCES, generate_rows, vocabulary_text

log = logging.getLogger("notus_lab")


# Zephyr's template: "<|system|>\n</s>\n<|user|>\n{instruction}</s>\n<|assistant|>\n" + "{response}</s>\n"
ZEPHYR_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


BUILDER_VERSION = 2  # bump when the recipe below changes in a way the spec does not capture


SFT_WORLD_SEED = 1_000_003  # the SFT conversations: a world of its own, never the study's rows


def cache_root(base_cfg) -> Path:
    return keys.cache_root(base_cfg.cache_dir)


def tiny_path(base_cfg) -> Path:
    """Content-addressed: another shape, SFT recipe or world text never reuses an old build."""

    sample = next(generate_rows(WorldConfig(rows=1, seed=SFT_WORLD_SEED)))  # the world's text generator, by example
    spec = keys.content_key(
        {
            "tiny": dict(base_cfg.tiny),
            "text": vocabulary_text(),
            "sample": sample["completions"][0]["response"],
            "sentences": RESPONSE_SENTENCES,
            "v": BUILDER_VERSION,
        },
        length=12,
    )
    return cache_root(base_cfg) / f"tiny-{spec}"


def build_tokenizer(vocab_size: int):
    """A byte-level BPE over the world's words, with the Zephyr chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([vocabulary_text()] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    tokenizer.chat_template = ZEPHYR_CHAT_TEMPLATE
    return tokenizer


def sft_conversations(tiny) -> list[dict]:
    """TRL's conversational prompt-completion rows: `sft_completions_per_prompt` random completions of
    each prompt of a world of `sft_rows` rows (their own seed), so the base learns from mixed teachers."""

    rng = random.Random(tiny.seed)
    out = []
    for row in generate_rows(WorldConfig(rows=tiny.sft_rows, seed=SFT_WORLD_SEED)):
        for c in rng.sample(row["completions"], tiny.sft_completions_per_prompt):
            out.append(
                {
                    "prompt": chat.prompt_messages(row["instruction"]),
                    "completion": chat.answer(c["response"]),
                }
            )
    return out


def _sft(tiny, tokenizer, out_dir: Path):
    """Random init -> SFT with TRL (loss on the completions only); returns the trained model."""
    import datasets
    import torch
    from transformers import MistralConfig, MistralForCausalLM
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(tiny.seed)
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=tiny.num_attention_heads,
        num_key_value_heads=tiny.num_key_value_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = MistralForCausalLM(config)
    if tiny.sft_epochs == 0:  # a random base, on purpose (what DPO without SFT does: it collapses)
        return model
    args = SFTConfig(
        output_dir=str(out_dir / "sft"),
        num_train_epochs=tiny.sft_epochs,
        per_device_train_batch_size=64,
        learning_rate=tiny.sft_lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.0,
        seed=tiny.seed,
        max_length=256,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        save_strategy="no",
        report_to=[],
        logging_steps=25,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=datasets.Dataset.from_list(sft_conversations(tiny)),
    )
    trainer.train()
    last = next((h for h in reversed(trainer.state.log_history) if "mean_token_accuracy" in h), {})
    log.info(
        "tiny base SFT: loss %.3f, token accuracy %.3f",
        last.get("loss", float("nan")),
        last.get("mean_token_accuracy", float("nan")),
    )
    shutil.rmtree(out_dir / "sft", ignore_errors=True)
    return trainer.model


def build_tiny(base_cfg) -> Path:
    """The tiny SFT base: built once, then found in the cache."""
    target = tiny_path(base_cfg)

    def build(tmp: Path) -> None:
        log.info("building the tiny SFT base once into %s (about two minutes on 2 cores)", target)
        tokenizer = build_tokenizer(base_cfg.tiny.vocab_size)
        model = _sft(base_cfg.tiny, tokenizer, tmp)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return build_once(target, "model.safetensors", build)
