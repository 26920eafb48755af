"""The report's statistics on planted sweeps, every number computed by hand, external judges' files
ingested, flags for degenerate or longer answers, and the report as a W&B run."""

import csv
import json
import math

import pytest
import yaml

from notus_lab.study import findings as R
from notus_lab.study.stats import detectable
from tests.helpers import cli, judged_records

# per-prompt judged outcomes (win 1, tie 0.5, loss 0) of each (strategy, seed): differences are not constant
OUTCOMES = {
    ("critique", 1): [0, 0, 0.5, 1],
    ("mean_rating", 1): [1, 1, 0.5, 1],
    ("critique", 2): [0, 0, 0, 0],
    ("mean_rating", 2): [1, 1, 1, 1],
    ("critique", 3): [0.5, 0, 0, 1],
    ("mean_rating", 3): [0.5, 1, 0.5, 1],
}


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
        records = judged_records(outcomes)  # prompts p0-p3
        g = {
            "win_rate_vs_reference": sum(outcomes) / 4,
            "policy_mean_tokens": tokens if data == "mean_rating" else 36.0,
            "reference_mean_tokens": 36.0,
            "policy_distinct_2": distinct if data == "mean_rating" else 0.75,
            "reference_distinct_2": 0.75,
            "policy_top_word_share": 0.14,
        }
        plant(tmp_path, f"{data}-{seed}", [f"data={data}", f"train.seed={seed}"], {"generation": g}, records)
    return tmp_path


def t(q, df):
    from scipy.stats import t as student

    return student.ppf(q, df)


def test_judged_differences_and_power_match_a_hand_computation(tmp_path):
    out = R.write_report(judged_sweep(tmp_path), target_effect=0.5)
    assert out["metric"] == "generation/win_rate_vs_reference"
    (d,) = out["differences"]
    # B - A per seed x prompt: [1, 1, 0, 0], [1, 1, 1, 1], [0, 1, .5, 0]; grand mean 0.625
    # seed means .5, 1, .375 -> MS_seed = 4 x 0.21875 / 2 = 0.4375; prompt means 2/3, 1, .5, 1/3 -> MS_prompt
    # = 0.2430556; SS_total 2.5625 -> MS_resid = (2.5625 - 2 x 0.4375 - 3 x 0.2430556) / 6 = 0.1597222
    ms_s, ms_p, ms_e = 0.4375, 0.2430556, 0.1597222
    assert d["method"].startswith("crossed random effects") and (d["n"], d["seeds"], d["prompts"]) == (3, 3, 4)
    assert d["mean"] == pytest.approx(0.625) and d["df"] == {"seed": 2, "prompt": 3}
    v = d["variance"]
    assert v["seed"] == pytest.approx((ms_s - ms_e) / 4, rel=1e-5) and v["prompt"] == pytest.approx(
        (ms_p - ms_e) / 3, rel=1e-5
    )
    assert v["resid"] == pytest.approx(ms_e, rel=1e-5)
    v_seed, v_prompt = ms_s / 12, (ms_p - ms_e) / 12  # Banerjee: each part with its own t
    half = math.sqrt(t(0.975, 2) ** 2 * v_seed + t(0.975, 3) ** 2 * v_prompt)  # 0.8633
    # one pooled row: Holm's family has one member, so its adjusted interval is the 95 % one
    assert d["ci"] == pytest.approx([0.625 - half, 0.625 + half], rel=1e-5) and d["adjusted_ci"] == pytest.approx(
        d["ci"]
    )
    # the p-value is the alpha at which that same hand-built interval touches 0
    p = d["p_value"]
    assert math.sqrt(t(1 - p / 2, 2) ** 2 * v_seed + t(1 - p / 2, 3) ** 2 * v_prompt) == pytest.approx(0.625, rel=1e-6)
    assert d["mde"] > half  # power at the interval's own half-width is about 50 %, never 80 %
    assert d["effect_size"] == pytest.approx(0.625 / math.sqrt(v["seed"] + v["prompt"] + v["resid"]))
    assert not d["excludes_zero"] and out["verdicts"] == []  # 3 seeds x 4 prompts cannot carry this claim
    # an arm's own interval rests on its seeds x the shared prompts, as the differences' do
    arm = next(a for a in out["arms"] if a["arm"] == {"data": "mean_rating"})
    assert arm["method"].startswith("crossed random effects") and arm["prompts"] == 4
    # the plan: the fewest shared prompts whose detectable difference reaches 0.5, from the same model
    needed = {p["seeds"]: p["prompts"] for p in out["plan"]}
    assert needed[2] is None  # with 2 seeds, seed noise alone (t with 1 df) is wider than 0.5
    for seeds, prompts in needed.items():
        if prompts is not None:
            assert (
                detectable(v, 1, seeds, prompts) <= 0.5 < (detectable(v, 1, seeds, prompts - 1) if prompts > 2 else 1)
            )
    text = (tmp_path / "report.md").read_text()
    assert f"With 3 seeds x 4 prompts this sweep detects differences >= {d['mde']:.4f}" in text
    assert "Seed noise has 2 degrees of freedom: the intervals are wide" in text
    assert (tmp_path / "forest.png").stat().st_size > 5000


