"""A study that stops when it is decided: seeds in rounds, and after each round a look at every pair of
strategies with a repeated confidence interval at the alpha that look has spent.

Looks. A study plans at most `max_seeds` seeds; look k comes after s_k of them (`first_seeds`, then
`seeds_per_round` more each round). Its information fraction is t_k = s_k / max_seeds, and it spends
alpha(t_k) - alpha(t_k-1) of each pair's alpha / m (Lan & DeMets 1983, Biometrika 70): O'Brien-Fleming-like
2 - 2 Phi(z_{1-alpha/2} / sqrt t), or Pocock-like alpha ln(1 + (e - 1) t); m is the number of pairs (the report's
pooled rows: every pair of strategies within each value of a key that changes the world or the judge). Each look
tests a pair with the repeated confidence interval of Jennison & Turnbull (2000, Group Sequential Methods, ch. 9)
at a nominal level:
- `boundary: joint` (the default): group-sequential levels on t with each look's own seeds - 1 df (`t_levels`):
  calibrated by simulation so that each look's first-crossing probability is at most its spent increment where
  the seed part dominates (iid seed units, the same seeds at every look), the worst case: the looks share most of
  their seeds, so each may use more than its increment. A shared prompt part makes the looks more correlated and
  a dominant residual floors the seed part, and either way the levels err on the safe side there. Normal-theory
  levels (`nominal_levels`, Armitage, McPherson & Rowe 1969) do not hold on 1-11 df: the t looks are less
  correlated than the normal ones. Looks whose increment is too small to calibrate take the union level. The
  operating characteristics (notus_lab/study/operating.py, tests/unit/test_sequential.py) hold it to alpha, the
  seed-dominant designs included;
- `boundary: union`: each look at its increment: a union bound, valid whatever the looks' correlation.
A Bonferroni split over the m pairs keeps the chance of any false claim in the whole study at or under alpha.

Decisions, for the difference B - A and a margin delta stated by the user in the metric's units:
- `b_wins` / `a_wins`: the two-sided interval at the look's level lies above / below 0;
- `equivalent`: the (1 - 2 level) interval lies inside (-delta, delta), two one-sided tests (Schuirmann 1987,
  J. Pharmacokinet. Biopharm. 15). Where |B - A| >= delta, "equivalent" (or the wrong winner) needs one one-sided
  bound to miss the truth: at most `level` per look and pair, as a false winner where B = A;
- `futile`: no claim, and with the pair's current variance components, even `max_seeds` seeds have under a 10 %
  chance to decide it if its true difference were the current mean (conditional power; judged only from 3 seed
  units: 2 leave the seed part 1 degree of freedom);
- `continue`: none of these (a look whose seed units' means tie exactly has no interval: its seed part is
  unmeasured);
- `dropped`: a strategy another has beaten gets no more seeds (multi-arm multi-stage designs: Magirr, Jaki &
  Whitehead 2012, Biometrika 99); its undecided pairs stop.
A claim is final. Futility and dropping claim nothing, so they never raise the error rate. A strategy with no pair
left that says `continue` rests (notus_lab/study/rounds.py: resting): more of its seeds could change nothing.

The study stops when no pair says `continue`, at `max_seeds`, or when the next round would pass the budget.
Everything here is a pure function of numbers: the Hydra sweeper (hydra_plugins/notus_lab_sweepers) feeds it
from run dirs, and notus_lab/study/operating.py from planted designs.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations

import numpy as np

from notus_lab.config.study import Settings
from notus_lab.core.intervals import t_upper
from notus_lab.study.stats import (
    components,
    expected_parts,
    half_width,
    mean_squares,
    variance_parts,
)

CLAIMS = ("b_wins", "a_wins", "equivalent")
FINAL = CLAIMS + ("dropped",)
OUTCOMES = ("decided", "max_seeds", "budget", "futile", "not_measured")
FUTILE_BELOW = 0.1  # conditional power under which a pair is futile


def spent(t: float, alpha: float, kind: str) -> float:
    """The alpha spent by information fraction t in (0, 1] (Lan & DeMets)."""
    from scipy.special import ndtr, ndtri

    t = min(max(t, 0.0), 1.0)
    if t == 0:
        return 0.0
    if kind == "obrien_fleming":
        return float(min(alpha, 2 - 2 * ndtr(ndtri(1 - alpha / 2) / math.sqrt(t))))
    return float(alpha * math.log(1 + (math.e - 1) * t))


def looks(settings: Settings, first: int | None = None) -> list[int]:
    """The seed counts at which the study looks: the first round's, then `seeds_per_round` more, up to max."""
    counts = [min(first or settings.first_seeds, settings.max_seeds)]
    while counts[-1] < settings.max_seeds:
        counts.append(min(counts[-1] + settings.seeds_per_round, settings.max_seeds))
    return counts


