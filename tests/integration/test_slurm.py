"""A real SLURM cluster on this machine (scripts/slurm_local.sh: munge, MariaDB, slurmdbd, slurmctld, and
slurmd for this node plus two virtual ones), a sweep submitted through sweep.sh and hydra-submitit-launcher,
a preempted arm that submitit requeues and that resumes from the checkpoint it wrote when the signal came,
and DDP within one node and across two."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notus_lab.study.runs import read_runs
from tests.helpers import ROOT, cli
from tests.wandb_records import run_record

pytestmark = [pytest.mark.slow, pytest.mark.slurm]  # a real SLURM cluster on this machine
TINY = (
    "data.world.rows=200",
    "train.logging_steps=2",
    "hardware.eval_batch_size=128",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.timeout_min=15",
    "hydra.launcher.signal_delay_s=60",
)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("the local SLURM cluster needs root and Debian packages (scripts/slurm_local.sh)")
    state = Path(os.environ.get("NOTUS_SLURM_DIR", "/tmp/notus_slurm"))
    was_up = subprocess.run([ROOT / "scripts" / "slurm_local.sh", "status"], capture_output=True, text=True)
    started_here = "slurmctld: up" not in was_up.stdout
    up = subprocess.run([ROOT / "scripts" / "slurm_local.sh", "start"], capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, up.stderr[-3000:]
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), "PYTHON": sys.executable}
    yield env
    if started_here:  # leave a cluster the user started running; stop ours by PID
        subprocess.run([ROOT / "scripts" / "slurm_local.sh", "stop"], capture_output=True, timeout=120)


def sweep_sh(env, *args, timeout=600, background=False):
    cmd = [str(ROOT / "sweep.sh"), *args]
    if background:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def scontrol_job(env, job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True).stdout


def test_a_sweep_runs_as_slurm_jobs_and_every_arm_leaves_its_artefacts(slurm, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = sweep_sh(
        slurm,
        "critique_vs_rating",
        "data=critique,mean_rating",
        "train.seed=1,2",
        "beta=0.1",
        "train.max_steps=4",
        *TINY,
        "sweep_name=slurm_ci",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = read_runs(sweep_dir)
    assert len(runs) == 4 and all(r["status"] == "finished" for r in runs)
    job_ids = {p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and "_" in p.name}
    assert len(job_ids) == 4 and len({j.split("_")[0] for j in job_ids}) == 1  # one SLURM array, a task per arm
    accounted = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", next(iter(job_ids)).split("_")[0]],
        env=slurm,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(accounted) == 4 and all(line.endswith("|COMPLETED") for line in accounted), accounted
    for r in runs:
        assert (r["dir"] / "model" / "model.safetensors").exists() and (r["dir"] / "README.md").exists()
        (wb,) = (r["dir"] / "wandb").glob("offline-run-*/run-*.wandb")
        assert run_record(wb).run_group == "slurm_ci"
    assert "finished" in (sweep_dir / "report.md").read_text()


@pytest.mark.parametrize("hardware", ["cpu", "ddp_cpu_x2"])
def test_a_preempted_arm_is_requeued_and_resumes_from_its_checkpoint(slurm, tmp_path, hardware):
    """One process, or two ranks under a launcher that must pass the signal on: either way the arm saves
    a checkpoint, submitit requeues it, and it resumes from there into the same W&B run."""
    sweep_dir = tmp_path / "preempt"
    cpus = 1 if hardware == "cpu" else 2
    tiny = [o for o in TINY if "cpus_per_task" not in o] + [f"hydra.launcher.cpus_per_task={cpus}"]
    proc = sweep_sh(
        slurm,
        "critique_vs_rating",
        "data=mean_rating",
        "train.seed=1",
        "beta=0.1",
        f"hardware={hardware}",
        "train.max_steps=60",
        "train.save_steps=10",
        "judge=none",
        "eval.signals=[]",
        *tiny,
        "sweep_name=slurm_preempt",
        f"hydra.sweep.dir={sweep_dir}",
        background=True,
    )
    try:
        deadline = time.time() + 300
        while not list(sweep_dir.glob("*/checkpoints/checkpoint-10/trainer_state.json")):
            assert time.time() < deadline and proc.poll() is None, "no checkpoint-10 appeared"
            time.sleep(0.5)
        (job_id,) = [p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir()]
        # what SLURM does to a preempted job under submitit: the preemption signal (USR2) to its steps
        subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm, check=True)
        # submitit requeues it; SLURM then holds a requeued job for ~2 minutes: release it now
        while "Restarts=0" in (job := scontrol_job(slurm, job_id)) or "JobState=PENDING" not in job:
            assert time.time() < deadline and proc.poll() is None, job
            time.sleep(0.5)
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=slurm, check=True)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = "".join(p.read_text(errors="replace") for p in (sweep_dir / ".submitit" / job_id).glob("*.out"))
    errors = "".join(p.read_text(errors="replace") for p in (sweep_dir / ".submitit" / job_id).glob("*.err"))
    assert proc.returncode == 0, out[-3000:] + logs[-4000:] + errors[-3000:]
    (run_dir,) = [r["dir"] for r in read_runs(sweep_dir)]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 60
    assert "caught SIGUSR2: saving a checkpoint" in logs and "this job is preempted" in logs
    stopped = re.findall(r"stopped by SIGUSR2 at step (\d+)", logs)
    if hardware != "cpu":  # the launcher passed the signal on, and both ranks stopped at the same step
        assert "caught SIGUSR2: the 2 ranks save a checkpoint at the end of this step" in logs
        assert logs.count("caught SIGUSR2: saving a checkpoint") == 2 and len(set(stopped)) == 1
        # the arm is requeued only once its ranks are done saving: none outlives the attempt
        assert logs.rindex("stopped by SIGUSR2 at step") < logs.index("this job is preempted"), logs[-6000:]
    resumed = [line for line in logs.splitlines() if "resuming from" in line]
    resumed_at = int(resumed[0].rsplit("checkpoint-", 1)[1])
    assert resumed_at > 10 and all(int(step) == resumed_at for step in stopped)  # the checkpoint written at the signal
    assert "Restarts=1" in scontrol_job(slurm, job_id)
    # both attempts logged into ONE W&B run (same id), not two
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2 and len({run_record(f).run_id for f in files}) == 1


def test_a_slurm_job_runs_two_ddp_ranks_through_the_same_entrypoint(slurm, tmp_path):
    """One SLURM task, one accelerate launch inside it, two gloo ranks training one model."""
    sweep_dir = tmp_path / "ddp"
    proc = sweep_sh(
        slurm,
        "critique_vs_rating",
        "data=mean_rating",
        "train.seed=1",
        "beta=0.1",
        "train.max_steps=4",
        "hardware=ddp_cpu_x2",
        *[o for o in TINY if "cpus_per_task" not in o],
        "hydra.launcher.cpus_per_task=2",
        "sweep_name=slurm_ddp",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = read_runs(sweep_dir)
    assert run["status"] == "finished"
    assert (run["metrics"]["world_size"], run["metrics"]["gradient_accumulation_steps"]) == (2, 2)
    assert run["metrics"]["train/steps"] == 4


def test_a_two_node_slurm_job_trains_one_model_across_both_nodes(slurm, tmp_path):
    """The multi-node preset on partition `multinode` (two slurmd daemons on this machine): one task per
    node, each starts `accelerate launch` with its node rank from SLURM_NODEID and the first node's
    NodeAddr as master; the two ranks train one model and only rank 0 writes."""
    sweep_dir = tmp_path / "two_nodes"
    proc = cli(
        "notus_lab",
        "--multirun",
        "hydra/launcher=slurm_multinode",
        "hydra.launcher.partition=multinode",
        "hardware=ddp_cpu_x2",
        "hardware.num_processes=1",
        "hardware.num_nodes=2",
        "train.max_steps=4",
        *TINY,
        "sweep_name=slurm_two_nodes",
        f"hydra.sweep.dir={sweep_dir}",
        env=slurm,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = read_runs(sweep_dir)
    assert run["status"] == "finished"
    assert (run["metrics"]["world_size"], run["metrics"]["gradient_accumulation_steps"]) == (2, 2)
    assert run["metrics"]["train/steps"] == 4
    (job,) = [p for p in (sweep_dir / ".submitit").iterdir() if p.is_dir()]
    logs = [
        "".join(p.read_text(errors="replace") for p in job.glob(f"*_{task}_log.*")) for task in (0, 1)
    ]  # a task per node
    ranks = sorted(re.search(r"--machine_rank (\d) --main_process_ip (\S+)", log).groups() for log in logs)
    assert ranks == [("0", "127.0.0.1"), ("1", "127.0.0.1")]  # node ranks from SLURM; master = vnode1's NodeAddr
    nodes = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "NodeList", "-j", job.name], env=slurm, capture_output=True, text=True
    ).stdout.split()
    assert nodes == ["vnode[1-2]"]
    assert len(list((Path(run["dir"]) / "wandb").glob("offline-run-*"))) == 1  # rank 0 only


def test_a_sequential_study_runs_its_rounds_as_slurm_jobs(slurm, tmp_path):
    """2 strategies, 2 rounds (2 seeds, then a third), every arm a SLURM array task; the rounds on disk."""
    from notus_lab.study import rounds

    sweep_dir = tmp_path / "sequential"
    proc = sweep_sh(
        slurm,
        "critique_vs_rating",
        "--until-decided",
        "data=critique,mean_rating",
        "train.seed=1,2",
        "beta=0.1",
        "train.max_steps=4",
        *TINY,
        "study.margin=0.01",
        "hydra.sweeper.max_seeds=3",
        "sweep_name=slurm_sequential",
        f"hydra.sweep.dir={sweep_dir}",
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = rounds.load(sweep_dir)
    assert [r["seeds"] for r in state["rounds"]] == [[1, 2], [1, 2, 3]] and state["outcome"] is not None
    jobs = {p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and "_" in p.name}
    assert len(jobs) == 2  # one SLURM array per round
    assert "## Rounds" in (sweep_dir / "report.md").read_text()
