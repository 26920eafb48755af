"""The memory preflight: known cases of the 7B recipes, decided before anything loads."""

import pytest

from notus_lab import memory
from notus_lab.config import ConfigError
from notus_lab.preflight import validate

from conftest import cli, compose


def test_notus_full_fits_eight_a100_40gb_with_zero3_offload_as_notus_ran_it():
    cfg = compose("+experiment=notus_7b_v1")
    assert cfg.hardware.name == "a100_40gb_x8" and cfg.hardware.gpu_memory_gb == 40
    need = memory.estimate(cfg)
    assert need["total"] < 40 and need["optimizer"] == 0 and need["gradients"] == 0  # offloaded to CPU
    validate(cfg)
    # without the offload the same 8 x 40 GB still shard everything eight ways, but hold the optimizer
    no_offload = memory.estimate(compose("+experiment=notus_7b_v1", "hardware=a100_80gb_x8"))
    assert no_offload["optimizer"] > 5 and no_offload["weights"] == pytest.approx(7.24e9 * 2 / 8 / 2**30, abs=0.1)


def test_a_full_7b_on_one_80gb_gpu_does_not_fit_and_the_error_says_what_would():
    cfg = compose("+experiment=notus_7b_v1", "hardware=gpu")
    need = memory.estimate(cfg)
    # fp32 master weights + fp32 gradients + RMSprop state + a bf16 reference: ~100 GB before activations
    assert need["weights"] == need["gradients"] == need["optimizer"] == pytest.approx(7.24e9 * 4 / 2**30, abs=0.1)
    assert need["total"] > 80
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    line = str(err.value)
    assert "\n" not in line and line.startswith("hardware.gpu_memory_gb=80 is invalid: full fine-tuning of "
                                                "alignment-handbook/zephyr-7b-sft-full on hardware=gpu needs ~")
    assert "model=lora (~" in line and "model=qlora (~" in line and "hardware=a100_40gb_x8 (~" in line


def test_the_handbook_qlora_recipe_fits_one_gpu():
    cfg = compose("+experiment=handbook_qlora")
    need = memory.estimate(cfg)
    assert cfg.hardware.num_processes == 1 and need["total"] < 24  # fits a 24 GB card, let alone 80 GB
    assert need["reference"] == 0 and need["weights"] < 7.24e9 * 0.6 / 2**30 + 2  # 4-bit base + fp32 adapters
    validate(cfg)


def test_the_estimate_follows_batch_length_and_checkpointing():
    base = memory.estimate(compose("+experiment=notus_7b_v1", "hardware=h100_x8"))
    longer = memory.estimate(compose("+experiment=notus_7b_v1", "hardware=h100_x8", "train.max_length=2048",
                                     "train.max_prompt_length=512"))
    no_ckpt = memory.estimate(compose("+experiment=notus_7b_v1", "hardware=h100_x8", "hardware.gradient_checkpointing=false"))
    assert longer["activations"] == pytest.approx(2 * base["activations"], rel=0.01) and longer["logits"] == 2 * base["logits"]
    assert no_ckpt["activations"] > 5 * base["activations"]
    assert memory.estimate(compose("+experiment=notus_7b_v1", "hardware=h100_x8", "train.precompute_reference=true"))["reference"] == 0


def test_the_cli_refuses_a_run_that_cannot_fit_before_loading_anything():
    proc = cli("notus_lab", "+experiment=notus_7b_v1", "hardware=gpu")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "needs ~" in proc.stderr and "allowed: model=lora" in proc.stderr
