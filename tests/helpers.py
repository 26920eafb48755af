"""What tests share: composing configs, running commands as a user would, run records."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compose(*overrides: str, return_hydra: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from notus_lab.config.options import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra)


def cli(*args: str, env=None, timeout=600, cwd=None):
    """Run `python -m ...` as a user would, from a directory of its own (never the checkout: what a command
    writes by default, outputs/, stays out of it); returns CompletedProcess."""
    import tempfile

    # a child gets its own W&B service, never the one an in-process test run left in WANDB_SERVICE
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "WANDB_SERVICE"}
    with tempfile.TemporaryDirectory(prefix="notus-cli-") as elsewhere:
        return subprocess.run(
            [sys.executable, "-m", *args],
            cwd=cwd or elsewhere,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )


def without_timings(metrics: dict) -> dict:
    """Metrics as two runs of the same command must reproduce them: everything but wall times."""
    metrics["train"].pop("runtime_s")
    metrics.pop("timings_s", None)
    metrics.pop("compute", None)  # wall seconds x devices
    return metrics


# small and fast: a few hundred rows, one epoch
QUICK = ("data.world.rows=300", "train.epochs=1", "train.logging_steps=2", "hardware.eval_batch_size=128")


def judged_records(outcomes) -> list[dict]:
    """generations.jsonl records of one run: prompt p<i> won (1), tied (0.5) or lost (0) against the reference."""
    winner = {1.0: "policy", 0.5: "tie", 0.0: "reference"}
    return [
        {
            "prompt": f"p{i}",
            "sample": 0,
            "reference": "r",
            "policy": "a",
            "reference_score": 0.5,
            "policy_score": float(o),
            "winner": winner[float(o)],
        }
        for i, o in enumerate(outcomes)
    ]


def plant_judged(run_dir: Path, overrides: list[str], outcomes, metrics: dict | None = None) -> Path:
    """A finished run dir as a sweep report reads it: its overrides, its judged win rate and per-prompt records."""
    import json

    import yaml

    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (run_dir / "config.yaml").write_text("sweep_name: planted\n")
    records = judged_records(outcomes)
    win_rate = sum(r["policy_score"] for r in records) / len(records)
    (run_dir / "metrics.json").write_text(
        json.dumps({"generation": {"win_rate_vs_reference": win_rate}, **(metrics or {})})
    )
    (run_dir / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def plant_crossed(sweep_dir: Path, levels: dict, lift, seeds: int = 3, prompts: int = 200, skip=(), p0=0.6) -> Path:
    """Judged run dirs of a crossed design: one per cell (a setting of every key in `levels`) and seed, each prompt a
    coin with p = p0 + lift(cell as {key: level}); `skip`: (cell tuple, seed) arms that never finished (no dir)."""
    from itertools import product

    import numpy as np

    rng = np.random.default_rng(0)
    names = list(levels)
    for cell in product(*(levels[n] for n in names)):
        for seed in range(1, seeds + 1):
            won = rng.random(prompts) < p0 + lift(dict(zip(names, cell)))
            if (cell, seed) in skip:
                continue
            overrides = [f"{n}={v}" for n, v in zip(names, cell)] + [f"train.seed={seed}"]
            plant_judged(sweep_dir / "-".join(map(str, (*cell, seed))), overrides, won)
    return sweep_dir


class PlantingLauncher:
    """Stands in for joblib / submitit under a sweeper: each job becomes a finished run dir whose per-prompt judged
    outcomes come from a planted truth (mean_rating better by `gap`, other strategies by `gaps`), or a failed one
    (its failed.json) where `fails(given, name)` says so; every launch is recorded in `launched`. `rng_key(given,
    name)` seeds an arm's outcomes; `compute` is what its metrics.json says it cost."""

    def __init__(
        self, sweep_dir, gap=0.0, fails=lambda given, name: False, prompts=200, gaps=None, rng_key=None, compute=None
    ):
        self.sweep_dir, self.fails, self.prompts, self.launched = sweep_dir, fails, prompts, []
        self.gaps = {"mean_rating": gap, **(gaps or {})}
        self.rng_key = rng_key or (lambda given, name: [int(given["train.seed"]), given["data"] == "mean_rating"])
        self.compute = compute or {"device_hours": 0.5, "unit": "CPU-hours"}

    def launch(self, job_overrides, initial_job_idx):
        import json

        import numpy as np
        import yaml
        from hydra.core.utils import JobReturn, JobStatus

        from notus_lab.config.science import run_dir_name

        out = []
        for job in job_overrides:
            name = run_dir_name(list(job))
            self.launched.append(name)
            given = dict(o.lstrip("+").split("=", 1) for o in job)
            d = self.sweep_dir / name
            if self.fails(given, name):
                (d / ".hydra").mkdir(parents=True, exist_ok=True)
                (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(job)))
                (d / "config.yaml").write_text("sweep_name: stub\n")
                (d / "failed.json").write_text(json.dumps({"error": "OutOfMemoryError", "message": "planted"}))
                out.append(JobReturn(overrides=list(job), status=JobStatus.FAILED, _return_value=RuntimeError("x")))
                continue
            rng = np.random.default_rng(self.rng_key(given, name))
            won = rng.random(self.prompts) < 0.5 + self.gaps.get(given.get("data", "mean_rating"), 0.0)
            plant_judged(d, list(job), won, {"compute": self.compute})
            out.append(JobReturn(overrides=list(job), status=JobStatus.COMPLETED, _return_value=None))
        return out