def shared_prompt_sweep(tmp_path, seeds, betas, per_seed_gap, lean, prompts=300, rng_seed=0):
    """Judged runs on ONE prompt set: B - A on prompt p in seed s is per_seed_gap[s] + lean[p] + noise."""
    import numpy as np

    rng = np.random.default_rng(rng_seed)
    for s in range(seeds):
        for beta in betas:
            a = rng.random(prompts) < 0.5
            for data, outcome in (("critique_fixed", a), ("mean_rating", None)):
                if outcome is None:  # B wins where the gap and the prompt's lean push it over a coin flip
                    outcome = rng.random(prompts) < 0.5 + per_seed_gap[s] + lean
                records = judged_records(outcome)
                plant(
                    tmp_path,
                    f"{data}-{beta}-{s}",
                    [f"data={data}", f"beta={beta}", f"train.seed={s}"],
                    {"generation": {"win_rate_vs_reference": float(np.mean(outcome))}},
                    records,
                )
    return tmp_path


def test_two_seeds_that_disagree_carry_no_verdict_and_the_report_says_why(tmp_path):
    """The issue's case: per-seed gaps +0.075 and +0.005, no larger than the gap between seeds."""
    import numpy as np

    out = R.write_report(shared_prompt_sweep(tmp_path, 2, ["0.1"], [0.075, 0.005], np.zeros(300)))
    (d,) = out["differences"]
    assert (d["seeds"], d["prompts"], d["df"]["seed"]) == (2, 300, 1)
    assert out["verdicts"] == [] and d["ci"][0] < 0 < d["ci"][1]
    assert d["ci"][1] - d["ci"][0] > 0.3  # a t with 1 degree of freedom for the seed part: about +-0.45
    text = (tmp_path / "report.md").read_text()
    assert (
        "Seed noise has 1 degree of freedom: the intervals are wide, and a verdict between close strategies "
        "needs more seeds" in text
    )


def test_a_prompt_lean_shared_by_every_context_is_not_fresh_evidence_in_each(tmp_path):
    """3 seeds x 2 betas on the same 300 prompts; the realised prompts lean to mean_rating (the prompt-level mean
    lean is +0.02, z ~ 1.5 against prompt noise) though the strategies are equally good in expectation."""
    import numpy as np

    lean = np.random.default_rng(5).normal(0, 0.25, 300)
    lean += 0.02 - lean.mean()
    out = R.write_report(shared_prompt_sweep(tmp_path, 3, ["0.01", "0.1"], [0.0, 0.0, 0.0], lean, rng_seed=3))
    pooled = next(d for d in out["differences"] if d["pooled"])
    assert (pooled["n"], pooled["seeds"], pooled["prompts"]) == (6, 3, 300)  # betas share their seed: 3 units
    assert pooled["variance"]["prompt"] > 0.03  # the shared lean is measured as its own component
    assert out["verdicts"] == [] and pooled["adjusted_ci"][0] < 0.0


