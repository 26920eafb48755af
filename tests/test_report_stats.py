"""The report's statistics on planted sweeps, every number computed by hand, external judges' files
ingested, flags for degenerate or longer answers, and the report as a W&B run."""

import csv
import json
import math

import pytest
import yaml

from notus_lab import report as R
from notus_lab.stats import z_total

from conftest import cli

WINNER = {1.0: "policy", 0.5: "tie", 0.0: "reference"}
PROMPTS = ["p0", "p1", "p2", "p3"]
# per-prompt judged outcomes (win 1, tie 0.5, loss 0) of each (strategy, seed): differences are not constant
OUTCOMES = {("critique", 1): [0, 0, 0.5, 1], ("mean_rating", 1): [1, 1, 0.5, 1],
            ("critique", 2): [0, 0, 0, 0], ("mean_rating", 2): [1, 1, 1, 1],
            ("critique", 3): [0.5, 0, 0, 1], ("mean_rating", 3): [0.5, 1, 0.5, 1]}


def plant(sweep, name, overrides, metrics, generations=None, external=None):
    run_dir = sweep / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "model").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"sweep_name": sweep.name, "wandb": {"project": "notus_lab"}}))
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if generations is not None:
        (run_dir / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in generations))
    return run_dir


def judged_sweep(tmp_path, tokens=36.0, distinct=0.75):
    for (data, seed), outcomes in OUTCOMES.items():
        records = [{"prompt": p, "sample": 0, "reference": "r", "policy": "a", "reference_score": 0.5,
                    "policy_score": o, "winner": WINNER[o]} for p, o in zip(PROMPTS, outcomes)]
        g = {"win_rate_vs_reference": sum(outcomes) / 4, "policy_mean_tokens": tokens if data == "mean_rating" else 36.0,
             "reference_mean_tokens": 36.0, "policy_distinct_2": distinct if data == "mean_rating" else 0.75,
             "reference_distinct_2": 0.75, "policy_top_word_share": 0.14}
        plant(tmp_path, f"{data}-{seed}", [f"data={data}", f"train.seed={seed}"], {"generation": g}, records)
    return tmp_path


def test_judged_differences_and_power_match_a_hand_computation(tmp_path):
    out = R.write_report(judged_sweep(tmp_path), target_effect=0.5)
    assert out["metric"] == "generation/win_rate_vs_reference"
    (d,) = out["differences"]
    # per-seed mean differences 0.5, 1.0, 0.375 -> 0.625; within-seed variance (1 + 0 + 0.6875) / 9 = 0.1875;
    # between-seed variance of the means 0.109375, net of prompt noise 0.109375 - 0.1875 / 4 = 0.0625
    assert d["method"].startswith("cluster bootstrap") and (d["n"], d["prompts"]) == (3, 4)
    assert d["mean"] == pytest.approx(0.625)
    assert d["variance"]["prompt"] == pytest.approx(0.1875) and d["variance"]["seed"] == pytest.approx(0.0625)
    z = 1.959964 + 0.841621  # z(0.975) + z(0.8), one comparison
    assert z_total(1) == pytest.approx(z, abs=1e-5)
    assert d["mde"] == pytest.approx(z * math.sqrt(0.0625 / 3 + 0.1875 / 12), rel=1e-5)  # 0.5349
    assert d["effect_size"] == pytest.approx(0.625 / math.sqrt(0.0625 + 0.1875))  # 1.25
    assert d["ci"][0] < 0.625 < d["ci"][1] and d["adjusted_ci"] == d["ci"]  # one row: no widening
    # prompts per seed for 0.5: ceil(0.1875 / (S ((0.5 / z)^2 - 0.0625 / S)))
    needed = {p["seeds"]: p["prompts"] for p in out["plan"]}
    assert needed[3] == math.ceil(0.1875 / (3 * ((0.5 / z) ** 2 - 0.0625 / 3))) == 6 and needed[10] == 1
    assert needed[2] == 156  # two seeds barely can: their noise alone nearly fills the budget
    from notus_lab.stats import prompts_needed

    assert prompts_needed(d["variance"], 0.3, 1, 2) is None  # (0.3 / z)^2 < 0.0625 / 2: no prompt count suffices
    text = (tmp_path / "report.md").read_text()
    assert "With 3 paired runs x 4 prompts this sweep detects differences >= 0.5349" in text
    assert "| 3 | 6 |" in text and (tmp_path / "forest.png").stat().st_size > 5000


