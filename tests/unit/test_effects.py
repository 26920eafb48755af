"""Factorial effects of the data knobs: a planted sweep where only the tie rule matters gets an effect for the tie
rule and none for the signal, the published corners' difference is split into parts that add up, and the
intervals' coverage, false attribution and power are measured on planted designs through the same functions."""

import numpy as np
import pytest

from notus_lab.study import findings as R
from notus_lab.study.effects import SCENARIOS, factorial_check
from notus_lab.study.planted import mc_error
from tests.helpers import plant_crossed, plant_judged

LEVELS = {
    "data": ["critique_fixed", "mean_rating"],
    "data.tie_policy": ["drop", "keep"],
    "data.rejected": ["lowest", "random"],
}


def plant_factorial(sweep, lift, seeds=3, prompts=200):
    """Run dirs of the 2 x 2 x 2 design; each prompt's judged outcome is a coin with p = 0.6 + lift(cell)."""
    rng = np.random.default_rng(0)
    for data in LEVELS["data"]:
        for tie in LEVELS["data.tie_policy"]:
            for rej in LEVELS["data.rejected"]:
                for seed in range(1, seeds + 1):
                    won = rng.random(prompts) < 0.6 + lift(data, tie, rej)
                    overrides = [f"data={data}", f"data.tie_policy={tie}", f"data.rejected={rej}"]
                    plant_judged(sweep / f"{data}-{tie}-{rej}-{seed}", [*overrides, f"train.seed={seed}"], won)
    return sweep


def test_a_sweep_where_only_the_tie_rule_matters_says_so_and_nothing_about_the_signal(tmp_path):
    out = R.write_report(plant_factorial(tmp_path, lambda data, tie, rej: 0.15 if tie == "keep" else 0.0, seeds=6))
    rows = {r["factor"]: r for r in out["effects"]["rows"]}
    assert set(rows) == {
        "data",
        "data.tie_policy",
        "data.rejected",
        "data x data.tie_policy",
        "data x data.rejected",
        "data.rejected x data.tie_policy",
    }
    tie = rows["data.tie_policy"]
    assert tie["contrast"] == ["drop", "keep"] and tie["decided"] and 0.1 < tie["mean"] < 0.2
    assert tie["adjusted_ci"][0] < tie["ci"][0] and tie["comparisons"] == 6 and tie["seeds"] == 6
    assert not any(r["decided"] for k, r in rows.items() if k != "data.tie_policy")
    text = (tmp_path / "report.md").read_text()
    assert "## Effects" in text and "| data.tie_policy | drop | keep |" in text and "effects.png" in out["plots"]


def test_the_corners_difference_is_split_into_parts_that_add_up(tmp_path):
    lift = {"critique_fixed": 0.0, "mean_rating": 0.1}
    out = R.write_report(plant_factorial(tmp_path, lambda data, tie, rej: lift[data] + (0.05 if tie == "keep" else 0)))
    d = out["effects"]["decomposition"]
    assert (d["from"], d["to"]) == ("H4/Zephyr", "argilla/Notus")
    assert d["cells"] == [
        ["critique_fixed", "random", "keep"],
        ["mean_rating", "random", "drop"],
    ]  # data, rejected, ties
    parts = {p["part"]: p for p in d["parts"]}
    assert parts["data.rejected"]["ci"] is None  # both corners draw the rejected at random: no part
    assert parts["data"]["mean"] > 0.05 and parts["data.tie_policy"]["mean"] < 0  # keep -> drop loses the lift
    added = sum(p["mean"] for k, p in parts.items() if k not in ("total",) and p["ci"] is not None)
    assert added == pytest.approx(parts["total"]["mean"])
    assert "**Decomposition**: argilla/Notus − H4/Zephyr" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("seeds", [3, 6])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_effect_intervals_cover_and_never_attribute_an_effect_to_a_factor_that_has_none(scenario, seeds):
    reps = 800
    r = factorial_check(scenario, reps, seeds)
    print(f"\n{scenario}, {seeds} seeds: {r}")
    assert r["worst_coverage"] >= 0.95 - 3 * mc_error(0.95, reps)
    assert r["false_attribution"] <= 0.05 + 2 * mc_error(0.05, reps)
    if seeds == 6 and scenario in ("only the signal", "only the tie rule", "an interaction"):
        assert r["power"] > 0.6  # a planted 4-point effect is found with 6 seeds x 300 prompts


