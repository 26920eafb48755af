"""Reference log-probs computed once per (base, data, tokenizer, max_length, precision) and reused by the
arms of a sweep that differ only in beta / loss / seed / optimizer; never across anything else."""

import shutil

import pytest

from notus_lab.train import run

from conftest import QUICK, compose, without_timings


@pytest.fixture
def reference_forwards(monkeypatch):
    """Counts the reference model's forward passes (TRL's compute_ref_log_probs)."""
    from trl import DPOTrainer

    calls = []
    original = DPOTrainer.compute_ref_log_probs

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DPOTrainer, "compute_ref_log_probs", counted)
    return calls


def arm(tmp_path, name, *overrides):
    cfg = compose("model=full", "train.precompute_reference=true", "wandb.mode=disabled", "eval.signals=[]",
                  f"train.reference_cache_dir={tmp_path / 'cache'}", *QUICK, *overrides)
    return without_timings(run(cfg, tmp_path / name))


def test_a_beta_sweep_computes_the_reference_once_and_gets_the_same_numbers(tmp_path, reference_forwards):
    arm(tmp_path, "a", "beta=0.1")
    first = len(reference_forwards)
    assert first > 0
    reused = arm(tmp_path, "b", "beta=0.05", "loss_type=ipo", "train.seed=7", "optimizer=rmsprop")
    assert len(reference_forwards) == first  # not one reference forward for the second arm
    fresh = arm(tmp_path / "fresh", "b", "beta=0.05", "loss_type=ipo", "train.seed=7", "optimizer=rmsprop")
    assert len(reference_forwards) == 2 * first
    assert reused == fresh  # reuse changes nothing in what the arm learns or reports


@pytest.fixture(scope="module")
def other_base(tmp_path_factory):
    """The tiny base with one weight nudged: same files, same shape, another model (no second SFT build)."""
    from safetensors.torch import load_file, save_file

    from notus_lab.model import base_path

    path = tmp_path_factory.mktemp("other_base")
    shutil.copytree(base_path(compose().base), path, dirs_exist_ok=True)
    weights = load_file(path / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    return path


@pytest.mark.parametrize("change", ["other_base", "train.max_length=200", "data.world.seed=1"])
def test_a_different_model_length_or_data_never_reuses_the_cache(tmp_path, reference_forwards, change, request):
    if change == "other_base":
        change = f"base.name={request.getfixturevalue('other_base')}"
    arm(tmp_path, "a")
    first = len(reference_forwards)
    arm(tmp_path, "b", change)
    assert len(reference_forwards) > first