def test_every_row_that_claims_excludes_zero_is_adjusted(tmp_path):
    """Two swept keys besides the seed: pooled and per-beta rows, all widened for every row."""
    for beta in ("0.01", "0.1"):
        for (data, seed), outcomes in OUTCOMES.items():
            records = [{"prompt": p, "sample": 0, "reference": "r", "policy": "a", "reference_score": 0.5,
                        "policy_score": o, "winner": WINNER[o]} for p, o in zip(PROMPTS, outcomes)]
            plant(tmp_path, f"{data}-{seed}-{beta}", [f"data={data}", f"train.seed={seed}", f"beta={beta}"],
                  {"generation": {"win_rate_vs_reference": sum(outcomes) / 4}}, records)
    out = R.write_report(tmp_path)
    assert [d["scope"] for d in out["differences"]] == ["all", "beta=0.01", "beta=0.1"]
    assert all(d["comparisons"] == 3 for d in out["differences"])
    assert z_total(3) == pytest.approx(2.393980 + 0.841621, abs=1e-5)  # z(1 - 0.05 / 6)
    for d in out["differences"]:
        assert d["adjusted_ci"][0] <= d["ci"][0] and d["adjusted_ci"][1] >= d["ci"][1]


def test_runs_without_per_prompt_records_are_paired_by_run_with_a_t_interval(tmp_path):
    diffs = {1: 0.10, 2: 0.14, 3: 0.12}
    for seed, diff in diffs.items():
        plant(tmp_path, f"a{seed}", ["data=critique", f"train.seed={seed}"], {"truth_accuracy": 0.6})
        plant(tmp_path, f"b{seed}", ["data=mean_rating", f"train.seed={seed}"], {"truth_accuracy": 0.6 + diff})
    (d,) = R.write_report(tmp_path)["differences"]
    sd = 0.02  # of 0.10, 0.14, 0.12
    assert d["method"] == "t over paired runs" and d["mean"] == pytest.approx(0.12)
    assert d["ci"][1] - 0.12 == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-4)
    assert d["mde"] == pytest.approx(z_total(1) * sd / math.sqrt(3), rel=1e-4) and d["effect_size"] == pytest.approx(6.0)


def test_collapse_and_length_are_flagged_beside_the_verdict(tmp_path):
    R.write_report(judged_sweep(tmp_path, tokens=50.0, distinct=0.3))
    text = (tmp_path / "report.md").read_text()
    assert "data=mean_rating: collapse: distinct-2 0.30 vs the reference's 0.75" in text
    assert "data=mean_rating: 39% longer than the reference: check a length-controlled win rate" in text
    assert "data=critique:" not in text.split("**Flags**")[1].split("##")[0]
    assert "| policy tokens | reference tokens | distinct-2 |" in text


def test_no_judged_or_truth_metric_asks_for_one_instead_of_grading_by_a_signals_own_labels(tmp_path):
    plant(tmp_path, "a", ["data=critique"], {"eval": {"critique": {"rewards/accuracies": 0.9}}})
    proc = cli("notus_lab.report", str(tmp_path))
    assert proc.returncode != 0 and proc.stderr.strip().startswith("error: --metric is required")
    assert "eval/critique/rewards/accuracies" in proc.stderr


# ---------------------------------------------------------------------------------------------
# External judges


