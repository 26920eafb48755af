"""Calibration is a test, not a belief: planted designs with a known truth, through the report's own
statistics (notus_lab/study/stats.py via notus_lab/study/calibration.py), numpy only and seconds long.

Each coverage cell has 1,500 replicates: Monte Carlo error +-0.0056 at 0.95, so [0.93, 0.975] is about
3.5 errors below and 4.5 above the nominal level."""

import numpy as np
import pytest

from notus_lab.study.calibration import (
    PROMPTS,
    SEEDS,
    World,
    coverage_table,
    effect_in_outcome,
    mc_error,
    null_sweep_verdict_rate,
    planted,
    rejections,
)
from notus_lab.study.stats import crossed_interval, detectable, mean_squares

REPS = 1500
WORLDS = {"judged": World("judged"), "scores": World("scores", seed_sd=0.2, lean_sd=0.3)}


@pytest.mark.parametrize("kind", sorted(WORLDS))
def test_the_95_percent_interval_holds_the_truth_95_percent_of_the_time_in_every_design(kind):
    table = coverage_table(WORLDS[kind], REPS)
    print(f"\n{kind} coverage (MC error {mc_error(0.95, REPS):.4f}):")
    for s in SEEDS:
        print(f"  {s:>2} seeds: " + "  ".join(f"{p} prompts {table[(s, p)]:.3f}" for p in PROMPTS))
    bad = {cell: round(c, 3) for cell, c in table.items() if not 0.93 <= c <= 0.975}
    assert not bad, f"coverage outside [0.93, 0.975] at (seeds, prompts): {bad}"


def test_the_planted_outcomes_look_like_the_metrics_they_stand_for():
    rng = np.random.default_rng(0)
    judged = planted(rng, WORLDS["judged"], 2, 3, 50)
    steps = judged * 4  # two answers per prompt, win/tie/loss: B - A in steps of 1/4
    assert np.allclose(steps, np.round(steps)) and judged.min() >= -1 and judged.max() <= 1 and len(np.unique(judged)) > 5
    scores = planted(rng, WORLDS["scores"], 2, 3, 50)
    assert np.allclose(scores * 2, np.round(scores * 2)) and np.abs(scores).max() <= 9  # two turns of grades 1-10


def test_a_sweep_with_no_difference_gets_a_false_verdict_at_most_5_percent_of_the_time():
    """The whole table (3 pairs x pooled and per-beta rows) through the report's row builder and verdict rule."""
    rate = null_sweep_verdict_rate(300)
    print(f"\nfamily-wise false-verdict rate: {rate:.3f} (MC error {mc_error(0.05, 300):.3f})")
    assert rate <= 0.05


def test_power_grows_with_seeds_and_prompts_and_a_planted_effect_is_found():
    world, effect = WORLDS["judged"], 0.4  # about +0.05 in win rate
    assert effect_in_outcome(world, effect) == pytest.approx(0.05, abs=0.005)
    power = {(s, p): rejections(world, 400, s, p, effect) for s, p in ((2, 300), (6, 300), (12, 300), (12, 2000))}
    print(f"\npower at +0.05: {power}")
    assert power[(2, 300)] < power[(6, 300)] < power[(12, 300)] <= power[(12, 2000)]
    # seed noise caps what more prompts buy; two seeds rarely settle a 5-point difference
    assert power[(12, 2000)] > 0.75 and power[(2, 300)] < 0.3


def test_the_detectable_effect_is_found_about_80_percent_of_the_time():
    """The MDE of a design, from its true components, planted: the interval then excludes 0 in ~80 % of runs
    (conservative intervals may find it more often; never much less)."""
    world, seeds, prompts = WORLDS["judged"], 6, 300
    rng = np.random.default_rng(7)
    big = mean_squares(planted(rng, world, 200, seeds, prompts))  # components estimated on 200 replicates
    components = {k: float(np.mean(big[k])) for k in ("seed", "prompt", "resid")} | {"seeds": seeds, "prompts": prompts}
    mde = detectable(components, 1)
    latent = next(e for e in np.arange(0.05, 2, 0.01) if effect_in_outcome(world, e, 64_000) >= mde)
    found = rejections(world, 600, seeds, prompts, float(latent))
    print(f"\nMDE {mde:.4f} (latent {latent:.2f}): found in {found:.3f}")
    assert 0.72 <= found <= 0.95


@pytest.mark.filterwarnings("ignore::Warning")  # statsmodels: "the MLE may be on the boundary" (seed near 0)
def test_the_variance_components_agree_with_statsmodels_reml():
    """Balanced crossed design: the ANOVA components are the REML estimates (statsmodels MixedLM)."""
    pd = pytest.importorskip("pandas")
    smf = pytest.importorskip("statsmodels.formula.api")
    rng = np.random.default_rng(0)
    d = rng.normal(0, 0.3, (4, 1)) + rng.normal(0, 0.4, (1, 30)) + rng.normal(0, 0.5, (4, 30))
    frame = pd.DataFrame([(s, p, d[s, p]) for s in range(4) for p in range(30)], columns=["seed", "prompt", "y"])
    frame["all"] = 1
    fit = smf.mixedlm("y ~ 1", frame, groups="all", re_formula="0",
                      vc_formula={"seed": "0 + C(seed)", "prompt": "0 + C(prompt)"}).fit(reml=True)
    reml = dict(zip(fit.model.exog_vc.names, fit.vcomp))
    ms = mean_squares(d)
    assert float(ms["seed"]) == pytest.approx(reml["seed"], rel=1e-3, abs=1e-5)
    assert float(ms["prompt"]) == pytest.approx(reml["prompt"], rel=1e-3)
    assert float(ms["resid"]) == pytest.approx(fit.scale, rel=1e-3)
    mean, [(low, high)], _ = crossed_interval(d)
    assert float(mean) == pytest.approx(fit.fe_params["Intercept"]) and low < mean < high
