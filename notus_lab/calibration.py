"""`python -m notus_lab.calibration`: the coverage and power tables of docs/statistics.md, measured on planted designs.

    python -m notus_lab.calibration [--reps 2000]
    python -m notus_lab.calibration --sequential [--reps 1000] [--margin 0.05] [--arm-hours 0.012]
    python -m notus_lab.calibration --factorial [--reps 2000]

The planted designs and what they stand for: notus_lab/study/planted.py; the sequential rule's operating
characteristics: notus_lab/study/operating.py (--sequential: the default rule, then the seed-dominant designs,
seed variance 0.01 with a prompt part near 0 and the judged world at seed sd 0.3, under both spendings).
"""

from __future__ import annotations

import argparse

from notus_lab.study.effects import factorial_markdown
from notus_lab.study.operating import sequential_markdown
from notus_lab.study.planted import markdown


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m notus_lab.calibration", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=None, help="replicates per cell (2000; --sequential: 1000)")
    parser.add_argument("--sequential", action="store_true", help="the sequential rule's operating characteristics")
    parser.add_argument("--factorial", action="store_true", help="the factorial effects' coverage and attribution")
    parser.add_argument("--margin", type=float, default=0.05, help="--sequential: the equivalence margin")
    parser.add_argument(
        "--arm-hours",
        type=float,
        default=None,
        help="--sequential: device-hours of one arm on this machine (a study's report.json: cost)",
    )
    args = parser.parse_args(argv)
    if args.sequential:
        print(sequential_markdown(args.reps or 1000, args.margin, args.arm_hours))
    elif args.factorial:
        print(factorial_markdown(args.reps or 2000))
    else:
        print(markdown(args.reps or 2000))


if __name__ == "__main__":
    main()