def levels(settings: Settings, schedule: list[int], family: int) -> list[tuple[float, float]]:
    """(winner level, equivalence level) of one pair at each look: two-sided alphas of the interval that must
    exclude 0, and of the interval whose one-sided bounds must lie inside ±margin (TOST at half of it).
    `union`: each look's spent alpha / family, and twice that for TOST's one-sided bounds.
    `joint`: levels calibrated by simulation on t with each look's own seeds - 1 df (`t_levels`), so that the
    first crossings spend no more than alpha / family at each look (two-sided, for winners; each one-sided TOST
    bound, for equivalence) where the seed part dominates: the worst case for the rule."""
    fractions = tuple(s / settings.max_seeds for s in schedule)
    pair = settings.alpha / family
    spend = [spent(t, pair, settings.spending) for t in fractions]
    steps = tuple(b - a for a, b in zip([0.0] + spend[:-1], spend))
    if settings.boundary == "union":
        return [(x, 2 * x) for x in steps]
    winner = t_levels(tuple(schedule), steps, True)
    equivalence = t_levels(tuple(schedule), steps, False)
    return [(w, 2 * e) for w, e in zip(winner, equivalence)]


T_PATHS = 400_000  # simulated studies behind the joint levels
T_CROSSINGS = 200  # fewest expected crossings a look's level is calibrated on; below it, the union level


@lru_cache(maxsize=256)
def t_levels(schedule: tuple[int, ...], steps: tuple[float, ...], two_sided: bool) -> list[float]:
    """Levels (two-sided alphas, or one-sided tails where not `two_sided`) at which the t statistic of the seed
    units' mean, on s_k - 1 df at look k, first crosses with probability at most steps[k] under no difference.

    Simulated where the seed part dominates: iid normal seed units, the same seeds at every look (look k adds
    its new seeds to the earlier ones), the t statistic of look k on s_k - 1 df, as the rule's interval is where
    the prompt part and the residual's floor vanish. A shared prompt part, or the floor, makes the looks more
    correlated and the intervals wider: the levels then hold with room to spare. The normal-theory levels
    (`nominal_levels`, on the looks' canonical correlation) do not hold here: with 1-11 df the t statistics of
    the looks are less correlated than the normal ones, and Pocock-joint made 0.056 false claims (Jennison &
    Turnbull 2000, Group Sequential Methods, ch. 7 and 9, on group-sequential t tests).

    Each look's crossing is aimed at steps[k] * (1 - 2 / sqrt(steps[k] * T_PATHS)), two Monte Carlo errors of a
    binomial count inside the increment, so the simulation's own error does not lift it; a look whose
    increment gives fewer than T_CROSSINGS expected crossings (or whose calibrated level is under the
    increment) takes the union level, the increment itself, which holds whatever the correlation. The paths that
    cross a look at the level it takes stop there. The RNG seed is fixed: one design always gets one set of
    levels."""
    from scipy.special import stdtr

    rng = np.random.default_rng(20_231_204)
    units = rng.standard_normal((T_PATHS, schedule[-1]))
    total, square = np.cumsum(units, axis=1), np.cumsum(units**2, axis=1)
    del units
    alive = np.ones(T_PATHS, dtype=bool)
    out = []
    for s, step in zip(schedule, steps):
        level, expected = step, step * T_PATHS  # the union level unless calibrated
        if s < 2:
            out.append(level)
            continue
        mean = total[:, s - 1] / s
        sd = np.sqrt(np.maximum(square[:, s - 1] - s * mean**2, 0.0) / (s - 1))
        t = mean / np.maximum(sd, 1e-300) * math.sqrt(s)
        stat = np.abs(t) if two_sided else -t  # one-sided: a TOST's lower bound (the upper one by symmetry)
        if expected >= T_CROSSINGS:
            crossings = int(math.floor(step * (1 - 2 / math.sqrt(expected)) * T_PATHS))
            live = np.sort(stat[alive])[::-1]
            if 0 < crossings < live.size:
                c = float(live[crossings - 1] + live[crossings]) / 2  # exactly `crossings` live paths past it
                tail = float(stdtr(s - 1, -c))
                level = max(2 * tail if two_sided else tail, step)
        alive &= stat < float(t_upper(level / 2 if two_sided else level, s - 1))
        out.append(level)
    return out