def alpaca_sweep(tmp_path):
    """Two arms, two seeds; AlpacaEval's files in its own formats, the model as output_2 (or output_1)."""
    sweep = tmp_path / "sweep"
    annotations, board = [], []
    for data, seed, prefs in (("critique", 1, [1.0, 1.0, 2.0, 1.5]), ("mean_rating", 1, [2.0, 2.0, 2.0, 1.5]),
                              ("critique", 2, [1.0, 2.0, 1.0, 1.0]), ("mean_rating", 2, [2.0, 2.0, 1.5, 2.0])):
        run = plant(sweep, f"{data}-{seed}", [f"data={data}", f"train.seed={seed}"], {"truth_accuracy": 0.5})
        model = f"tiny-{data}-{seed}"
        (run / "generations").mkdir()
        (run / "generations" / "alpaca_eval.json").write_text(json.dumps([{"instruction": "p0", "output": "x",
                                                                           "generator": model, "dataset": "d"}]))
        for i, pref in enumerate(prefs):
            swap = i == 3  # AlpacaEval may put the model first: then 1.0 is its win
            annotations.append({"instruction": f"p{i}", "output_1": "m" if swap else "ref", "output_2": "ref" if swap else "m",
                                "generator_1": model if swap else "gpt4_turbo", "generator_2": "gpt4_turbo" if swap else model,
                                "preference": (3.0 - pref) if swap else pref, "annotator": "weighted_alpaca_eval_gpt4_turbo"})
        annotations.append({"instruction": "p9", "output_1": "a", "output_2": "b", "generator_1": "gpt4_turbo",
                            "generator_2": model, "preference": None, "annotator": "x"})  # a null is excluded
        board.append({"": model, "win_rate": 50.0, "standard_error": 5.0, "length_controlled_winrate": 40.0 + seed,
                      "n_wins": 0, "n_wins_base": 0, "n_draws": 0, "n_total": 4, "avg_length": 120})
    (tmp_path / "annotations.json").write_text(json.dumps(annotations))
    with open(tmp_path / "leaderboard.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(board[0]))
        writer.writeheader()
        writer.writerows(board)
    judgments = []
    for data, seed in (("critique", 1), ("mean_rating", 1), ("critique", 2), ("mean_rating", 2)):
        for q, (s1, s2) in enumerate([(6, 7), (5, -1), (8, 8)], start=81):  # -1: the judge's output did not parse
            bonus = 2 if data == "mean_rating" else 0
            judgments += [{"question_id": q, "model": f"tiny-{data}-{seed}", "judge": ["gpt-4", "single-v1"],
                           "user_prompt": "...", "judgment": "[[x]]", "score": s if s < 0 else s + bonus,
                           "turn": t, "tstamp": 0.0} for t, s in ((1, s1), (2, s2))]
    (tmp_path / "judgments.jsonl").write_text("".join(json.dumps(j) + "\n" for j in judgments))
    return sweep


def test_alpaca_eval_and_mt_bench_files_attach_to_their_runs_and_decide_like_any_metric(tmp_path):
    sweep = alpaca_sweep(tmp_path)
    proc = cli("notus_lab.external", str(sweep), "--alpaca-eval", str(tmp_path / "annotations.json"),
               "--leaderboard", str(tmp_path / "leaderboard.csv"), "--mt-bench", str(tmp_path / "judgments.jsonl"))
    assert proc.returncode == 0, proc.stderr
    ext = json.loads((sweep / "critique-1" / "external.json").read_text())
    a = ext["alpaca_eval"]  # prefs 1.0, 1.0, 2.0 and a swapped tie: 1 win, 2 losses, 1 tie; the null left out
    assert (a["wins"], a["losses"], a["ties"], a["n"]) == (1, 2, 1, 4) and a["win_rate"] == pytest.approx(1.5 / 4)
    assert a["per_prompt"] == {"p0": 0.0, "p1": 0.0, "p2": 1.0, "p3": 0.5}
    assert a["length_controlled_winrate"] == pytest.approx(0.41) and a["n_total"] == 4
    m = ext["mt_bench"]  # scores 6, 7, 5, 8, 8 averaged; the -1 counted as failed, never averaged
    assert (m["n"], m["failed"], m["turns"]) == (5, 1, 6) and m["score"] == pytest.approx(34 / 5)
    assert m["per_prompt"] == {"81": 6.5, "82": 5.0, "83": 8.0}
    swapped = json.loads((sweep / "mean_rating-2" / "external.json").read_text())["alpaca_eval"]["per_prompt"]
    assert swapped["p3"] == 1.0  # the model as output_1 with preference 1.0 won
    out = R.write_report(sweep, metric="alpaca_eval/win_rate")
    (d,) = out["differences"]
    # per-prompt differences: seed 1 [1, 1, 0, 0], seed 2 [1, 0, 0.5, 1] -> 0.5 and 0.625
    assert d["method"].startswith("cluster bootstrap") and d["mean"] == pytest.approx(0.5625)
    mt = R.write_report(sweep, metric="mt_bench/score")["differences"][0]
    assert mt["mean"] == pytest.approx(2.0) and mt["variance"]["prompt"] == pytest.approx(0.0)


def test_external_files_that_match_no_run_are_one_line(tmp_path):
    sweep = alpaca_sweep(tmp_path)
    (tmp_path / "other.json").write_text(json.dumps([{"instruction": "p", "output_1": "a", "output_2": "b",
                                                      "generator_1": "x", "generator_2": "y", "preference": 2.0}]))
    proc = cli("notus_lab.external", str(sweep), "--alpaca-eval", str(tmp_path / "other.json"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "matched no run" in proc.stderr
