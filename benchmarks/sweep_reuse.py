"""A 3-arm beta sweep: three independent runs vs the same three sharing cached reference log-probs.

    python benchmarks/sweep_reuse.py [--model full] [extra overrides...]

Both sweeps run the same arms as separate `python -m notus_lab` processes (as a sweep launcher does),
measured by wall time, side by side in this one run. The reuse sweep starts from an empty cache: its
first arm pays for the reference pass, the other two reuse it (train.precompute_reference=true).
Target: reuse / independent <= 0.6.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BETAS = ("0.01", "0.05", "0.1")


def arm(run_dir: Path, cache: Path, beta: str, precompute: bool, extra: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "notus_lab", f"beta={beta}", f"train.precompute_reference={precompute}",
                    f"base.cache_dir={cache}", "wandb.mode=disabled", f"hydra.run.dir={run_dir}", *extra],
                   cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="full")
    args, extra = p.parse_known_args()
    extra = [f"model={args.model}", *extra]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        arm(tmp / "warm", tmp / "cache-warm", BETAS[0], False, extra)  # builds tiny once, warms the page cache
        independent, reuse = [], []
        for i, beta in enumerate(BETAS):  # interleaved, so drift on a shared machine hits both sweeps
            independent.append(arm(tmp / f"ind{i}", tmp / f"cache-ind{i}", beta, False, extra))
            reuse.append(arm(tmp / f"reuse{i}", tmp / "cache-shared", beta, True, extra))
    print("| arm | independent (s) | shared reference cache (s) |\n|---|---|---|")
    for beta, a, b in zip(BETAS, independent, reuse):
        print(f"| beta={beta} | {a:.1f} | {b:.1f} |")
    print(f"| total | {sum(independent):.1f} | {sum(reuse):.1f} |")
    print(f"\nratio shared / independent = {sum(reuse) / sum(independent):.3f} (target <= 0.6); "
          f"overrides: {' '.join(extra) or 'the default'}")


if __name__ == "__main__":
    main()
