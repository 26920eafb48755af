"""The recipe experiments compose to the exact values of FIELD-NOTES §3."""

import pytest

from notus_lab.config import gradient_accumulation_steps
from notus_lab.preflight import validate

from conftest import compose

TABLE = {  # beta, lr, schedule, warmup, epochs, optim, global batch, data, adapter, lora r/alpha/dropout
    "notus_7b_v1": (0.1, 5e-7, "linear", 0.1, 3, "rmsprop", 64, "mean_rating", "full", None),
    "notus_7b_v1_lora": (0.1, 5e-7, "linear", 0.1, 3, "rmsprop", 512, "mean_rating", "lora", (64, 16, 0.1)),
    "zephyr_7b_beta": (0.1, 5e-7, "linear", 0.1, 3, "rmsprop", 64, "critique", "full", None),
    "handbook_2024": (0.01, 5e-7, "cosine", 0.1, 1, "adamw_torch", 128, "critique", "full", None),
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_recipe_matches_the_field_notes(name):
    beta, lr, sched, warmup, epochs, optim, batch, data, adapter, lora = TABLE[name]
    cfg = compose(f"+experiment={name}")
    validate(cfg)
    assert (cfg.beta, cfg.optimizer.lr, cfg.optimizer.scheduler, cfg.optimizer.warmup_ratio) == (beta, lr, sched, warmup)
    assert (cfg.train.epochs, cfg.optimizer.name, cfg.train.global_batch_size) == (epochs, optim, batch)
    assert (cfg.data.strategy, cfg.model.adapter) == (data, adapter)
    assert (cfg.train.max_length, cfg.train.max_prompt_length, cfg.train.seed) == (1024, 512, 42)
    assert cfg.base.name == "alignment-handbook/zephyr-7b-sft-full"
    assert (cfg.hardware.precision, cfg.hardware.gradient_checkpointing) == ("bf16", True)
    if lora:
        assert (cfg.model.lora_r, cfg.model.lora_alpha, cfg.model.lora_dropout) == lora
        assert gradient_accumulation_steps(cfg) == 512 // 2  # on one GPU; 32 on 8, as Notus ran it
    if data == "critique":
        assert cfg.data.tie_policy == "keep"


def test_hardware_override_keeps_the_recipe_science():
    gpu, cpu = compose("+experiment=notus_7b_v1"), compose("+experiment=notus_7b_v1", "hardware=cpu")
    assert cpu.hardware.device == "cpu" and cpu.train == gpu.train and cpu.optimizer == gpu.optimizer


def test_critique_vs_rating_is_one_study_on_one_held_out_set_and_one_budget():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose("+experiment=critique_vs_rating", return_hydra=True)
    params = {k: [str(v) for v in OverridesParser.create().parse_override(f"{k}={v}").sweep_iterator()]
              for k, v in cfg.hydra.sweeper.params.items()}
    assert params == {"data": ["critique_fixed", "critique_curated", "mean_rating"], "beta": ["0.01", "0.1"],
                      "train.seed": ["1", "2", "3"]}
    arms = [compose("+experiment=critique_vs_rating", f"data={d}", f"beta={b}", f"train.seed={s}")
            for d in params["data"] for b in params["beta"] for s in params["train.seed"]]
    for arm in arms:
        validate(arm)
        assert (arm.data.test_size, arm.data.split_seed) == (arms[0].data.test_size, arms[0].data.split_seed)
        assert arm.train.max_steps == 250 and arm.train.global_batch_size == 32  # the shared budget
        assert arm.data.seed == arm.train.seed and arm.sweep_name == "critique_vs_rating"
        assert list(arm.eval.signals) == ["critique", "critique_fixed", "critique_curated", "mean_rating"]
    fixed = next(a for a in arms if a.data.strategy == "critique" and a.data.vintage == "fixed")
    assert fixed.data.tie_policy == "keep"  # Zephyr's rule on the repaired scores
    assert {a.base.name for a in arms} == {"tiny"} and {a.hardware.name for a in arms} == {"cpu"}
