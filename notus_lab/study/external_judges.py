"""External judges, attached to the run dirs they judged, counted as the tools count them, for the report to
use like any metric.

    python -m notus_lab.external <sweep or run dir> [--alpaca-eval annotations.json] [--leaderboard leaderboard.csv]
                                                    [--mt-bench model_judgment/gpt-4_single.jsonl]
                                                    [--mt-bench ..._pair.jsonl]

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
`mt_bench/score`, `mt_bench_pair/win_rate_adjusted` (`--metric`), prompt by prompt where the judge gives
per-prompt verdicts.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from notus_lab.core.files import read_jsonl, write_json
from notus_lab.core.run_dir import RunDir

PERCENT = ("win_rate", "standard_error", "discrete_win_rate", "length_controlled_winrate", "lc_standard_error")


LEADERBOARD = PERCENT + ("n_wins", "n_wins_base", "n_draws", "n_total", "avg_length", "mode")


EVAL_SET = 805


GAMED = {"repo_id": "tatsu-lab/alpaca_eval", "filename": "df_gamed.csv", "repo_type": "dataset"}  # LC v1's hub file


def model_id(run_dir: Path) -> str:
    """The name the run's answers went to the judges under."""
    exported = RunDir(run_dir).exports / "alpaca_eval.json"
    if exported.exists():
        records = json.loads(exported.read_text())
        if records:
            return records[0]["generator"]
    return run_dir.name


def _preference(value) -> float | None:
    """A preference as alpaca_eval reads it: 0 is a draw (1.5), nulls and values outside [1, 2] dropped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = 1.5 if float(value) == 0 else float(value)
    return value if 1 <= value <= 2 else None


def as_output_2(annotations: list[dict], model: str) -> list[dict]:
    """The model's annotations with the model as output_2 (AlpacaEval's orientation); mirrored where it was
    output_1, so that its preference - 1 is always the model's outcome."""
    out = []
    for a in annotations:
        if a.get("generator_2") == model:
            out.append(dict(a))
        elif a.get("generator_1") == model:
            pref = _preference(a.get("preference"))
            out.append(
                {
                    **a,
                    "output_1": a.get("output_2"),
                    "output_2": a.get("output_1"),
                    "generator_1": a.get("generator_2"),
                    "generator_2": model,
                    "preference": None if pref is None else 3.0 - pref,
                }
            )
    return out


def winrate(records: list[dict]) -> dict:
    """alpaca_eval's head-to-head numbers (shares, not percent): its own `get_winrate` where it installs."""
    try:
        from alpaca_eval.metrics import get_winrate
    except ImportError:
        get_winrate = None
    if get_winrate is not None:
        out = {k: float(v) for k, v in get_winrate([{"preference": r["preference"]} for r in records]).items()}
        out["computed_by"] = "alpaca_eval.metrics.get_winrate"
    else:  # the same formulas (alpaca_eval/metrics/helpers.py), for an install without the extra
        prefs = [p for p in (_preference(r["preference"]) for r in records) if p is not None]
        outcomes = [p - 1 for p in prefs]
        discrete = [0.5 if p == 1.5 else float(round(p) - 1) for p in prefs]
        out = {
            "win_rate": 100 * statistics.fmean(outcomes) if outcomes else math.nan,
            "standard_error": 100 * statistics.stdev(outcomes) / math.sqrt(len(outcomes))
            if len(outcomes) > 1
            else math.nan,
            "n_wins": float(sum(o > 0.5 for o in outcomes)),
            "n_wins_base": float(sum(o < 0.5 for o in outcomes)),
            "n_draws": float(sum(p == 1.5 for p in prefs)),
            "n_total": float(len(outcomes)),
            "discrete_win_rate": 100 * statistics.fmean(discrete) if discrete else math.nan,
            "computed_by": "notus_lab (alpaca_eval's formulas; alpaca-eval not installed)",
        }
    for key in PERCENT:
        if key in out:
            out[key] = None if math.isnan(out[key]) else out[key] / 100
    return out


