"""Binarization speed on a real-sized UltraFeedback file (64k rows, 4 completions, realistic lengths).

Prints, side by side from ONE run: the bare `json.loads` loop over the file (the floor), each
strategy's binarization time on rows already in memory (target <= 2 s), and the whole
`python -m notus_lab.binarize` process against bare parse + interpreter start-up (target <= 2x).

    python benchmarks/binarize_64k.py [--rows 64000] [--words 120] [--file /tmp/uf64k.jsonl]
"""

import argparse
import json
import os
import subprocess
import sys
import time

from notus_lab.config.schema import DataConfig, WorldConfig
from notus_lab.data.audit import audit
from notus_lab.data.pairs import binarize
from notus_lab.data.world import generate_rows

STRATEGIES = {
    "critique": DataConfig(strategy="critique", tie_policy="keep"),
    "critique_curated": DataConfig(strategy="critique_curated", tie_policy="keep"),
    "mean_rating": DataConfig(strategy="mean_rating"),
    "aspect": DataConfig(strategy="aspect", aspect="helpfulness"),
    "multi_pair": DataConfig(strategy="multi_pair"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=64_000)
    ap.add_argument("--words", type=int, default=120, help="adjectives per response (~13 chars each)")
    ap.add_argument("--file", default="/tmp/uf64k.jsonl")
    args = ap.parse_args()
    if not os.path.exists(args.file):
        t = time.perf_counter()
        with open(args.file, "w") as f:
            for r in generate_rows(WorldConfig(rows=args.rows, seed=1), sentences=args.words // 2):
                f.write(json.dumps(r) + "\n")
        print(f"generated {args.rows} rows in {time.perf_counter() - t:.1f}s")
    size_mb = os.path.getsize(args.file) / 1e6

    t = time.perf_counter()
    with open(args.file, "rb") as f:
        rows = [json.loads(line) for line in f]
    bare = time.perf_counter() - t
    print(f"file: {args.file} {size_mb:.0f} MB, {len(rows)} rows")
    print(f"{'bare json.loads loop':<34}{bare:8.2f} s   ({size_mb / bare:.0f} MB/s)")
    for name, d in STRATEGIES.items():
        t = time.perf_counter()
        pairs, _ = binarize(rows, d)
        dt = time.perf_counter() - t
        print(
            f"{'binarize ' + name:<34}{dt:8.2f} s   {len(pairs):>6} pairs   "
            f"target <= 2 s: {'ok' if dt <= 2 else 'MISSED'}"
        )
    t = time.perf_counter()
    audit(rows, STRATEGIES["mean_rating"], range(len(rows)))
    print(f"{'audit (all signals, chosen differs)':<34}{time.perf_counter() - t:8.2f} s")

    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import notus_lab.binarize"], check=True)
    startup = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "notus_lab.binarize",
            "data=mean_rating",
            f"data.source={args.file}",
            "out=/tmp/uf64k_out",
        ],
        check=True,
        capture_output=True,
    )
    whole = time.perf_counter() - t
    print(f"{'interpreter + import start-up':<34}{startup:8.2f} s")
    print(
        f"{'whole binarize process':<34}{whole:8.2f} s   ratio to (bare parse + start-up): "
        f"{whole / (bare + startup):.2f}x  target <= 2x: {'ok' if whole <= 2 * (bare + startup) else 'MISSED'}"
    )
    print(json.load(open("/tmp/uf64k_out/data_report.json"))["timings"])


if __name__ == "__main__":
    main()