# ---------------------------------------------------------------------------------------------
# Any crossed design: 2 factors, 3 levels, numeric levels, missing arms, no corners, a sequential study


def effects_text(sweep) -> str:
    text = (sweep / "report.md").read_text()
    return text[text.index("## Effects") :].split("\n## ")[0]


def verdict_text(sweep) -> str:
    text = (sweep / "report.md").read_text()
    return text[text.index("## Verdict") :].split("\n## ")[0]


TIES = {"data": ["critique_fixed", "mean_rating"], "data.tie_policy": ["drop", "keep"]}


def test_a_2x2_of_signal_and_tie_rule_renders_its_effects_and_the_corners_decomposition(tmp_path):
    # the published corners differ on both factors, so the interactions part is identically 0 (it used to crash)
    out = R.write_report(plant_crossed(tmp_path, TIES, lambda c: 0.12 * (c["data.tie_policy"] == "keep"), seeds=4))
    rows = {r["factor"]: r for r in out["effects"]["rows"]}
    assert set(rows) == {"data", "data.tie_policy", "data x data.tie_policy"} and rows["data.tie_policy"]["decided"]
    parts = {p["part"]: p for p in out["effects"]["decomposition"]["parts"]}
    assert parts["interactions"]["ci"] is None and parts["data.tie_policy"]["mean"] < -0.05
    text = effects_text(tmp_path)
    assert "**Decomposition**: argilla/Notus − H4/Zephyr" in text and "effects.png" in out["plots"]


def test_a_decided_effect_is_in_the_verdict(tmp_path):
    R.write_report(plant_crossed(tmp_path, TIES, lambda c: 0.12 * (c["data.tie_policy"] == "keep"), seeds=4))
    verdict = verdict_text(tmp_path)
    assert "No verdict" not in verdict and "**data.tie_policy**: keep − drop = +0.1" in verdict


def test_three_levels_get_one_row_per_pair_with_readable_interaction_labels(tmp_path):
    levels = {"data": ["critique", "critique_fixed", "mean_rating"], "data.tie_policy": ["drop", "keep"]}
    out = R.write_report(plant_crossed(tmp_path, levels, lambda c: 0.1 * (c["data"] == "mean_rating"), seeds=4))
    rows = out["effects"]["rows"]
    inter = [r["contrast"] for r in rows if r["factor"] == "data x data.tie_policy"]
    assert len([r for r in rows if r["factor"] == "data"]) == 3 and len(inter) == 3
    assert ["mean_rating − critique at data.tie_policy=drop", "mean_rating − critique at data.tie_policy=keep"] in inter
    assert not any("&" in side or "+" in side for c in inter for side in c)
    # both corners are cells (H4/Zephyr at critique, keep): the decomposition is there
    assert out["effects"]["decomposition"]["cells"] == [["critique", "keep"], ["mean_rating", "drop"]]


def test_numeric_levels_sort_by_value_and_a_design_without_the_corners_says_why_in_one_line(tmp_path):
    levels = {"data": ["critique_fixed", "mean_rating"], "data.min_margin": ["10", "0", "2"]}
    out = R.write_report(plant_crossed(tmp_path, levels, lambda c: 0.01 * int(c["data.min_margin"]), seeds=4))
    margin = [r for r in out["effects"]["rows"] if r["factor"] == "data.min_margin"]
    assert [r["contrast"] for r in margin] == [["0", "2"], ["0", "10"], ["2", "10"]]
    assert all(r["mean"] > 0 for r in margin)  # low -> high by value: the planted lift grows with the margin
    assert out["effects"]["decomposition"] is None
    text = effects_text(tmp_path)
    assert "| data.min_margin | 0 | 10 |" in text and "Decomposition" not in text
    why = [line for line in text.splitlines() if "decomposition" in line.lower()]
    assert why == ["No decomposition: the published corners fix no level of data.min_margin."]


