"""Factorial effects of the data knobs: a planted sweep where only the tie rule matters gets an effect for the tie
rule and none for the signal, the published corners' difference is split into parts that add up, and the
intervals' coverage, false attribution and power are measured on planted designs through the same functions."""

import numpy as np
import pytest

from notus_lab.study import findings as R
from notus_lab.study.effects import SCENARIOS, factorial_check
from notus_lab.study.planted import mc_error
from tests.helpers import plant_judged

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
