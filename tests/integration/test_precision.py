"""Master weights: a bf16 run keeps its trainable policy in fp32 (the Trainer only autocasts), so updates
at the 7B recipes' learning rate survive; rehearsed on CPU with bf16 autocast."""

import pytest

from notus_lab.train.pipeline import run
from tests.helpers import compose

pytestmark = pytest.mark.slow  # trains or builds models: the full suite, not the fast tier

SMALL = (
    "model=full",
    "optimizer=rmsprop",
    "optimizer.lr=5e-7",
    "train.max_steps=3",
    "data.world.rows=200",
    "eval.signals=[]",
    "judge=none",
    "wandb.mode=disabled",
)


def flat_weights(path):
    import torch
    from safetensors.torch import load_file

    weights = load_file(path / "model.safetensors")
    return torch.cat([weights[k].float().flatten() for k in sorted(weights)]), {k: v.dtype for k, v in weights.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("precision")
    return tmp, run(compose(*SMALL), tmp / "fp32"), run(compose(*SMALL, "hardware.precision=bf16"), tmp / "bf16")


def test_bf16_training_keeps_fp32_master_weights_and_the_recipe_lr_updates_survive(runs):
    import torch

    from notus_lab.models.loading import base_path

    tmp_path, fp32, bf16 = runs
    assert bf16["precision"] == {
        "asked": "bf16",
        "policy_weights": "float32",
        "autocast": "bfloat16",
        "deepspeed_bf16": False,
    }
    assert fp32["precision"]["policy_weights"] == "float32" and fp32["precision"]["autocast"] is None
    base, _ = flat_weights(__import__("pathlib").Path(base_path(compose().base)))
    w32, _ = flat_weights(tmp_path / "fp32" / "model")
    w16, dtypes = flat_weights(tmp_path / "bf16" / "model")
    assert set(dtypes.values()) == {torch.float32}  # saved as trained: fp32 masters
    u32, u16 = w32 - base, w16 - base
    assert (u32 != 0).float().mean() > 0.9  # RMSprop moved nearly every weight by ~lr / sqrt(1 - alpha)
    assert (u16 - u32).norm() / u32.norm() < 0.35  # bf16 autocast changes the gradients a little, not the update
    # what the old pure-bf16 policy would have kept of the same update: almost nothing
    kept = ((base.bfloat16() + u32).bfloat16() != base.bfloat16()).float().mean()
    assert kept < 0.1


def test_generation_runs_on_the_runs_device_in_its_precision(runs, monkeypatch):
    """A 7B run's export must not fall back to fp32 on the CPU: the generation loaders follow the run."""
    from notus_lab.judging.benchmarks import export
    from notus_lab.judging.generation import device_for

    tmp_path, _, _ = runs
    done = export(tmp_path / "bf16", None, None, "bf16-model", max_new_tokens=8, batch_size=4, limit=3)
    assert (done["device"], done["dtype"], done["alpaca_eval"]) == ("cpu", "torch.bfloat16", 3)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert device_for(compose("hardware=h100_x8")) == "cuda:3" and device_for(compose()) == "cpu"