def test_a_missing_arm_drops_its_seed_only_from_the_effects_that_weigh_its_cell_and_is_named(tmp_path):
    levels = {"data": ["critique", "critique_fixed", "mean_rating"], "data.tie_policy": ["drop", "keep"]}
    sweep = plant_crossed(tmp_path, levels, lambda c: 0.0, seeds=4, skip={(("critique", "drop"), 1)})
    out = R.write_report(sweep)
    seeds = {(r["factor"], tuple(r["contrast"])): r["seeds"] for r in out["effects"]["rows"]}
    assert seeds[("data", ("critique_fixed", "mean_rating"))] == 4  # seed 1's other arms are used
    assert seeds[("data", ("critique", "mean_rating"))] == 3 and seeds[("data.tie_policy", ("drop", "keep"))] == 3
    text = effects_text(tmp_path)
    assert "data=critique, data.tie_policy=drop at seed 1" in text and "| 4 |" in text


def test_a_sequential_studys_effects_carry_the_fixed_design_caveat(tmp_path):
    import json

    sweep = plant_crossed(tmp_path, TIES, lambda c: 0.12 * (c["data.tie_policy"] == "keep"), seeds=3)
    arms = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    state = {
        "settings": {"margin": 0.05, "alpha": 0.05, "spending": "obrien_fleming", "boundary": "joint",
                     "max_seeds": 3, "budget_hours": None},
        "outcome": "max_seeds",
        "rounds": [{"round": 1, "seeds": [1, 2, 3], "launched": arms, "arms": arms, "missing": [],
                    "metric": "generation/win_rate_vs_reference", "pairs": [], "device_hours": 1.0}],
    }  # fmt: skip
    (sweep / "rounds.json").write_text(json.dumps(state))
    R.write_report(sweep)
    text = effects_text(sweep)
    assert "Fixed-design view (descriptive)" in text and "**yes** (descriptive)" in text
    assert "fixed-design" in verdict_text(sweep)


UNBALANCED = {"data": ["critique", "critique_fixed", "mean_rating"], "data.tie_policy": ["drop", "keep"]}


@pytest.mark.parametrize("components", [None, {"seed": 0.01, "prompt": 0.002, "resid": 0.1}])
@pytest.mark.parametrize("scenario", ["nothing", "only the tie rule"])
def test_effect_intervals_cover_on_an_unbalanced_design(scenario, components):
    reps = 1500
    r = factorial_check(
        scenario, reps, 4, components=components, missing=((("critique", "drop"), 0),), levels=UNBALANCED
    )
    print(f"\n{scenario}, unbalanced, {components}: {r}")
    assert sorted(set(r["seeds"])) == [3, 4]  # some rows keep the seed with the missing arm, some cannot
    assert r["worst_coverage"] >= 0.95 - 3 * mc_error(0.95, reps)
    assert r["false_attribution"] <= 0.05 + 2 * mc_error(0.05, reps)


def test_a_design_whose_levels_miss_a_corner_says_which_corner_in_one_line(tmp_path):
    levels = {"data": ["critique_fixed", "mean_rating"], "data.tie_policy": ["drop", "keep_first"]}
    out = R.write_report(plant_crossed(tmp_path, levels, lambda c: 0.0, seeds=3))
    assert out["effects"]["rows"] and out["effects"]["decomposition"] is None
    why = [line for line in effects_text(tmp_path).splitlines() if "decomposition" in line.lower()]
    assert why == [
        "No decomposition: the H4/Zephyr corner (data=critique or critique_fixed, data.tie_policy=keep) is not a "
        "cell of this design."
    ]