def test_keys_that_change_the_world_are_never_pooled_into_one_verdict(tmp_path):
    """world_sensitivity's shape: the answer flips with annotator_correlation; each value gets its own row."""
    for corr, gap in (("0.1", 0.3), ("0.5", -0.3)):
        for seed in range(4):
            for data, shift in (("critique_fixed", 0.0), ("mean_rating", gap)):
                acc = 0.6 + shift + 0.01 * seed + (0.005 if seed % 2 and data == "mean_rating" else 0)
                plant(
                    tmp_path,
                    f"{data}-{corr}-{seed}",
                    [f"data={data}", f"data.world.annotator_correlation={corr}", f"train.seed={seed}"],
                    {"truth_accuracy": acc},
                )
    out = R.write_report(tmp_path)
    scopes = {d["scope"]: d for d in out["differences"]}
    assert set(scopes) == {"data.world.annotator_correlation=0.1", "data.world.annotator_correlation=0.5"}
    assert all(d["pooled"] and d["seeds"] == 4 for d in scopes.values())
    assert len(out["verdicts"]) == 2
    assert any(
        v.startswith(
            "**mean_rating** beats **critique_fixed** on `truth_accuracy` at data.world.annotator_correlation=0.1 by"
        )
        for v in out["verdicts"]
    )
    assert any(
        v.startswith("**critique_fixed** beats **mean_rating**") and v.endswith(")") and "=0.5 by" in v
        for v in out["verdicts"]
    )


def test_only_the_pooled_rows_form_the_family_and_scope_rows_claim_nothing(tmp_path):
    """Two swept keys besides the seed: one pooled row decides, the per-beta rows describe it."""
    for beta in ("0.01", "0.1"):
        for (data, seed), outcomes in OUTCOMES.items():
            records = judged_records(outcomes)
            plant(
                tmp_path,
                f"{data}-{seed}-{beta}",
                [f"data={data}", f"train.seed={seed}", f"beta={beta}"],
                {"generation": {"win_rate_vs_reference": sum(outcomes) / 4}},
                records,
            )
    out = R.write_report(tmp_path)
    assert [(d["scope"], d["pooled"]) for d in out["differences"]] == [
        ("all", True),
        ("beta=0.01", False),
        ("beta=0.1", False),
    ]
    assert all(d["comparisons"] == 1 for d in out["differences"])  # the family: the one pooled row, not all 3 rows
    pooled, *scoped = out["differences"]
    assert pooled["adjusted_alpha"] == 0.05 and pooled["adjusted_ci"] == pytest.approx(pooled["ci"])
    for d in scoped:
        assert d["ci"][0] is not None and d["adjusted_ci"] == [None, None] and not d["excludes_zero"]
    assert "— (describes a pooled row)" in (tmp_path / "report.md").read_text()


def test_holm_rejects_what_bonferroni_over_the_family_would_miss_and_stops_at_the_first_failure():
    from notus_lab.study.stats import holm

    rows = [{"p_value": p} for p in (0.04, 0.01, 0.02)]
    holm(rows)  # 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05: all three; Bonferroni (0.0167 each) only one
    assert [r["excludes_zero"] for r in rows] == [True, True, True]
    assert [r["adjusted_alpha"] for r in rows] == pytest.approx([0.05, 0.05 / 3, 0.025])
    rows = [{"p_value": p} for p in (0.012, 0.03, 0.02, None)]
    holm(rows)  # 0.012 <= 0.0125; 0.02 > 0.0167 fails, so 0.03 is not rejected though 0.03 <= 0.05/2
    assert [r["excludes_zero"] for r in rows] == [True, False, False, False]
    assert [r["adjusted_alpha"] for r in rows] == pytest.approx([0.0125, 0.05 / 3, 0.05 / 3, 0.05 / 3])


def test_two_seed_units_that_tie_give_no_verdict(tmp_path):
    """A new user's case: 2 seeds x 300 prompts, no true difference, seed 2's outcomes a shuffle of seed 1's.
    The seed units' means tie, MS_seed is 0; the interval used to rest on the prompt part alone (zero width
    once that clipped too) and wrote "mean_rating beats critique_fixed by 0.0252"."""
    import numpy as np

    rng = np.random.default_rng(11)
    a = (rng.random(300) < 0.5).astype(float)
    b = (rng.random(300) < 0.5).astype(float)
    while abs(b.mean() - a.mean()) < 0.02:  # a realised gap of a few points, as the user saw
        b = (rng.random(300) < 0.5).astype(float)
    order = rng.permutation(300)
    for s, (oa, ob) in enumerate(((a, b), (a[order], b[order]))):
        for data, outcome in (("critique_fixed", oa), ("mean_rating", ob)):
            records = judged_records(outcome)
            plant(
                tmp_path,
                f"{data}-{s}",
                [f"data={data}", f"train.seed={s}"],
                {"generation": {"win_rate_vs_reference": float(outcome.mean())}},
                records,
            )
    out = R.write_report(tmp_path)
    (d,) = out["differences"]
    assert d["variance"]["seed"] == 0 and abs(d["mean"]) >= 0.02
    assert out["verdicts"] == [] and d["ci"][0] < 0 < d["ci"][1] and d["ci"][1] - d["ci"][0] > 0.1


