"""Calibration is a test, not a belief: planted designs with a known truth, through the report's own
statistics (notus_lab/study/stats.py via notus_lab/study/planted.py), numpy only and seconds long.

Each coverage cell has 1,500 replicates: Monte Carlo error +-0.0056 at 0.95, so [0.93, 0.975] is about
3.5 errors below and 4.5 above the nominal level. At 2 seeds x 50 prompts the floor that keeps the seed part
from vanishing makes the interval conservative (~0.985): there the upper bound is 0.99."""

import numpy as np
import pytest

from notus_lab.study.planted import (
    PROMPTS,
    SEEDS,
    World,
    arm_coverage,
    coverage_table,
    effect_in_outcome,
    mc_error,
    null_sweep_verdict_rate,
    planted,
    rejections,
)
from notus_lab.study.stats import crossed_interval, detectable, mean_squares, power

REPS = 1500
WORLDS = {"judged": World("judged"), "scores": World("scores", seed_sd=0.2, lean_sd=0.3)}


@pytest.mark.parametrize("kind", sorted(WORLDS))
def test_the_95_percent_interval_holds_the_truth_95_percent_of_the_time_in_every_design(kind):
    table = coverage_table(WORLDS[kind], REPS)
    print(f"\n{kind} coverage (MC error {mc_error(0.95, REPS):.4f}):")
    for s in SEEDS:
        print(f"  {s:>2} seeds: " + "  ".join(f"{p} prompts {table[(s, p)]:.3f}" for p in PROMPTS))
    upper = {(2, 50): 0.99}
    bad = {cell: round(c, 3) for cell, c in table.items() if not 0.93 <= c <= upper.get(cell, 0.975)}
    assert not bad, f"coverage outside [0.93, 0.975] at (seeds, prompts): {bad}"


def test_seed_units_that_tie_by_discreteness_do_not_inflate_false_exclusions():
    """Judged outcomes, one answer a prompt, little seed noise, no prompt lean: two seed units' means tie often
    (MS_seed exactly 0), which used to leave the interval to the prompt part alone. At the alpha of one of 9
    rows (0.0056) false exclusions ran at ~0.023 at 2 seeds x 50 prompts; the floor keeps them at nominal."""
    world, alpha, reps = World("judged", seed_sd=0.05, lean_sd=0.0, samples=1), 0.05 / 9, 20_000
    for seeds, prompts in ((2, 50), (2, 300), (3, 50)):
        rate = rejections(world, reps, seeds, prompts, alpha=alpha)
        print(f"\n{seeds} seeds x {prompts} prompts: false exclusions {rate:.4f} at alpha {alpha:.4f}")
        assert rate <= alpha + 3 * mc_error(alpha, reps)


def test_the_planted_outcomes_look_like_the_metrics_they_stand_for():
    rng = np.random.default_rng(0)
    judged = planted(rng, WORLDS["judged"], 2, 3, 50)
    steps = judged * 4  # two answers per prompt, win/tie/loss: B - A in steps of 1/4
    assert (
        np.allclose(steps, np.round(steps)) and judged.min() >= -1 and judged.max() <= 1 and len(np.unique(judged)) > 5
    )
    scores = planted(rng, WORLDS["scores"], 2, 3, 50)
    assert np.allclose(scores * 2, np.round(scores * 2)) and np.abs(scores).max() <= 9  # two turns of grades 1-10


def test_a_sweep_with_no_difference_gets_a_false_verdict_at_most_5_percent_of_the_time():
    """The whole table (3 pairs x pooled and per-beta rows) through the report's row builder and Holm's procedure
    over the 3 pooled rows (the rows that can give a verdict)."""
    rate = null_sweep_verdict_rate(400)
    print(f"\nfamily-wise false-verdict rate: {rate:.3f} (MC error {mc_error(0.05, 400):.3f})")
    assert rate <= 0.05


def test_power_grows_with_seeds_and_prompts_and_a_planted_effect_is_found():
    world, effect = WORLDS["judged"], 0.4  # about +0.05 in win rate
    assert effect_in_outcome(world, effect) == pytest.approx(0.05, abs=0.005)
    power = {(s, p): rejections(world, 400, s, p, effect) for s, p in ((2, 300), (6, 300), (12, 300), (12, 2000))}
    print(f"\npower at +0.05: {power}")
    assert power[(2, 300)] < power[(6, 300)] < power[(12, 300)] <= power[(12, 2000)]
    # seed noise caps what more prompts buy; two seeds rarely settle a 5-point difference
    assert power[(12, 2000)] > 0.75 and power[(2, 300)] < 0.3


def _gaussian(rng, parts: dict, reps: int, seeds: int, prompts: int, delta: float) -> np.ndarray:
    return (
        delta
        + rng.normal(0, np.sqrt(parts["seed"]), (reps, seeds, 1))
        + rng.normal(0, np.sqrt(parts["prompt"]), (reps, 1, prompts))
        + rng.normal(0, np.sqrt(parts["resid"]), (reps, seeds, prompts))
    )


