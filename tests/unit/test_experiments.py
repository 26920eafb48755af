"""The recipe experiments reach TRL as the published recipes say: the DPOConfig each one builds (what the Trainer
receives), against the recipes' own sources:
- Zephyr 7B beta: alignment-handbook `recipes/zephyr-7b-beta/dpo/config_full.yaml` (Nov 2023);
- Notus 7B v1 (full and LoRA): the argilla/notus-7b-v1 model card and argilla-io/notus's training configs;
- handbook 2024: alignment-handbook's `recipes/zephyr-7b-beta/dpo/config_full.yaml` after its 2024 update, and
  `config_qlora.yaml` for the QLoRA one.
The GPU profiles are rehearsed with their device set to CPU: nothing of the science depends on it."""

from pathlib import Path

import pytest

from notus_lab.config.validate import validate
from tests.helpers import compose

# beta, learning rate, schedule, warmup, epochs, optimizer, global batch (per device x accumulation x GPUs as
# published), max_length, seed; the binarization and adapter; LoRA r / alpha / dropout
RECIPES = {
    "zephyr_7b_beta": (0.1, 5e-7, "linear", 0.1, 3, "rmsprop", 8 * 1 * 8, 1024, 42, "prebinarized", "full", None),
    "notus_7b_v1": (0.1, 5e-7, "linear", 0.1, 3, "rmsprop", 8 * 1 * 8, 1024, 42, "prebinarized", "full", None),
    "notus_7b_v1_lora": (
        0.1,
        5e-7,
        "linear",
        0.1,
        3,
        "rmsprop",
        2 * 32 * 8,
        1024,
        42,
        "prebinarized",
        "lora",
        (64, 16, 0.1),
    ),
    "handbook_2024": (0.01, 5e-7, "cosine", 0.1, 1, "adamw_torch", 8 * 2 * 8, 1024, 42, "critique", "full", None),
    "handbook_qlora": (
        0.01,
        5e-6,
        "cosine",
        0.1,
        1,
        "paged_adamw_32bit",
        4 * 4 * 1,
        1024,
        42,
        "critique",
        "lora",
        (128, 128, 0.05),
    ),  # adapter "lora" over a 4-bit base
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_recipe_reaches_the_trainer_as_published(name, tmp_path):
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from notus_lab.train.trainer import dpo_config

    beta, lr, sched, warmup, epochs, optim, batch, max_length, seed, data, adapter, lora = RECIPES[name]
    validate(compose(f"+experiment={name}"))  # fits the hardware it names (the memory preflight included)
    cfg = compose(f"+experiment={name}", "hardware.device=cpu", "hardware.attn_implementation=sdpa")
    try:
        args = dpo_config(cfg, Path(tmp_path), [])
    finally:
        unset_hf_deepspeed_config()
    assert (args.beta, args.learning_rate, args.lr_scheduler_type.value, args.warmup_steps) == (beta, lr, sched, warmup)
    assert (args.num_train_epochs, args.optim.value, args.max_length, args.seed) == (epochs, optim, max_length, seed)
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * cfg.hardware.num_processes == batch
    assert (args.bf16, args.gradient_checkpointing) == (True, True)
    assert (cfg.data.strategy, cfg.model.adapter, cfg.base.name) == (
        data,
        adapter,
        "alignment-handbook/zephyr-7b-sft-full",
    )
    if lora:
        assert (cfg.model.lora_r, cfg.model.lora_alpha, cfg.model.lora_dropout) == lora
    if name in PUBLISHED:  # the set the model was trained on, as published
        assert (cfg.data.source, cfg.data.split, cfg.data.test_size) == (*PUBLISHED[name], 2000)


PUBLISHED = {
    "notus_7b_v1": ("argilla/ultrafeedback-binarized-preferences", "train"),
    "notus_7b_v1_lora": ("argilla/ultrafeedback-binarized-preferences", "train"),
    "zephyr_7b_beta": ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs"),
}


def test_hardware_override_keeps_the_recipe_science():
    gpu, cpu = compose("+experiment=notus_7b_v1"), compose("+experiment=notus_7b_v1", "hardware=cpu")
    assert cpu.hardware.device == "cpu" and cpu.train == gpu.train and cpu.optimizer == gpu.optimizer


def test_critique_vs_rating_is_one_study_on_one_held_out_set_and_one_budget():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose("+experiment=critique_vs_rating", return_hydra=True)
    params = {
        k: [str(v) for v in OverridesParser.create().parse_override(f"{k}={v}").sweep_iterator()]
        for k, v in cfg.hydra.sweeper.params.items()
    }
    assert params == {
        "data": ["critique_fixed", "critique_curated", "mean_rating"],
        "beta": ["0.01", "0.1"],
        "train.seed": ["1", "2", "3"],
    }
    arms = [
        compose("+experiment=critique_vs_rating", f"data={d}", f"beta={b}", f"train.seed={s}")
        for d in params["data"]
        for b in params["beta"]
        for s in params["train.seed"]
    ]
    for arm in arms:
        validate(arm)
        assert (arm.data.test_size, arm.data.split_seed) == (arms[0].data.test_size, arms[0].data.split_seed)
        assert arm.train.max_steps == 250 and arm.train.global_batch_size == 32  # the shared budget
        assert arm.data.seed == arm.train.seed and arm.sweep_name == "critique_vs_rating"
        assert list(arm.eval.signals) == ["critique", "critique_fixed", "critique_curated", "mean_rating"]
    fixed = next(a for a in arms if a.data.strategy == "critique" and a.data.vintage == "fixed")
    assert fixed.data.tie_policy == "keep"  # Zephyr's rule on the repaired scores
    assert {a.base.name for a in arms} == {"tiny"} and {a.hardware.name for a in arms} == {"cpu"}


def test_the_7b_study_builds_the_notus_recipe_on_the_hardware_the_user_picks(tmp_path):
    """What the Trainer receives and what it builds from it (optimizer, scheduler), not the YAML restated.
    The GPU profile is rehearsed with its device set to CPU: nothing of the science depends on it."""
    import torch
    from transformers import Trainer, get_scheduler
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from notus_lab.train.trainer import dpo_config

    cfg = compose("+experiment=critique_vs_rating_7b", "hardware=a100_40gb_x8")
    validate(cfg)  # the memory preflight included: it fits 8 x A100-40GB as Notus ran it
    assert (cfg.data.source, cfg.data.test_size, cfg.data.split_seed, cfg.base.name) == (
        "openbmb/UltraFeedback",
        2000,
        42,
        "alignment-handbook/zephyr-7b-sft-full",
    )
    rehearsal = compose(
        "+experiment=critique_vs_rating_7b",
        "hardware=a100_40gb_x8",
        "hardware.device=cpu",
        "hardware.attn_implementation=sdpa",
    )
    try:
        args = dpo_config(rehearsal, tmp_path, [])
        assert (args.beta, args.loss_type, args.max_length, args.max_steps, args.seed) == (
            0.1,
            ["sigmoid"],
            1024,
            2904,
            42,
        )
        assert args.per_device_train_batch_size * args.gradient_accumulation_steps * cfg.hardware.num_processes == 64
        assert (args.eval_strategy.value, args.eval_steps, args.bf16) == ("steps", 500, True)
        assert (
            args.deepspeed["zero_optimization"]["stage"] == 3 and args.deepspeed["zero_force_ds_cpu_optimizer"] is False
        )
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
        assert optimizer_cls is torch.optim.RMSprop and kwargs["lr"] == 5e-7
        optimizer = optimizer_cls([torch.nn.Parameter(torch.zeros(1))], **kwargs)
        warmup = args.get_warmup_steps(args.max_steps)
        assert warmup == 291  # 10 % of the budget
        scheduler = get_scheduler(
            args.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=args.max_steps
        )
        lrs = []
        for _ in range(args.max_steps):
            lrs.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        assert lrs[0] == 0 and max(lrs) == pytest.approx(5e-7) and lrs.index(max(lrs)) == warmup
        assert lrs[-1] < 1e-9 and lrs[(warmup + args.max_steps) // 2] == pytest.approx(2.5e-7, rel=0.01)  # linear decay
    finally:
        unset_hf_deepspeed_config()  # no zero.Init for the rest of this test process
    arms = [
        compose("+experiment=critique_vs_rating_7b", "hardware=h100_x8", f"data={d}", f"train.seed={s}")
        for d in ("critique_fixed", "mean_rating")
        for s in (1, 2)
    ]
    assert {(a.data.strategy, a.data.vintage, a.data.seed) for a in arms} == {
        ("critique", "fixed", 1),
        ("critique", "fixed", 2),
        ("mean_rating", "as_is", 1),
        ("mean_rating", "as_is", 2),
    }


def test_the_7b_study_asks_for_a_hardware_choice_in_one_line():
    from notus_lab.config.compose import preflight
    from notus_lab.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^hardware=\?\?\? is invalid: allowed one of a100_40gb_x8, "):
        preflight(["+experiment=critique_vs_rating_7b"])
