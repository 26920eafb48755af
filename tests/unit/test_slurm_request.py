"""A SLURM job asks for what the run starts: a GPU per rank (no more, no less), a core per rank, the nodes, and the
host memory the preflight estimates. Each mismatch is one line naming both sides, before anything is submitted."""

import pytest

from tests.helpers import cli, compose

CASES = {
    "8 GPUs for 4 ranks": (
        ["hardware=h100_x8", "hardware.num_processes=4"],
        "error: hydra.launcher.gpus_per_node=8 is invalid: hardware=h100_x8 starts 4 rank(s) per node "
        "(hardware.num_processes), one GPU each; allowed 4",
    ),
    "1 GPU for 2 DDP ranks": (
        ["hardware=gpu", "hardware.num_processes=2"],
        "error: hydra.launcher.gpus_per_node=1 is invalid: hardware=gpu starts 2 rank(s) per node",
    ),
    "a core for 2 ranks": (
        ["hardware=ddp_cpu_x2", "base=tiny", "hydra.launcher.cpus_per_task=1"],
        "error: hydra.launcher.cpus_per_task=1 is invalid: hardware=ddp_cpu_x2 starts 2 rank(s)",
    ),
    "a node short of host memory": (
        ["hardware=h100_x8", "hydra.launcher.mem_gb=16"],
        "error: hydra.launcher.mem_gb=16 is invalid: the memory preflight estimates ~",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_slurm_request_that_does_not_hold_the_run_is_one_line(case, tmp_path):
    overrides, expected = CASES[case]
    proc = cli(
        "notus_lab",
        "--multirun",
        "+experiment=critique_vs_rating_7b",
        "hydra/launcher=slurm",
        *overrides,
        f"hydra.sweep.dir={tmp_path / 's'}",
    )
    assert proc.returncode == 2 and proc.stderr.startswith(expected), proc.stderr[-1500:]
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


@pytest.mark.parametrize("hardware", ["h100_x8", "a100_40gb_x8_offload", "fsdp_x8", "gpu", "ddp_cpu_x2"])
def test_every_profiles_own_slurm_request_holds_its_run(hardware):
    """The presets ask for exactly what each profile starts (conf/hardware/*.yaml: node)."""
    from notus_lab.config.validate import check_request

    cfg = compose(
        "+experiment=critique_vs_rating_7b", f"hardware={hardware}", "hydra/launcher=slurm", return_hydra=True
    )
    check_request(cfg.hydra.launcher, cfg)  # raises ConfigError on a mismatch


def test_sweep_sh_without_slurm_says_so_in_one_line_and_attempts_no_report(tmp_path):
    """A new user on a laptop: `./sweep.sh critique_vs_rating` defaults to SLURM. One line says there is none and what
    to do; no submitit traceback, no report of a sweep that launched nothing."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.helpers import ROOT

    bin_dir = tmp_path / "bin"  # the shell's tools, and no SLURM client (sbatch, srun), whatever this machine has
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "ls", "sed", "tr"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {**os.environ, "PATH": str(bin_dir), "PYTHON": sys.executable}
    proc = subprocess.run(
        [str(ROOT / "sweep.sh"), "critique_vs_rating", f"hydra.sweep.dir={tmp_path / 's'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: hydra/launcher='slurm' is invalid: no SLURM found on this machine (no sbatch "
        "on PATH); allowed hydra/launcher=parallel (./sweep.sh NAME --local), or a local "
        "cluster: scripts/slurm_local.sh start"
    )
    assert proc.stdout == "" and not (tmp_path / "s").exists()