@pytest.mark.parametrize("seeds", [3, 4, 6, 12])
def test_the_detectable_effect_is_found_80_percent_of_the_time(seeds):
    """The MDE of a design from its true components, planted: the interval excludes 0 in 80 % of replicates
    (it used to be 0.68-0.78 at 3-6 seeds), alone and at Holm's first step of 3 rows. Components as the judged
    world's: seed 0.003, prompt 0.005, residual 0.14."""
    rng = np.random.default_rng(seeds)
    reps, prompts = 4000, 300
    parts = {"seed": 0.003, "prompt": 0.005, "resid": 0.14, "seeds": seeds, "prompts": prompts}
    for m in (1, 3):
        mde = detectable(parts, m)
        _, [(low, high)], _ = crossed_interval(_gaussian(rng, parts, reps, seeds, prompts, mde), (0.05 / m,))
        found = float(((low > 0) | (high < 0)).mean())
        print(f"\n{seeds} seeds, alpha/{m}: MDE {mde:.4f} found in {found:.3f}")
        assert abs(found - 0.8) <= 3.5 * mc_error(0.8, reps)


def test_the_detectable_effect_holds_on_judged_outcomes():
    """The same on discrete judged outcomes (6 seeds x 300 prompts): components measured at the planted effect."""
    world, seeds, prompts = WORLDS["judged"], 6, 300
    rng = np.random.default_rng(7)
    latent = 0.75  # about +0.09 in win rate: near this design's MDE
    big = mean_squares(planted(rng, world, 400, seeds, prompts, latent))
    parts = {k: float(np.mean(big[k])) for k in ("seed", "prompt", "resid")} | {"seeds": seeds, "prompts": prompts}
    truth = effect_in_outcome(world, latent, 256_000)
    found = rejections(world, 3000, seeds, prompts, latent)
    predicted = power(truth, parts, seeds)
    print(f"\npower at +{truth:.3f}: predicted {predicted:.3f}, found {found:.3f}")
    assert abs(found - predicted) <= 0.04


@pytest.mark.parametrize("seeds,prompts", [(3, 300), (12, 300), (6, 50)])
def test_an_arms_interval_covers_its_true_win_rate(seeds, prompts):
    """The arm table's interval (seeds x shared prompts) against the arm's true win rate; a t over seeds alone
    ignores how the prompts drawn move an arm's level and undercovers at many seeds or few prompts."""
    cov = arm_coverage(WORLDS["judged"], 3000, seeds, prompts)
    print(f"\n{seeds} seeds x {prompts} prompts: {cov}")
    assert 0.93 <= cov["crossed"] <= 0.975
    if (seeds, prompts) != (3, 300):
        assert cov["seeds_only"] < 0.925  # the old interval, on the same replicates


@pytest.mark.filterwarnings("ignore::Warning")  # statsmodels: "the MLE may be on the boundary" (seed near 0)
def test_the_variance_components_agree_with_statsmodels_reml():
    """Balanced crossed design: the ANOVA components are the REML estimates (statsmodels MixedLM)."""
    pd = pytest.importorskip("pandas")
    smf = pytest.importorskip("statsmodels.formula.api")
    rng = np.random.default_rng(0)
    d = rng.normal(0, 0.3, (4, 1)) + rng.normal(0, 0.4, (1, 30)) + rng.normal(0, 0.5, (4, 30))
    frame = pd.DataFrame([(s, p, d[s, p]) for s in range(4) for p in range(30)], columns=["seed", "prompt", "y"])
    frame["all"] = 1
    fit = smf.mixedlm(
        "y ~ 1", frame, groups="all", re_formula="0", vc_formula={"seed": "0 + C(seed)", "prompt": "0 + C(prompt)"}
    ).fit(reml=True)
    reml = dict(zip(fit.model.exog_vc.names, fit.vcomp))
    ms = mean_squares(d)
    assert float(ms["seed"]) == pytest.approx(reml["seed"], rel=1e-3, abs=1e-5)
    assert float(ms["prompt"]) == pytest.approx(reml["prompt"], rel=1e-3)
    assert float(ms["resid"]) == pytest.approx(fit.scale, rel=1e-3)
    mean, [(low, high)], _ = crossed_interval(d)
    assert float(mean) == pytest.approx(fit.fe_params["Intercept"]) and low < mean < high


def test_the_sequential_tables_include_the_seed_dominant_designs_under_both_spendings(monkeypatch):
    """`python -m notus_lab.calibration --sequential` prints, beside the default rule's tables, the seed-dominant
    designs (seed variance 0.01, prompt part ~0; the judged world at seed sd 0.3) under both spendings, joint
    boundary (their rates are asserted in tests/unit/test_sequential.py)."""
    from notus_lab import calibration as cli
    from notus_lab.study import operating

    calls = []
    monkeypatch.setattr(
        operating, "table", lambda settings, designs, *a: calls.append((settings, designs)) or settings.spending
    )
    cli.main(["--sequential", "--reps", "10"])
    seeded = [(s.spending, s.boundary) for s, designs in calls if designs == operating.seed_dominant_designs()]
    assert sorted(seeded) == [("obrien_fleming", "joint"), ("pocock", "joint")]
    assert operating.SEED_DOMINANT["seed"] == 0.01 and operating.SEED_DOMINANT["prompt"] < 1e-4
    assert operating.SEED_DOMINANT_WORLD.seed_sd == 0.3
