"""External judges, attached to the run dirs they judged, for the report to use like any metric.

    python -m notus_lab.external <sweep or run dir> [--alpaca-eval annotations.json] [--leaderboard leaderboard.csv]
                                                    [--mt-bench model_judgment.jsonl]

- AlpacaEval annotations: a JSON list of {instruction, output_1, output_2, generator_1, generator_2,
  preference (1.0: output_1 wins, 2.0: output_2 wins, 1.5 a tie), annotator, ...}; its leaderboard CSV
  (win_rate, standard_error, length_controlled_winrate, n_total, avg_length, ...) indexed by generator.
- FastChat MT-Bench single-answer judgments: jsonl of {question_id, model, judge, user_prompt, judgment,
  score, turn, tstamp}, score -1 when the judge's output could not be parsed (counted, never averaged).

Records are matched to a run by the model id `notus_lab.generate` gave its answers (the run dir's name,
or `--model-id`, as recorded in generations/alpaca_eval.json). Each run gets external.json:
  {"alpaca_eval": {win_rate (0-1, ties half), wins, losses, ties, n, [leaderboard columns], per_prompt},
   "mt_bench": {score, n, failed, turns, per_prompt}}
and the report reads `alpaca_eval/win_rate`, `alpaca_eval/length_controlled_winrate`, `mt_bench/score`
(`--metric`), paired prompt by prompt where the judge gives per-prompt verdicts.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

from notus_lab.console import refuse
from notus_lab.tracking import write_json

PREFERENCE = {1.0: 0.0, 1.5: 0.5, 2.0: 1.0}  # the model as output_2; swapped when it is output_1


def model_id(run_dir: Path) -> str:
    """The name the run's answers went to the judges under."""
    exported = run_dir / "generations" / "alpaca_eval.json"
    if exported.exists():
        records = json.loads(exported.read_text())
        if records:
            return records[0]["generator"]
    return run_dir.name


def alpaca_eval(annotations: list[dict], model: str, leaderboard: dict | None = None) -> dict | None:
    per, counts = defaultdict(float), defaultdict(int)
    wins = losses = ties = 0
    for a in annotations:
        pref = a.get("preference")
        if pref is None or (isinstance(pref, float) and pref != pref):  # AlpacaEval excludes nulls
            continue
        if a.get("generator_2") == model:
            outcome = PREFERENCE.get(float(pref))
        elif a.get("generator_1") == model:
            outcome = None if PREFERENCE.get(float(pref)) is None else 1.0 - PREFERENCE[float(pref)]
        else:
            continue
        if outcome is None:
            continue
        wins, losses, ties = wins + (outcome == 1.0), losses + (outcome == 0.0), ties + (outcome == 0.5)
        per[a["instruction"]] += outcome
        counts[a["instruction"]] += 1
    n = wins + losses + ties
    if not n and not leaderboard:
        return None
    out = {"win_rate": (wins + 0.5 * ties) / n if n else None, "wins": wins, "losses": losses, "ties": ties, "n": n}
    if leaderboard:  # the tool's own summary; its percentages become shares like ours
        for key in ("win_rate", "standard_error", "length_controlled_winrate", "n_total", "avg_length"):
            if leaderboard.get(key) not in (None, ""):
                value = float(leaderboard[key])
                out[f"leaderboard_{key}" if key == "win_rate" else key] = \
                    value / 100 if key in ("win_rate", "standard_error", "length_controlled_winrate") else value
    out["per_prompt"] = {p: per[p] / counts[p] for p in per}
    return out


def mt_bench(judgments: list[dict], model: str) -> dict | None:
    per, failed, turns = defaultdict(list), 0, 0
    for j in judgments:
        if j.get("model") != model:
            continue
        turns += 1
        if j.get("score", -1) < 0:
            failed += 1
            continue
        per[str(j["question_id"])].append(float(j["score"]))
    if not turns:
        return None
    scores = [s for v in per.values() for s in v]
    return {"score": sum(scores) / len(scores) if scores else None, "n": len(scores), "failed": failed, "turns": turns,
            "per_prompt": {q: sum(v) / len(v) for q, v in per.items()}}


def attach(target: Path, alpaca_file: Path | None, leaderboard_file: Path | None, mt_file: Path | None) -> dict:
    """Write external.json into every run dir under `target` (or `target` itself) that the files judge."""
    annotations = json.loads(alpaca_file.read_text()) if alpaca_file else []
    judgments = [json.loads(line) for line in mt_file.read_text().splitlines() if line.strip()] if mt_file else []
    board = {}
    if leaderboard_file:
        with open(leaderboard_file, newline="") as f:
            for row in csv.DictReader(f):
                name = row.get("") or row.get("generator") or row.get("name")
                board[name] = row
    run_dirs = [target] if (target / "model").is_dir() else sorted(p for p in target.iterdir() if (p / "model").is_dir())
    attached = {}
    for run_dir in run_dirs:
        name = model_id(run_dir)
        result = {k: v for k, v in (("alpaca_eval", alpaca_eval(annotations, name, board.get(name))),
                                    ("mt_bench", mt_bench(judgments, name))) if v}
        if result:
            existing = json.loads((run_dir / "external.json").read_text()) if (run_dir / "external.json").exists() else {}
            write_json(run_dir / "external.json", {**existing, **result})
            attached[run_dir.name] = sorted(result)
    return attached


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m notus_lab.external", description=__doc__.splitlines()[0])
    p.add_argument("target", type=Path, help="a run dir, or a sweep dir of run dirs")
    p.add_argument("--alpaca-eval", type=Path, help="AlpacaEval annotations.json")
    p.add_argument("--leaderboard", type=Path, help="AlpacaEval leaderboard.csv")
    p.add_argument("--mt-bench", type=Path, help="FastChat MT-Bench single-answer judgments (jsonl)")
    args = p.parse_args(argv)
    problems = [("target", args.target, "a run dir or a sweep dir")] if not args.target.is_dir() else []
    problems += [(k, v, "an existing file") for k, v in (("--alpaca-eval", args.alpaca_eval),
                 ("--leaderboard", args.leaderboard), ("--mt-bench", args.mt_bench)) if v is not None and not v.is_file()]
    if not problems and not (args.alpaca_eval or args.leaderboard or args.mt_bench):
        problems.append(("--alpaca-eval", None, "at least one of --alpaca-eval, --leaderboard, --mt-bench"))
    refuse(problems)
    attached = attach(args.target, args.alpaca_eval, args.leaderboard, args.mt_bench)
    for name, judges in attached.items():
        print(f"{name}: {', '.join(judges)}")
    if not attached:
        print("error: --alpaca-eval/--mt-bench matched no run: records name their model by generator / model "
              "(the run dir's name unless notus_lab.generate --model-id said otherwise)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
