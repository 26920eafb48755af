"""External judges, attached to the run dirs they judged, counted as the tools count them, for the report to
use like any metric.

    python -m notus_lab.external <sweep or run dir> [--alpaca-eval annotations.json] [--leaderboard leaderboard.csv]
                                                    [--mt-bench model_judgment/gpt-4_single.jsonl] [--mt-bench ..._pair.jsonl]

- AlpacaEval annotations: a JSON list of {instruction, output_1, output_2, generator_1, generator_2, preference,
  annotator, ...}. `preference` is 1 (output_1 better) .. 2 (output_2 better): discrete for AlpacaEval 1's
  annotators (1.5 a tie), continuous for AlpacaEval 2's default `weighted_alpaca_eval_gpt4_turbo`; 0 is a draw and
  nulls are excluded, as alpaca_eval reads them. The model's outcome is preference - 1 as output_2 (mirrored as
  output_1); win rate, standard error and the discrete win rate are alpaca_eval's `get_winrate` on the model's
  records (its formulas by hand when alpaca-eval is not installed), and the length-controlled win rate is
  alpaca_eval's GLM (`pip install 'notus_lab[judges]'`): its official `length_controlled_v1` where alpaca_eval's
  hub file (instruction difficulty) is cached, else the `length_controlled_minimal` formula fitted with
  alpaca_eval's own GLM code offline; `lc_model` says which.
- AlpacaEval leaderboard CSVs (both layouts alpaca_eval ships: v1 and v2 column orders) are kept beside the
  annotations' numbers as `leaderboard_*`: the tool's summary of the run it made, which may not be this one.
- FastChat MT-Bench single-answer judgments (`gpt-4_single.jsonl`: {question_id, model, judge: [judge, prompt],
  user_prompt, judgment, score, turn, tstamp}; score -1 = unparsed, counted as failed, never averaged) give
  `mt_bench`: the average over both turns and each turn's mean, as FastChat's show_result prints them.
  Pairwise judgments (`gpt-4_pair.jsonl`: {question_id, model_1, model_2, g1_winner, g2_winner, ...}; a tie
  when either order says tie or the two orders disagree, "error" excluded) give `mt_bench_pair`.

Records are matched to a run by the model id `notus_lab.generate` gave its answers (the run dir's name, or
`--model-id`). Each run gets external.json with one entry per judge; a second file for the same judge merges
into its entry. The report reads `alpaca_eval/win_rate`, `alpaca_eval/length_controlled_winrate`,
`mt_bench/score`, `mt_bench_pair/win_rate` (`--metric`), prompt by prompt where the judge gives per-prompt verdicts.
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
    p.add_argument("--mt-bench", type=Path, action="append", default=[],
                   help="FastChat MT-Bench judgments, single (gpt-4_single.jsonl) or pairwise (gpt-4_pair.jsonl); repeatable")
    args = p.parse_args(argv)
    problems = [("target", args.target, "a run dir or a sweep dir")] if not args.target.is_dir() else []
    problems += [(k, v, "an existing file") for k, v in (("--alpaca-eval", args.alpaca_eval),
                 ("--leaderboard", args.leaderboard), *(("--mt-bench", m) for m in args.mt_bench))
                 if v is not None and not v.is_file()]
    if not problems and not (args.alpaca_eval or args.leaderboard or args.mt_bench):
        problems.append(("--alpaca-eval", None, "at least one of --alpaca-eval, --leaderboard, --mt-bench"))
    refuse(problems)
    attached = attach(args.target, args.alpaca_eval, args.leaderboard, args.mt_bench)
    for name, judges in attached.items():
        print(f"{name}: {', '.join(judges)}")
    if not attached:
        raise ConfigError("--alpaca-eval/--mt-bench matched no run: records name their model by generator / model "
                          "(the run dir's name unless notus_lab.generate --model-id said otherwise)")


if __name__ == "__main__":
    run_command(main)