def minimal_lc_features(frame):
    """alpaca_eval's featurisation (metrics/glm_winrate.py `_get_featurized_data`) without the hub's
    instruction difficulty, which the `length_controlled_minimal` formula does not use."""
    delta = frame["output_1"].str.len() - frame["output_2"].str.len()
    out = frame[["preference"]].astype(float).replace({0.0: 1.5}) - 1
    out["std_delta_len"] = delta / delta.std()
    out["not_gamed_baseline"] = True
    return out


def length_controlled(records: list[dict]) -> dict | None:
    """AlpacaEval 2's headline, with alpaca_eval's own GLM; None without the alpaca-eval package."""
    try:
        import pandas as pd
        from alpaca_eval import constants
        from alpaca_eval.metrics import glm_winrate
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    frame = pd.DataFrame(records)
    frame["preference"] = [_preference(p) for p in frame["preference"]]
    if len(frame) < 10 or frame["generator_1"].nunique() != 1:  # the GLM's 5 folds, one baseline
        return None
    # v1 indexes the hub's instruction difficulty by position: only the 805 prompts in AlpacaEval's order
    if len(frame) == EVAL_SET and isinstance(
        try_to_load_from_cache(cache_dir=constants.DEFAULT_CACHE_DIR, **GAMED), str
    ):
        lc = glm_winrate.get_length_controlled_winrate(
            frame, glm_name="length_controlled_v1", save_weights_dir=None, is_warn_extreme_changes=False
        )
        glm = "length_controlled_v1"
    else:
        info = glm_winrate.GLM_INFO["length_controlled_minimal"]
        train = minimal_lc_features(frame)
        test = train[["not_gamed_baseline"]].assign(std_delta_len=0.0)
        train, test = glm_winrate.make_dmatrix_for_model(
            train[train["preference"].notna()], test, formula=info["formula"]
        )
        model = glm_winrate.fit_LogisticRegressionCV(train, "preference", is_ytrue_proba=True, **info["kwargs"])
        predicted = pd.Series(model.predict_proba(test)[:, 1])  # each prompt's preference at no length difference
        lc = {"length_controlled_winrate": predicted.mean() * 100, "lc_standard_error": predicted.sem() * 100}
        glm = "length_controlled_minimal (offline: alpaca_eval's GLM without the hub's instruction difficulty)"
    out = {
        "length_controlled_winrate": float(lc["length_controlled_winrate"]) / 100,
        "lc_standard_error": float(lc["lc_standard_error"]) / 100,
        "lc_model": glm,
        "avg_length": float(frame["output_2"].str.len().mean()),
    }
    if glm.startswith("length_controlled_minimal"):
        # without the hub's instruction difficulty the GLM predicts one value for every prompt, so alpaca_eval's
        # standard error (the prompts' sem) is exactly 0: kept as the tool's, never shown as a real one
        out["lc_standard_error_tool"], out["lc_standard_error"] = out["lc_standard_error"], None
        out["lc_standard_error_note"] = (
            "none offline: the minimal GLM predicts the same preference for every prompt; "
            "alpaca_eval's own standard error of it is 0"
        )
    return out


def alpaca_eval(annotations: list[dict], model: str, leaderboard: dict | None = None) -> dict | None:
    records = as_output_2(annotations, model)
    out = {}
    if records:
        counted = winrate(records)
        out.update(
            counted,
            wins=int(counted["n_wins"]),
            losses=int(counted["n_wins_base"]),
            ties=int(counted["n_draws"]),
            n=int(counted["n_total"]),
        )
        out.update(length_controlled(records) or {})
        per, counts = defaultdict(float), defaultdict(int)
        for r in records:
            if (pref := _preference(r["preference"])) is not None:
                per[r["instruction"]] += pref - 1
                counts[r["instruction"]] += 1
        out["per_prompt"] = {p: per[p] / counts[p] for p in per}
    for key in LEADERBOARD if leaderboard else ():  # the tool's own summary; its percentages become shares
        if leaderboard.get(key) not in (None, ""):
            value = leaderboard[key] if key == "mode" else float(leaderboard[key])
            out[f"leaderboard_{key}"] = value / 100 if key in PERCENT else value
    return out or None