def test_data_without_any_variation_gets_no_interval_and_no_verdict(tmp_path):
    """Every seed and prompt says B won: no variance to measure. A zero-width interval would 'exclude 0'."""
    for s in (1, 2):
        for data, o in (("critique", 0.0), ("mean_rating", 1.0)):
            records = judged_records([o] * 5)
            plant(
                tmp_path,
                f"{data}-{s}",
                [f"data={data}", f"train.seed={s}"],
                {"generation": {"win_rate_vs_reference": o}},
                records,
            )
    out = R.write_report(tmp_path)
    (d,) = out["differences"]
    assert d["mean"] == 1.0 and d["ci"] == [None, None] and not d["excludes_zero"] and out["verdicts"] == []
    assert d["no_interval"].startswith("no variation")
    assert all(a["ci"][0] is None or a["ci"][0] != a["ci"][1] for a in out["arms"])  # the arms: no zero width
    assert "No pooled row has an interval: no variation" in (tmp_path / "report.md").read_text()


def test_runs_without_per_prompt_records_are_paired_by_run_with_a_t_interval(tmp_path):
    diffs = {1: 0.10, 2: 0.14, 3: 0.12}
    for seed, diff in diffs.items():
        plant(tmp_path, f"a{seed}", ["data=critique", f"train.seed={seed}"], {"truth_accuracy": 0.6})
        plant(tmp_path, f"b{seed}", ["data=mean_rating", f"train.seed={seed}"], {"truth_accuracy": 0.6 + diff})
    (d,) = R.write_report(tmp_path)["differences"]
    sd = 0.02  # of 0.10, 0.14, 0.12
    assert d["method"].startswith("t over seed units") and d["mean"] == pytest.approx(0.12) and "prompts" not in d
    half = t(0.975, 2) * sd / math.sqrt(3)
    assert d["ci"][1] - 0.12 == pytest.approx(half, rel=1e-4)
    # power of a t-test on 3 seed units is exact: the noncentral t with 2 df finds the MDE 80 % of the time
    from scipy.stats import nct

    crit, se = t(0.975, 2), sd / math.sqrt(3)
    reached = nct.sf(crit, 2, d["mde"] / se) + nct.cdf(-crit, 2, d["mde"] / se)
    assert reached == pytest.approx(0.8, abs=0.002) and d["mde"] > half
    assert d["effect_size"] == pytest.approx(6.0)


