"""A sequential study for real: arms trained by the parallel launcher in rounds, the process killed between rounds,
and the same command finishing it without retraining a finished arm or losing a recorded round."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from notus_lab.study import rounds

pytestmark = pytest.mark.slow

TINY = ("data.world.rows=200", "train.max_steps=4", "train.logging_steps=2", "hardware.eval_batch_size=128")


def study_command(sweep_dir):
    return [
        sys.executable,
        "-m",
        "notus_lab",
        "--multirun",
        "hydra/launcher=parallel",
        "hydra/sweeper=sequential",
        "study.margin=0.01",
        "hydra.sweeper.max_seeds=3",
        "data=critique,mean_rating",
        "train.seed=1,2",
        "beta=0.1",
        "judge=truth",
        *TINY,
        "wandb.mode=disabled",
        "sweep_name=killed",
        f"hydra.sweep.dir={sweep_dir}",
    ]


def test_a_study_killed_between_rounds_finishes_with_the_same_command_and_retrains_nothing(tmp_path):
    sweep_dir = tmp_path / "study"
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    first = subprocess.Popen(
        study_command(sweep_dir),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while time.time() < deadline and not (rounds.load(sweep_dir) or {}).get("rounds"):
        assert first.poll() is None, first.stdout.read()[-3000:]
        time.sleep(1)
    os.killpg(first.pid, signal.SIGKILL)  # after round 1 is on disk, wherever round 2 had got to
    first.wait(timeout=60)
    recorded = rounds.load(sweep_dir)
    assert len(recorded["rounds"]) == 1 and recorded["outcome"] is None
    round_one = {n: (sweep_dir / n / "metrics.json").stat().st_mtime_ns for n in recorded["rounds"][0]["launched"]}
    assert len(round_one) == 4
    again = subprocess.run(study_command(sweep_dir), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    state = rounds.load(sweep_dir)
    assert state["rounds"][0] == recorded["rounds"][0] and state["outcome"] in ("decided", "max_seeds", "futile")
    assert {n: (sweep_dir / n / "metrics.json").stat().st_mtime_ns for n in round_one} == round_one  # not retrained
    assert len(state["rounds"]) == 2 and state["rounds"][1]["seeds"] == [1, 2, 3]
    # one line per arm and per round on the console; each arm's own output in its run dir
    out = again.stdout
    assert "round 2: seeds 3 of at most 3" in out and f"study {state['outcome']}" in out
    assert "it/s" not in out and "Tokenizing" not in out  # no progress bars from the arms
    assert all((sweep_dir / n / "output.log").stat().st_size > 0 for n in round_one)
    report = json.loads((sweep_dir / "report.json").read_text())
    assert report["rounds"]["outcome"] == state["outcome"] and "## Rounds" in (sweep_dir / "report.md").read_text()