@lru_cache(maxsize=256)
def nominal_levels(fractions: tuple[float, ...], alpha: float, kind: str, grid: int = 1601) -> list[float]:
    """Two-sided nominal levels of the boundaries c_k with P(|Z_j| < c_j for j < k, |Z_k| >= c_k) equal to the
    alpha spent at look k, where Z_k = W(t_k) / sqrt(t_k) for a Brownian motion W: recursive numerical integration
    of the continuation density (Armitage, McPherson & Rowe 1969, J. R. Stat. Soc. A 132)."""
    from scipy.special import ndtr

    def normal_sf(x):
        return ndtr(-x)

    out, before, t_before, u, weights = [], 0.0, 0.0, None, None
    for t in fractions:
        target = spent(t, alpha, kind) - before
        before += target
        if u is None:

            def crossing(b, t=t):
                return 2 * normal_sf(b / math.sqrt(t))
        else:
            sd = math.sqrt(t - t_before)

            def crossing(b, u=u, weights=weights, sd=sd):
                return float(np.sum(weights * (normal_sf((b - u) / sd) + normal_sf((b + u) / sd))))

        low, high = 0.0, 40.0 * math.sqrt(t)
        if target <= 0 or crossing(high) > target:
            b = high
        else:
            for _ in range(80):
                mid = (low + high) / 2
                low, high = (mid, high) if crossing(mid) > target else (low, mid)
            b = high
        new_u = np.linspace(-b, b, grid)
        if u is None:
            density = np.exp(-(new_u**2) / (2 * t)) / math.sqrt(2 * math.pi * t)
        else:
            sd = math.sqrt(t - t_before)
            density = (weights[None, :] * np.exp(-((new_u[:, None] - u[None, :]) ** 2) / (2 * sd**2))).sum(
                axis=1
            ) / math.sqrt(2 * math.pi * sd**2)
        step = new_u[1] - new_u[0]
        u, weights = new_u, density * step * np.r_[0.5, np.ones(grid - 2), 0.5]  # trapezoid weights
        t_before = t
        out.append(float(2 * normal_sf(b / math.sqrt(t))))
    return out


def pair_stats(d, at: tuple[float, float]) -> dict:
    """Mean, the half-width of the interval at the winner level `at[0]`, the one-sided (equivalence) half-width
    of the interval at `at[1]`, and the variance components of d[..., seed units, prompts] (leading axes:
    replicates). A half-width of 0 (no variation) is nan: no interval. So is one where the seed units' means tie
    exactly (`tied`): the seed part is then unmeasured, and the residual's floor under it can be far below a
    seed variance that dominates, so the interval would be falsely narrow; a look on tied seed units claims
    nothing."""
    d = np.asarray(d, dtype=float)
    ms = mean_squares(d)
    parts = variance_parts(ms)
    two = half_width(*parts, ms["seeds"], ms["prompts"], at[0] / 2)
    one = half_width(*parts, ms["seeds"], ms["prompts"], at[1] / 2)
    unit = d.mean(axis=-1)
    spread = unit.max(axis=-1) - unit.min(axis=-1)
    tied = (spread <= 1e-12 * np.maximum(1.0, np.abs(unit).max(axis=-1))) & (ms["seeds"] > 1)
    return {
        "mean": ms["mean"],
        "half": np.where((two > 0) & ~tied, two, np.nan),
        "half_eq": np.where((one > 0) & ~tied, one, np.nan),
        "tied": tied,
        "seed": ms["seed"],
        "prompt": ms["prompt"],
        "resid": ms["resid"],
        "seeds": ms["seeds"],
        "prompts": ms["prompts"],
        "level": at[0],
        "level_eq": at[1],
    }