def test_one_seed_gives_no_interval_and_asks_for_seeds(tmp_path):
    for beta, diff in (("0.01", 0.1), ("0.1", 0.12)):  # two betas, ONE seed: both contexts share it
        plant(tmp_path, f"a{beta}", ["data=critique", f"beta={beta}"], {"truth_accuracy": 0.6})
        plant(tmp_path, f"b{beta}", ["data=mean_rating", f"beta={beta}"], {"truth_accuracy": 0.6 + diff})
    out = R.write_report(tmp_path)
    pooled = out["differences"][0]
    assert pooled["seeds"] == 1 and pooled["ci"] == [None, None] and not pooled["excludes_zero"]
    assert out["verdicts"] == [] and "A verdict needs at least 2 seeds" in (tmp_path / "report.md").read_text()


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
    for data, seed, prefs in (
        ("critique", 1, [1.0, 1.0, 2.0, 1.5]),
        ("mean_rating", 1, [2.0, 2.0, 2.0, 1.5]),
        ("critique", 2, [1.0, 2.0, 1.0, 1.0]),
        ("mean_rating", 2, [2.0, 2.0, 1.5, 2.0]),
    ):
        run = plant(sweep, f"{data}-{seed}", [f"data={data}", f"train.seed={seed}"], {"truth_accuracy": 0.5})
        model = f"tiny-{data}-{seed}"
        (run / "generations").mkdir()
        (run / "generations" / "alpaca_eval.json").write_text(
            json.dumps([{"instruction": "p0", "output": "x", "generator": model, "dataset": "d"}])
        )
        for i, pref in enumerate(prefs):
            swap = i == 3  # AlpacaEval may put the model first: then 1.0 is its win
            annotations.append(
                {
                    "instruction": f"p{i}",
                    "output_1": "m" if swap else "ref",
                    "output_2": "ref" if swap else "m",
                    "generator_1": model if swap else "gpt4_turbo",
                    "generator_2": "gpt4_turbo" if swap else model,
                    "preference": (3.0 - pref) if swap else pref,
                    "annotator": "weighted_alpaca_eval_gpt4_turbo",
                }
            )
        annotations.append(
            {
                "instruction": "p9",
                "output_1": "a",
                "output_2": "b",
                "generator_1": "gpt4_turbo",
                "generator_2": model,
                "preference": None,
                "annotator": "x",
            }
        )  # a null is excluded
        board.append(
            {
                "": model,
                "win_rate": 50.0,
                "standard_error": 5.0,
                "length_controlled_winrate": 40.0 + seed,
                "n_wins": 0,
                "n_wins_base": 0,
                "n_draws": 0,
                "n_total": 4,
                "avg_length": 120,
            }
        )
    (tmp_path / "annotations.json").write_text(json.dumps(annotations))
    with open(tmp_path / "leaderboard.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(board[0]))
        writer.writeheader()
        writer.writerows(board)
    judgments = []
    for data, seed in (("critique", 1), ("mean_rating", 1), ("critique", 2), ("mean_rating", 2)):
        for q, (s1, s2) in enumerate([(6, 7), (5, -1), (8, 8)], start=81):  # -1: the judge's output did not parse
            bonus = 2 if data == "mean_rating" else 0
            judgments += [
                {
                    "question_id": q,
                    "model": f"tiny-{data}-{seed}",
                    "judge": ["gpt-4", "single-v1"],
                    "user_prompt": "...",
                    "judgment": "[[x]]",
                    "score": s if s < 0 else s + bonus,
                    "turn": t,
                    "tstamp": 0.0,
                }
                for t, s in ((1, s1), (2, s2))
            ]
    (tmp_path / "judgments.jsonl").write_text("".join(json.dumps(j) + "\n" for j in judgments))
    return sweep


def test_alpaca_eval_and_mt_bench_files_attach_to_their_runs_and_decide_like_any_metric(tmp_path):
    sweep = alpaca_sweep(tmp_path)
    proc = cli(
        "notus_lab.external",
        str(sweep),
        "--alpaca-eval",
        str(tmp_path / "annotations.json"),
        "--leaderboard",
        str(tmp_path / "leaderboard.csv"),
        "--mt-bench",
        str(tmp_path / "judgments.jsonl"),
    )
    assert proc.returncode == 0, proc.stderr
    ext = json.loads((sweep / "critique-1" / "external.json").read_text())
    a = ext["alpaca_eval"]  # prefs 1.0, 1.0, 2.0 and a swapped tie: 1 win, 2 losses, 1 tie; the null left out
    assert (a["wins"], a["losses"], a["ties"], a["n"]) == (1, 2, 1, 4) and a["win_rate"] == pytest.approx(1.5 / 4)
    assert a["per_prompt"] == {"p0": 0.0, "p1": 0.0, "p2": 1.0, "p3": 0.5}
    assert a["leaderboard_length_controlled_winrate"] == pytest.approx(0.41) and a["leaderboard_n_total"] == 4
    assert a["n_total"] == 4 and "length_controlled_winrate" not in a  # too few annotations for the GLM
    m = ext["mt_bench"]  # scores 6, 7, 5, 8, 8 averaged; the -1 counted as failed, never averaged
    assert (m["n"], m["failed"], m["turns"]) == (5, 1, 6) and m["score"] == pytest.approx(34 / 5)
    assert (m["turn_1"], m["turn_2"]) == (pytest.approx(19 / 3), pytest.approx(15 / 2))
    assert m["per_prompt"] == {"81": 6.5, "82": 5.0, "83": 8.0}
    swapped = json.loads((sweep / "mean_rating-2" / "external.json").read_text())["alpaca_eval"]["per_prompt"]
    assert swapped["p3"] == 1.0  # the model as output_1 with preference 1.0 won
    out = R.write_report(sweep, metric="alpaca_eval/win_rate")
    (d,) = out["differences"]
    # per-prompt differences: seed 1 [1, 1, 0, 0], seed 2 [1, 0, 0.5, 1] -> 0.5 and 0.625
    assert d["method"].startswith("crossed random effects") and d["mean"] == pytest.approx(0.5625)
    mt = R.write_report(sweep, metric="mt_bench/score")["differences"][0]
    assert mt["mean"] == pytest.approx(2.0) and mt["variance"]["prompt"] == pytest.approx(0.0)
