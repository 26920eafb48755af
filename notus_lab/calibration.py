"""Is a "95 %" interval right 95 % of the time? Planted designs with a known answer, through the report's own
statistics (notus_lab/study/stats.py), numpy only.

    python -m notus_lab.calibration [--reps 2000]     # the coverage and power tables of the README

Two outcome kinds, each as the report sees it (one value per seed unit x shared prompt):
- judged: win 1 / tie 0.5 / loss 0 against the reference, `samples` answers per prompt, so values in steps of
  1 / (2 samples); a prompt's difficulty is shared by both strategies, its lean towards one of them by every
  seed, and each strategy draws its own seed effect (logit scale);
- scores: MT-Bench-like integer grades 1-10, two turns per question averaged, with the same structure.
Under no planted effect the strategies are exchangeable, so the truth is 0 and coverage is the share of
replicates whose interval holds 0. Power is the share whose interval excludes 0 at a planted effect.
"""

from __future__ import annotations

import argparse

from notus_lab.study.calibration import markdown


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m notus_lab.calibration", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000, help="replicates per cell")
    print(markdown(parser.parse_args(argv).reps))


if __name__ == "__main__":
    main()