def mt_bench(judgments: list[dict], model: str) -> dict | None:
    """FastChat's single-answer grading: the mean over every parsed turn, and each turn's mean."""
    per, by_turn, failed, turns, judges = defaultdict(list), defaultdict(list), 0, 0, set()
    for j in judgments:
        if j.get("model") != model:
            continue
        turns += 1
        judges.add(j["judge"][0] if isinstance(j.get("judge"), (list, tuple)) else j.get("judge"))
        if j.get("score", -1) == -1:
            failed += 1
            continue
        per[str(j["question_id"])].append(float(j["score"]))
        by_turn[int(j.get("turn", 1))].append(float(j["score"]))
    if not turns:
        return None
    scores = [s for v in per.values() for s in v]
    return {
        "score": statistics.fmean(scores) if scores else None,
        "n": len(scores),
        "failed": failed,
        "turns": turns,
        **{f"turn_{t}": statistics.fmean(v) for t, v in sorted(by_turn.items())},
        "judges": sorted(map(str, judges)),
        "per_prompt": {q: statistics.fmean(v) for q, v in per.items()},
    }


def mt_bench_pair(judgments: list[dict], model: str) -> dict | None:
    """FastChat's pairwise grading (show_result --mode pairwise-*): win 1, loss 0, tie 0.5 when either order
    says tie or the orders disagree; judge errors excluded."""
    per, opponents, errors = defaultdict(list), set(), 0
    for j in judgments:
        if model not in (j.get("model_1"), j.get("model_2")):
            continue
        if "error" in (j.get("g1_winner"), j.get("g2_winner")):
            errors += 1
            continue
        me = "model_1" if j["model_1"] == model else "model_2"
        opponents.add(j["model_2"] if me == "model_1" else j["model_1"])
        g1, g2 = j["g1_winner"], j["g2_winner"]
        per[str(j["question_id"])].append(0.5 if g1 == "tie" or g1 != g2 else float(g1 == me))
    outcomes = [o for v in per.values() for o in v]
    if not outcomes:
        return None
    # FastChat's show_result names this win_rate_adjusted: (wins + ties / 2) / all
    return {
        "win_rate_adjusted": statistics.fmean(outcomes),
        "wins": sum(o == 1 for o in outcomes),
        "losses": sum(o == 0 for o in outcomes),
        "ties": sum(o == 0.5 for o in outcomes),
        "n": len(outcomes),
        "errors": errors,
        "opponents": sorted(opponents),
        "per_prompt": {q: statistics.fmean(v) for q, v in per.items()},
    }


def attach(target: Path, alpaca_file: Path | None, leaderboard_file: Path | None, mt_files: list[Path] = ()) -> dict:
    """Write external.json into every run dir under `target` (or `target` itself) that the files judge."""
    annotations = json.loads(alpaca_file.read_text()) if alpaca_file else []
    single, pair = [], []
    for path in mt_files:
        records = read_jsonl(path)
        (pair if records and "model_1" in records[0] else single).extend(records)
    board = {}
    if leaderboard_file:
        with open(leaderboard_file, newline="") as f:
            for row in csv.DictReader(f):
                board[row.get("") or row.get("generator") or row.get("name")] = row
    run_dirs = (
        [target] if RunDir(target).model.is_dir() else sorted(p for p in target.iterdir() if RunDir(p).model.is_dir())
    )
    attached = {}
    for run_dir in run_dirs:
        name = model_id(run_dir)
        result = {
            k: v
            for k, v in (
                ("alpaca_eval", alpaca_eval(annotations, name, board.get(name))),
                ("mt_bench", mt_bench(single, name)),
                ("mt_bench_pair", mt_bench_pair(pair, name)),
            )
            if v
        }
        if result:
            target = RunDir(run_dir).external
            existing = json.loads(target.read_text()) if target.exists() else {}
            write_json(target, {**existing, **{k: {**existing.get(k, {}), **v} for k, v in result.items()}})
            attached[run_dir.name] = sorted(result)
    return attached
