"""Reference log-probs computed once per (base, data, tokenizer, max_length, precision) and reused by the
arms of a sweep that differ only in beta / loss / seed / optimizer; never across anything else."""

import shutil

import pytest

from notus_lab.train.pipeline import run
from tests.helpers import QUICK, compose, without_timings

pytestmark = pytest.mark.slow  # trains or builds models: the full suite, not the fast tier


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
    cfg = compose(
        "model=full",
        "train.precompute_reference=true",
        "wandb.mode=disabled",
        "eval.signals=[]",
        f"train.reference_cache_dir={tmp_path / 'cache'}",
        *QUICK,
        *overrides,
    )
    return without_timings(run(cfg, tmp_path / name))


def test_a_beta_sweep_computes_the_reference_once_and_gets_the_same_numbers(tmp_path, reference_forwards):
    arm(tmp_path, "a", "beta=0.1")
    first = len(reference_forwards)
    assert first > 0
    reused = arm(tmp_path, "b", "beta=0.05", "loss_type=ipo", "train.seed=7", "optimizer=rmsprop")
    assert len(reference_forwards) == first  # not one reference forward for the second arm
    fresh = arm(tmp_path / "fresh", "b", "beta=0.05", "loss_type=ipo", "train.seed=7", "optimizer=rmsprop")
    assert len(reference_forwards) == 2 * first
    loaded, computed = reused.pop("reference_log_probs"), fresh.pop("reference_log_probs")
    assert set(loaded) == set(computed) >= {"train"}  # the training pairs and the held-out set of the run's rule
    assert set(loaded.values()) == {"loaded"} and set(computed.values()) == {"computed"}
    assert reused == fresh  # reuse changes nothing in what the arm learns or reports


def test_two_arms_that_want_the_same_reference_log_probs_at_once_compute_them_once(tmp_path):
    """A parallel sweep over beta starts both arms together: one computes, the other waits and loads."""
    import json
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    common = [
        "model=full",
        "train.precompute_reference=true",
        "wandb.mode=disabled",
        "eval.signals=[]",
        "judge=none",
        f"train.reference_cache_dir={tmp_path / 'cache'}",
        "hardware.threads=1",
        *QUICK,
    ]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "notus_lab", f"beta={beta}", *common, f"hydra.run.dir={tmp_path / beta}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for beta in ("0.1", "0.05")
    ]
    errors = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for e in errors]
    sources = [
        json.loads((tmp_path / beta / "metrics.json").read_text())["reference_log_probs"]["train"]
        for beta in ("0.1", "0.05")
    ]
    assert sorted(sources) == ["computed", "loaded"]


def test_the_reference_answers_are_generated_once_for_arms_that_share_the_base_prompts_and_decoding(
    tmp_path, monkeypatch
):
    from notus_lab.judging import generation

    calls = []
    original = generation.complete
    monkeypatch.setattr(generation, "complete", lambda *a, **k: calls.append(1) or original(*a, **k))

    def judged(name, *overrides):
        cfg = compose("wandb.mode=disabled", "eval.signals=[]", "generation.max_prompts=12", *QUICK, *overrides)
        run(cfg, tmp_path / name)
        import json

        return [json.loads(line) for line in (tmp_path / name / "generations.jsonl").read_text().splitlines()]

    first = judged("a", "beta=0.1")
    assert len(calls) == 2  # the policy's answers, then the reference's
    second = judged("b", "beta=0.05")
    assert len(calls) == 3  # the policy's only: the reference's come from the cache
    assert [r["reference"] for r in first] == [r["reference"] for r in second]
    judged("c", "beta=0.05", "generation.temperature=0.5")  # other decoding: other reference answers
    assert len(calls) == 5


@pytest.fixture(scope="module")
def other_base(tmp_path_factory):
    """The tiny base with one weight nudged: same files, same shape, another model (no second SFT build)."""
    from safetensors.torch import load_file, save_file

    from notus_lab.models.loading import base_path

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


def test_a_hub_base_is_fingerprinted_by_its_resolved_commit(tmp_path, monkeypatch):
    """Two revisions of one hub base never share cached reference log-probs: the fingerprint (and so the
    cache key's salt) carries the commit the revision resolves to, read from the HF cache offline."""
    from huggingface_hub import constants

    from notus_lab.models.loading import fingerprint_base

    repo = tmp_path / "models--org--base"
    for ref, commit in (("main", "a" * 40), ("v2", "b" * 40)):
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert fingerprint_base("org/base") == f"hub:org/base@{'a' * 40}"
    assert fingerprint_base("org/base", "v2") == f"hub:org/base@{'b' * 40}"
    assert fingerprint_base("org/base", "c" * 40) == f"hub:org/base@{'c' * 40}"  # a commit is its own answer
    assert fingerprint_base("org/other", "v1") == "hub:org/other@unresolved:v1"  # offline, nothing cached


def test_a_long_prompt_is_cut_only_when_prompt_and_the_longer_answer_exceed_max_length():
    """Zephyr's and Notus's TRL (0.7, truncation_mode keep_end)."""
    from transformers import AutoTokenizer

    from notus_lab.data.preference_dataset import truncated_prompts
    from notus_lab.models.loading import base_path

    tokenizer = AutoTokenizer.from_pretrained(base_path(compose().base))
    prompt = " ".join(f"river {i}" for i in range(60))
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    short, long = "a short answer", " ".join(["the violin sings"] * 40)
    pairs = [
        {"prompt": prompt, "chosen": short, "rejected": short},
        {"prompt": prompt, "chosen": short, "rejected": long},
    ]
    kept, cut = truncated_prompts(pairs, tokenizer, 32, n_prompt + 20)
    assert n_prompt > 32 and kept == prompt  # prompt + short answers fit max_length: the prompt stays whole
    cut_ids = tokenizer(cut, add_special_tokens=False)["input_ids"]
    assert len(cut_ids) <= 33 and prompt.endswith(cut.strip()[-20:])  # its last 32 tokens