def claim(mean: float, half: float, half_eq: float, margin: float) -> str | None:
    """b_wins, a_wins or equivalent, or None: what one look's intervals allow."""
    if not math.isfinite(half):
        return None
    if mean - half > 0:
        return "b_wins"
    if mean + half < 0:
        return "a_wins"
    if math.isfinite(half_eq) and abs(mean) + half_eq < margin:
        return "equivalent"
    return None


def futility(stats: dict, settings: Settings, final_level: tuple[float, float], seeds_left: int) -> str | None:
    """Why even `max_seeds` seeds would not decide this pair: its conditional power, the chance that the interval
    at max_seeds is clear of 0 or inside ±margin if the true difference were the current mean (Lan, Simon &
    Halperin 1982: stochastic curtailing), is under FUTILE_BELOW, with the pair's current variance components.
    None when it can, or when fewer than 3 seed units leave the components too uncertain to say."""
    from scipy.special import ndtr

    if stats["seeds"] < 3 or not math.isfinite(float(stats["half"])):
        return None
    mean, margin, most, prompts = float(stats["mean"]), settings.margin, settings.max_seeds, stats["prompts"]
    now = int(stats["seeds"])
    e = expected_parts(components(stats), most, prompts)
    n = most * e["prompts"]
    two = float(half_width(e["ms_seed"] / n, e["v_prompt"], e["v_resid"], most, e["prompts"], final_level[0] / 2))
    one = float(half_width(e["ms_seed"] / n, e["v_prompt"], e["v_resid"], most, e["prompts"], final_level[1] / 2))
    # the final mean moves only by the seeds still to come: the shared prompts' lean is already in this one
    future = min(seeds_left, most - now)
    sd = math.sqrt(future * e["ms_seed"] / e["prompts"]) / (now + future) if future > 0 else 0.0

    def chance(h2: float, h1: float) -> float:
        if sd == 0:
            return float(abs(mean) > h2 or abs(mean) + h1 < margin)
        win = ndtr((-h2 - mean) / sd) + 1 - ndtr((h2 - mean) / sd)
        same = max(ndtr((margin - h1 - mean) / sd) - ndtr((-margin + h1 - mean) / sd), 0.0) if h1 < margin else 0.0
        return float(win + same)

    if chance(two, one) >= FUTILE_BELOW:
        return None
    prompt_two = float(t_upper(final_level[0] / 2, prompts - 1)) * math.sqrt(e["v_prompt"]) if prompts > 1 else 0.0
    prompt_one = float(t_upper(final_level[1] / 2, prompts - 1)) * math.sqrt(e["v_prompt"]) if prompts > 1 else 0.0
    if prompts > 1 and prompt_two > 0 and chance(prompt_two, prompt_one) < FUTILE_BELOW:
        return (
            f"the shared-prompt part alone (±{prompt_two:.4f} at the last look) would leave B − A = {mean:+.4f} "
            f"neither clear of 0 nor inside ±{margin:g} however many seeds: more prompts are needed, not more seeds"
        )
    return (
        f"at {most} seeds the interval would still be about ±{two:.4f} around B − A = {mean:+.4f}: a "
        f"{chance(two, one):.0%} chance to end clear of 0 or inside ±{margin:g}"
    )


