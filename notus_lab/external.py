"""`python -m notus_lab.external`: attach external judges' verdicts (AlpacaEval, MT-Bench) to the run dirs they judged.

    python -m notus_lab.external <sweep or run dir> [--alpaca-eval annotations.json] [--leaderboard leaderboard.csv]
                                                    [--mt-bench model_judgment/gpt-4_single.jsonl]
                                                    [--mt-bench ..._pair.jsonl]

What each file holds and how it is counted: notus_lab/study/external_judges.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from notus_lab.core.errors import ConfigError, refuse, run_command
from notus_lab.study.external_judges import attach


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m notus_lab.external", description=__doc__.splitlines()[0])
    p.add_argument("target", type=Path, help="a run dir, or a sweep dir of run dirs")
    p.add_argument("--alpaca-eval", type=Path, help="AlpacaEval annotations.json")
    p.add_argument("--leaderboard", type=Path, help="AlpacaEval leaderboard.csv")
    p.add_argument(
        "--mt-bench",
        type=Path,
        action="append",
        default=[],
        help="FastChat MT-Bench judgments, single (gpt-4_single.jsonl) or pairwise (gpt-4_pair.jsonl); repeatable",
    )
    args = p.parse_args(argv)
    problems = [("target", args.target, "a run dir or a sweep dir")] if not args.target.is_dir() else []
    problems += [
        (k, v, "an existing file")
        for k, v in (
            ("--alpaca-eval", args.alpaca_eval),
            ("--leaderboard", args.leaderboard),
            *(("--mt-bench", m) for m in args.mt_bench),
        )
        if v is not None and not v.is_file()
    ]
    if not problems and not (args.alpaca_eval or args.leaderboard or args.mt_bench):
        problems.append(("--alpaca-eval", None, "at least one of --alpaca-eval, --leaderboard, --mt-bench"))
    refuse(problems)
    attached = attach(args.target, args.alpaca_eval, args.leaderboard, args.mt_bench)
    for name, judges in attached.items():
        print(f"{name}: {', '.join(judges)}")
    if not attached:
        raise ConfigError(
            "--alpaca-eval/--mt-bench matched no run: records name their model by generator / model "
            "(the run dir's name unless notus_lab.generate --model-id said otherwise)"
        )


if __name__ == "__main__":
    run_command(main)
