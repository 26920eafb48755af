"""`python -m notus_lab.report`: a sweep dir -> report.md, report.json and figures, from the run dirs alone.

    python -m notus_lab.report outputs/sweeps/critique_vs_rating [--metric M] [--target-effect D [--project-hardware P]]
                               [--wandb offline]

How the metric, the verdicts, the plan and the cost are made: notus_lab/study/findings.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from notus_lab.config.options import group_options
from notus_lab.core.errors import refuse, run_command
from notus_lab.study.findings import PROJECT_HARDWARE, write_report
from notus_lab.study.runs import JUDGED, check_metric, read_runs
from notus_lab.study.wandb_report import log_report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m notus_lab.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir, e.g. outputs/sweeps/critique_vs_rating")
    parser.add_argument(
        "--metric",
        help="a metrics.json key, flattened with '/' (default: the judged win rate "
        f"{JUDGED} when every run has it, else truth_accuracy); external judges: "
        "alpaca_eval/win_rate, alpaca_eval/length_controlled_winrate, mt_bench/score, "
        "mt_bench_pair/win_rate_adjusted",
    )
    parser.add_argument(
        "--target-effect",
        type=float,
        help="also print the seeds and prompts needed to detect it, and what each design costs",
    )
    parser.add_argument(
        "--project-hardware",
        default=PROJECT_HARDWARE,
        help="the conf/hardware profile on which the plan's 7B cost is projected",
    )
    parser.add_argument(
        "--wandb",
        choices=("offline", "online", "disabled"),
        default="disabled",
        help="log the report as a W&B run (job_type=report) in the sweep's group",
    )
    parser.add_argument("--out", type=Path, help="where report.md goes (default: the sweep dir)")
    args = parser.parse_args(argv)
    problems = [("sweep_dir", args.sweep_dir, "an existing sweep directory")] if not args.sweep_dir.is_dir() else []
    if args.target_effect is not None and not args.target_effect > 0:
        problems.append(("--target-effect", args.target_effect, "a number > 0"))
    if args.project_hardware not in group_options("hardware"):
        problems.append(("--project-hardware", args.project_hardware, f"one of {', '.join(group_options('hardware'))}"))
    refuse(problems)
    check_metric(read_runs(args.sweep_dir), args.metric)
    summary = write_report(args.sweep_dir, args.metric, args.out, args.target_effect, args.project_hardware)
    out = Path(args.out or args.sweep_dir)
    print((out / "report.md").read_text())
    if args.wandb != "disabled":
        where = log_report(args.sweep_dir, out, summary, args.wandb)
        print(f"W&B report run: {where}")
    failed = [r for r in summary["runs"] if r["status"] != "finished"]
    if failed:
        print(f"{len(failed)} run(s) failed or unfinished: see the table above", file=sys.stderr)


if __name__ == "__main__":
    run_command(main)