def look(
    pairs: list[dict], previous: dict, settings: Settings, seeds: int, final_level: tuple[float, float]
) -> tuple[list[dict], set]:
    """One look. `pairs`: [{"a", "b", "scope", "stats": pair_stats(...) of this look (scalars)}]; `previous`:
    {(a, b, scope): the pair's record at the last look}. Returns this look's records and the (strategy, scope)
    pairs dropped so far: a strategy beaten in a scope gets no more seeds there."""
    out = []
    for p in pairs:
        key = (p["a"], p["b"], p["scope"])
        before = previous.get(key)
        if before and before["decision"] in FINAL:  # a claim is final; so is a drop
            out.append({**before, "carried": True})
            continue
        s = p["stats"]
        mean, half, half_eq = float(s["mean"]), float(s["half"]), float(s["half_eq"])
        record = {
            "a": p["a"],
            "b": p["b"],
            "scope": p["scope"],
            "mean": mean,
            "seeds": int(s["seeds"]),
            "interval": [mean - half, mean + half] if math.isfinite(half) else None,
            "equivalence_interval": [mean - half_eq, mean + half_eq] if math.isfinite(half_eq) else None,
            "alpha": float(s["level"]),
            "alpha_equivalence": float(s["level_eq"]),
        }
        decision = claim(mean, half, half_eq, settings.margin)
        if decision:
            record["decision"], record["reason"] = decision, _claim_reason(decision, record, settings.margin)
        elif why := futility(s, settings, final_level, settings.max_seeds - seeds):
            record["decision"], record["reason"] = "futile", why
        else:
            record["decision"] = "continue"
            if record["interval"] is not None:
                record["reason"] = f"the interval holds 0 and reaches past ±{settings.margin:g}"
            elif bool(s.get("tied", False)) and float(s["resid"]) + float(s["prompt"]) > 0:
                record["reason"] = (
                    f"no interval: the {int(s['seeds'])} seed units' means tie exactly, so the seed part is "
                    "unmeasured (the residual's floor could be far below it): no claim until they differ"
                )
            else:
                record["reason"] = "no interval: no variation measured yet"
        out.append(record)
    dropped = beaten(out)
    for r in out:
        lost = [s for s in (r["a"], r["b"]) if (s, r["scope"]) in dropped]
        if r["decision"] in ("continue", "futile") and lost:
            r["decision"], r["reason"] = "dropped", f"{lost[0]} was beaten by another strategy: no more seeds"
    return out, dropped


def beaten(records: list[dict]) -> set[tuple[str, str]]:
    """(strategy, scope) another strategy has beaten, from a look's records."""
    return {
        (r["a"] if r["decision"] == "b_wins" else r["b"], r["scope"])
        for r in records
        if r["decision"] in ("a_wins", "b_wins")
    }


def _claim_reason(decision: str, r: dict, margin: float) -> str:
    low, high = r["interval"]
    if decision == "equivalent":
        lo, hi = r["equivalence_interval"]
        return f"the one-sided bounds [{lo:+.4f}, {hi:+.4f}] lie inside ±{margin:g}"
    inside = " (and inside ±margin: real but smaller than the margin)" if -margin < low and high < margin else ""
    return f"the interval [{low:+.4f}, {high:+.4f}] is {'above' if decision == 'b_wins' else 'below'} 0{inside}"


def outcome(records: list[dict], seeds: int, settings: Settings, unmeasured: dict | None = None) -> str | None:
    """decided | futile | max_seeds | not_measured, or None to go on (the budget is the sweeper's: it knows the
    cost). `unmeasured`: {(strategy, scope): given_up} for the design's strategies no pair measured at this look;
    one not given up (some arm finished, or may still finish) keeps the study going while seeds remain; a given-up
    one (every arm failed twice) gets no more. A look that measured nothing is never "decided"."""
    unmeasured = unmeasured or {}
    live = any(r["decision"] == "continue" for r in records)
    pending = not all(unmeasured.values())
    if (live or pending) and seeds < settings.max_seeds:
        return None
    if live:
        return "max_seeds"
    if unmeasured:
        return "not_measured"
    return "decided" if all(r["decision"] in FINAL for r in records) else "futile"


def family(strategies: list[str], strata: int = 1) -> int:
    """The number of pairs every look tests: each pair of strategies within each world or judge stratum."""
    return max(len(list(combinations(strategies, 2))) * strata, 1)
