"""A 3-arm beta sweep against three independent runs of the same arms, measured side by side in one run.

    python benchmarks/sweep_reuse.py [--model full] [extra overrides...]

- independent: three separate `python -m notus_lab beta=...` processes, each from an empty cache
  (the reference model runs inside every training step, as TRL does by default);
- sweep: `python -m notus_lab -m beta=a,b,c train.precompute_reference=true`, the sweep as a user types
  it (Hydra's default launcher runs the arms one after another in one process). The first arm computes
  the reference log-probs and tokenized pairs once; the other two load them from the content-keyed cache;
- sweep, a process per arm: the same three arms as separate processes sharing the cache, which is how
  the parallel (joblib) and SLURM launchers run them. Each arm also pays the interpreter and import start-up.

Independent arms alternate with the per-process sweep's arms, and the one-process sweep runs after
them in odd rounds and before them in even rounds, so drift on a shared machine hits every column.
Wall time is the cost; CPU seconds (user + system of the child processes) are printed beside it
because they move less when a virtual machine's host is busy.
Target: sweep / independent <= 0.6.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BETAS = ["0.01", "0.05", "0.1"]


def timed(args: list[str], cache: Path, hydra_dir: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `python -m notus_lab` process."""
    before, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "notus_lab",
            *args,
            f"train.reference_cache_dir={cache}",
            "wandb.mode=disabled",
            hydra_dir,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wall, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def one_round(tmp: Path, extra: list[str], sweep_first: bool) -> dict[str, list[tuple[float, float]]]:
    def sweep():
        return [
            timed(
                ["-m", f"beta={','.join(BETAS)}", "train.precompute_reference=true", *extra],
                tmp / "cache-sweep",
                f"hydra.sweep.dir={tmp / 'sweep'}",
            )
        ]

    out = {"sweep": sweep()} if sweep_first else {}
    out["independent"], out["per_process"] = [], []
    for i, beta in enumerate(BETAS):
        out["independent"].append(
            timed([f"beta={beta}", *extra], tmp / f"cache-ind{i}", f"hydra.run.dir={tmp / f'ind{i}'}")
        )
        out["per_process"].append(
            timed(
                [f"beta={beta}", "train.precompute_reference=true", *extra],
                tmp / "cache-proc",
                f"hydra.run.dir={tmp / f'proc{i}'}",
            )
        )
    if not sweep_first:
        out["sweep"] = sweep()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="full")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--betas", default=",".join(BETAS), help="the sweep's arms (the suite's smoke run uses two)")
    args, extra = p.parse_known_args()
    BETAS[:] = args.betas.split(",")
    extra = [f"model={args.model}", *extra]
    rounds = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:  # every round starts from empty caches
            if r == 0:
                timed([f"beta={BETAS[0]}", *extra], Path(tmp) / "cache-warm", f"hydra.run.dir={tmp}/warm")  # page cache
            rounds.append(one_round(Path(tmp), extra, sweep_first=r % 2 == 1))
    print("| round | arm | independent (s) | sweep, a process per arm (s) |\n|---|---|---|---|")
    for r, m in enumerate(rounds, 1):
        for beta, (a, _), (b, _) in zip(BETAS, m["independent"], m["per_process"]):
            print(f"| {r} | beta={beta} | {a:.1f} | {b:.1f} |")
        print(f"| {r} | one-process sweep `-m beta={','.join(BETAS)}` | | {m['sweep'][0][0]:.1f} |")
    total = {k: [sum(x[i] for m in rounds for x in m[k]) for i in (0, 1)] for k in rounds[0]}
    print(f"\n| ratio to independent ({len(rounds)} rounds) | wall | CPU seconds |\n|---|---|---|")
    for name, key in (("one-process sweep", "sweep"), ("sweep, a process per arm", "per_process")):
        print(
            f"| {name} | {total[key][0] / total['independent'][0]:.3f} | "
            f"{total[key][1] / total['independent'][1]:.3f} |"
        )
    for r, m in enumerate(rounds, 1):
        print(f"round {r}: ratio sweep / independent = {m['sweep'][0][0] / sum(a for a, _ in m['independent']):.3f}")
    print(f"ratio sweep / independent = {total['sweep'][0] / total['independent'][0]:.3f} (target <= 0.6)")
    print(f"ratio sweep with a process per arm / independent = {total['per_process'][0] / total['independent'][0]:.3f}")
    print(f"overrides: {' '.join(extra)}")


if __name__ == "__main__":
    main()
