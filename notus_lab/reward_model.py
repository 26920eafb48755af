"""`python -m notus_lab.reward_model`: train a small reward-model judge here (judge=reward_model).

    python -m notus_lab.reward_model --out DIR [--labels truth|mean_rating|critique|...] [--rows N] [--epochs E]

What it learns from and why: notus_lab/judging/reward_judge.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from notus_lab.config.options import base_option
from notus_lab.config.strategies import binarizing_options
from notus_lab.core.errors import refuse, run_command
from notus_lab.judging.reward_judge import train_reward_model


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m notus_lab.reward_model", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="where the reward model goes")
    p.add_argument("--labels", default="truth", help="truth, or a data option whose pairs it learns from")
    p.add_argument("--rows", type=int, default=2000, help="world rows to train on")
    p.add_argument("--epochs", type=float, default=1.0)
    args = p.parse_args(argv)
    allowed = ["truth"] + binarizing_options()
    problems = [("--labels", args.labels, "one of " + ", ".join(allowed))] if args.labels not in allowed else []
    problems += [(k, v, "a number > 0") for k, v in (("--rows", args.rows), ("--epochs", args.epochs)) if v <= 0]
    refuse(problems)
    from notus_lab.models.loading import base_path

    card = train_reward_model(args.out, base_path(base_option()), args.labels, args.rows, args.epochs)
    print(
        f"reward model ({card['labels']} labels, {card['train_pairs']} pairs) in {args.out}; agreement with the "
        f"truth on held-out world pairs: {card['truth_agreement_held_out']}"
    )


if __name__ == "__main__":
    run_command(main)
