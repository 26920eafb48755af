"""`python -m notus_lab.calibration`: the coverage and power tables of the README, measured on planted designs.

    python -m notus_lab.calibration [--reps 2000]

The planted designs and what they stand for: notus_lab/study/calibration.py.
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
