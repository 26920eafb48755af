"""What makes two commands the same run: one list of non-science keys decides both the run dir and the
science fingerprint, and the code version covers every source file of every subpackage."""

import functools
import shutil

from omegaconf import OmegaConf, open_dict

from notus_lab.config.science import NOT_SCIENCE, is_science, run_dir_name, science_fingerprint, what_changed
from notus_lab.core import provenance
from notus_lab.core.run_dir import RunDir
from tests.helpers import compose

# one override per entry of NOT_SCIENCE (a value the default does not have), and science overrides
NOT_SCIENCE_OVERRIDES = {
    "wandb.": "wandb.tags=[x]",
    "study.": "study.margin=0.03",
    "hardware.": "hardware.per_device_batch_size=4",
    "sweep_name": "sweep_name=other",
    "run_name": "run_name=mine",
    "train.resume": "train.resume=false",
    "train.reference_cache_dir": "train.reference_cache_dir=/tmp/x",
    "train.precompute_reference": "train.precompute_reference=true",
    "train.logging_steps": "train.logging_steps=5",
    "train.save_steps": "train.save_steps=7",
    "base.cache_dir": "base.cache_dir=/tmp/y",
    "generation.batch_size": "generation.batch_size=8",
    "judge.batch_size": "judge.batch_size=8",
    "export.gguf": "export.gguf=[q4_k_m]",
}
SCIENCE_OVERRIDES = [
    "beta=0.05",
    "data=critique",
    "train.seed=7",
    "data.world.rows=500",
    "hardware=ddp_cpu_x2",
    "generation.temperature=0.5",
    "train.eval_steps=3",
]


@functools.lru_cache(maxsize=None)
def identity(*overrides) -> tuple[str, str]:
    """(hydra.run.dir as Hydra resolves it for this command line, the science fingerprint of its config)."""
    from hydra.core.hydra_config import HydraConfig

    cfg = compose(*overrides, return_hydra=True)
    HydraConfig.instance().set_config(cfg)
    run_dir = cfg.hydra.run.dir
    with open_dict(cfg):
        del cfg["hydra"]
    return run_dir, science_fingerprint(OmegaConf.to_container(cfg, resolve=True))


def run_dir_of(*overrides):
    return identity(*overrides)[0]


def fingerprint(*overrides):
    return identity(*overrides)[1]


def test_every_non_science_key_has_a_case_here():
    assert sorted(NOT_SCIENCE_OVERRIDES) == sorted(NOT_SCIENCE)


def test_a_non_science_override_moves_neither_the_run_dir_nor_the_fingerprint():
    base_dir, base_fp = run_dir_of(), fingerprint()
    for entry, override in NOT_SCIENCE_OVERRIDES.items():
        assert run_dir_of(override) == base_dir, override
        assert fingerprint(override) == base_fp, override


def test_a_science_override_moves_both():
    base_dir, base_fp = run_dir_of(), fingerprint()
    for override in SCIENCE_OVERRIDES:
        if override.startswith("hardware="):
            continue  # a profile is a group choice: its own dir, the same science (below)
        assert run_dir_of(override) != base_dir and fingerprint(override) != base_fp, override


def test_a_hardware_profile_gets_its_own_dir_but_keeps_the_science():
    """A sweep over profiles must not collide in one dir; what it learns is the same."""
    assert run_dir_of("hardware=ddp_cpu_x2") != run_dir_of()
    assert fingerprint("hardware=ddp_cpu_x2") == fingerprint() == fingerprint("hardware.per_device_batch_size=4")


def test_the_run_dir_name_is_hydras_override_dirname_of_the_science_overrides():
    assert run_dir_name(["beta=0.1", "data=critique"]) == "beta=0.1,data=critique"
    assert (
        run_dir_name(["data=critique", "beta=0.1", "wandb.mode=online", "+hardware.threads=2"])
        == "beta=0.1,data=critique"
    )
    assert run_dir_name([]) == "default" and run_dir_name(["train.resume=false"]) == "default"
    assert is_science("train.seed") and not is_science("wandb.tags") and is_science("hardware")


def test_an_edit_in_a_subpackage_changes_the_code_version_and_marks_the_run_stale(tmp_path, monkeypatch):
    copy = tmp_path / "notus_lab"
    shutil.copytree(provenance.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE", copy)
    before = provenance.code_version()
    deep = copy / "study" / "stats.py"
    deep.write_text(deep.read_text() + "\n# an edit\n")
    after = provenance.code_version()
    assert before != after
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    resolved = OmegaConf.to_container(compose(), resolve=True)
    rd.config.write_text(OmegaConf.to_yaml(resolved))
    rd.provenance.write_text('{"code_version": "%s", "git_commit": "abc"}' % before)
    assert what_changed(rd, resolved, before) is None
    assert what_changed(rd, resolved, after).startswith(f"code ({before} -> {after}")
