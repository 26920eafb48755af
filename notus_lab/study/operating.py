"""Operating characteristics of the sequential rule (notus_lab/study/sequential.py), measured on planted designs
with a known truth, through the rule's own functions: `pair_stats` on each look's seeds, then `look` and
`outcome` replicate by replicate, exactly as the sweeper calls them on run dirs.

    python -m notus_lab.calibration --sequential      # the tables of docs/statistics.md

A design plants 2 or 3 strategies with true levels (0, D) or (0, 0, D), D in {0, delta/2, delta, 2 delta}:
- `gaussian`: outcomes with the variance components of a measured study (per strategy half of each component
  of the difference: a seed effect, a prompt lean, a residual);
- `judged`: the calibration suite's planted world (notus_lab/study/planted.py): wins, ties and losses
  against a reference from a latent quality, its difference D in win rate.
Measured: family-wise false claims over every look and pair (a winner where B <= A or B >= A, "equivalent"
where |B - A| >= delta), coverage of the final intervals (every pair's, jointly), power (the study ends
decided with no false claim; a winner found where D > 0), the seeds and arms used, and the fixed design of the
same power. The negative control runs the same rule with every look at the full alpha: it shows what spending buys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from notus_lab.config.study import Settings
from notus_lab.study import planted as calibration
from notus_lab.study.rounds import resting
from notus_lab.study.sequential import family, levels, look, looks, outcome, pair_stats

CHUNK = 200  # replicates generated at once


@dataclass(frozen=True)
class Design:
    """A planted study: how outcomes arise, how many strategies, how many shared prompts."""

    kind: str = "gaussian"  # gaussian | judged
    strategies: int = 2
    prompts: int = 300
    components: dict = field(default_factory=lambda: {"seed": 0.0, "prompt": 0.0025, "resid": 0.2})
    world: calibration.World = calibration.World()

    def label(self) -> str:
        if self.kind == "judged":
            return f"judged world, {self.strategies} strategies"
        c = self.components
        parts = f"seed {c['seed']:.2g}, prompt {c['prompt']:.2g}, resid {c['resid']:.2g}"
        return f"measured components ({parts}), {self.strategies} strategies"


def levels_of(design: Design, effect: float) -> np.ndarray:
    """True level of each strategy: (0, D) or (0, 0, D)."""
    return np.array([0.0] * (design.strategies - 1) + [effect])


def _judged_truth(world: calibration.World, latent_effect: float) -> float:
    """A latent shift's true win-rate difference, over the prompts, leans and seeds of the planted world."""
    from numpy.polynomial.hermite_e import hermegauss

    x, w = hermegauss(80)
    latent = 1.5 + np.sqrt(1.0 + world.lean_sd**2 / 2 + world.seed_sd**2) * x
    level = lambda z: 0.5 * world.tie + (1 - world.tie) / (1 + np.exp(-z))  # noqa: E731
    return float(np.sum(w * (level(latent + latent_effect) - level(latent))) / w.sum())


def _latent_for(world: calibration.World, effect: float) -> float:
    low, high = 0.0, 4.0
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if _judged_truth(world, mid) < effect else (low, mid)
    return (low + high) / 2


def outcomes(rng, design: Design, reps: int, seeds: int, effect: float) -> np.ndarray:
    """y[rep, strategy, seed, prompt]: each strategy's per-prompt outcomes on the same prompts."""
    k, p = design.strategies, design.prompts
    if design.kind == "gaussian":
        c = {name: np.sqrt(v / 2) for name, v in design.components.items()}  # per strategy: half the difference's
        return (
            levels_of(design, effect)[None, :, None, None]
            + rng.normal(0, c["seed"], (reps, k, seeds, 1))
            + rng.normal(0, c["prompt"], (reps, k, 1, p))
            + rng.normal(0, c["resid"], (reps, k, seeds, p))
        )
    world = design.world
    latent_levels = levels_of(design, _latent_for(world, effect) if effect else 0.0)
    difficulty = rng.normal(1.5, 1.0, (reps, 1, 1, p))
    lean = rng.normal(0, world.lean_sd / np.sqrt(2), (reps, k, 1, p))
    seed = rng.normal(0, world.seed_sd, (reps, k, seeds, 1))
    latent = (difficulty + lean + seed + latent_levels[None, :, None, None]).astype(np.float32)
    return calibration._outcomes(rng, world, latent)


def _scalar(stats: dict, i: int) -> dict:
    return {k: (v[i] if isinstance(v, np.ndarray) and v.ndim else v) for k, v in stats.items()}


def false_claim(decision: str, truth: float, margin: float) -> bool:
    return (
        (decision == "b_wins" and truth <= 0)
        or (decision == "a_wins" and truth >= 0)
        or (decision == "equivalent" and abs(truth) >= margin)
    )


def simulate(
    design: Design,
    settings: Settings,
    effect: float,
    reps: int,
    seed: int = 0,
    spend: bool = True,
    fixed_designs: bool = True,
) -> dict:
    """Run the sequential rule on `reps` planted studies; `spend=False` tests every look at the full alpha (the
    negative control: only the looks' levels change, futility keeps the spending's last level);
    `fixed_designs=False` skips the fixed designs of the same data (no "fixed design of the same power")."""
    names = [f"s{i}" for i in range(design.strategies)]
    pairs = list(combinations(range(design.strategies), 2))
    m = family(names)
    truth = {(names[a], names[b]): levels_of(design, effect)[b] - levels_of(design, effect)[a] for a, b in pairs}
    if design.kind == "judged":
        truth = {
            key: (_judged_truth(design.world, _latent_for(design.world, effect)) if v else 0.0)
            for key, v in truth.items()
        }
    schedule = looks(settings)
    one_look = (settings.alpha / m, 2 * settings.alpha / m)  # a fixed design: one look at alpha / pairs
    spending = levels(settings, schedule, m)
    at = spending if spend else [one_look] * len(schedule)
    final_level = spending[-1]  # futility judges the last look at the spending's level either way
    rng = np.random.default_rng([seed, design.strategies, design.prompts, int(effect * 1e4), spend])
    rows = []
    fixed_n = list(range(2, settings.max_seeds + 1)) if fixed_designs else []
    for start in range(0, reps, CHUNK):
        n = min(CHUNK, reps - start)
        y = outcomes(rng, design, n, settings.max_seeds, effect)
        diffs = {(names[a], names[b]): y[:, b] - y[:, a] for a, b in pairs}
        at_look = [{key: pair_stats(d[:, :s], lv) for key, d in diffs.items()} for s, lv in zip(schedule, at)]
        fixed = {s: {key: pair_stats(d[:, :s], one_look) for key, d in diffs.items()} for s in fixed_n}
        for i in range(n):
            rows.append(_one_study(i, at_look, fixed, schedule, names, settings, final_level, one_look, truth))
    return summarise(rows, design, settings, effect, truth)


def _one_study(i, at_look, fixed, schedule, names, settings, final_level, one_look, truth) -> dict:
    previous, arms, wrong = {}, 0, False
    used = schedule[0]
    for k, seeds in enumerate(schedule):
        rest = resting(list(previous.values()))
        active = [s for s in names if (s, "all") not in rest]
        arms += len(active) * (seeds - (schedule[k - 1] if k else 0))
        pairs = [{"a": a, "b": b, "scope": "all", "stats": _scalar(at_look[k][(a, b)], i)} for a, b in truth]
        records, _ = look(pairs, previous, settings, seeds, final_level)
        for r in records:
            if not r.get("carried") and false_claim(r["decision"], truth[(r["a"], r["b"])], settings.margin):
                wrong = True
        previous = {(r["a"], r["b"], r["scope"]): r for r in records}
        used = seeds
        end = outcome(records, seeds, settings)
        if end:
            break
    covered = all(
        r["interval"] is not None and r["interval"][0] <= truth[(r["a"], r["b"])] <= r["interval"][1]
        for r in previous.values()
    )
    winners = [r for r in previous.values() if truth[(r["a"], r["b"])] != 0]
    fixed_right = {}
    for s, stats in fixed.items():  # the same data as a fixed design of s seeds: one look at alpha / m
        pairs = [{"a": a, "b": b, "scope": "all", "stats": _scalar(stats[(a, b)], i)} for a, b in truth]
        records, _ = look(pairs, {}, settings, settings.max_seeds, one_look)
        fixed_right[s] = outcome(records, settings.max_seeds, settings) == "decided" and not any(
            false_claim(r["decision"], truth[(r["a"], r["b"])], settings.margin) for r in records
        )
    return {
        "outcome": end,
        "wrong": wrong,
        "covered": covered,
        "seeds": used,
        "arms": arms,
        "right": end == "decided" and not wrong,
        "found": all(r["decision"] == ("b_wins" if truth[(r["a"], r["b"])] > 0 else "a_wins") for r in winners)
        if winners
        else None,
        "fixed_right": fixed_right,
    }


def summarise(rows: list[dict], design: Design, settings: Settings, effect: float, truth: dict) -> dict:
    n = len(rows)
    power = sum(r["right"] for r in rows) / n
    found = [r["found"] for r in rows if r["found"] is not None]
    fixed_power = {s: sum(r["fixed_right"][s] for r in rows) / n for s in rows[0]["fixed_right"]}
    slack = max(calibration.mc_error(power, n), 1 / n)  # "the same power" up to its Monte Carlo error
    same = next((s for s, p in sorted(fixed_power.items()) if p >= power - slack), None) if power > 0 else None
    return {
        "design": design.label(),
        "effect": effect,
        "reps": n,
        "false_claims": sum(r["wrong"] for r in rows) / n,
        "coverage": sum(r["covered"] for r in rows) / n,
        "power": power,
        "winner_found": sum(found) / len(found) if found else None,
        "seeds": float(np.mean([r["seeds"] for r in rows])),
        "arms": float(np.mean([r["arms"] for r in rows])),
        "outcomes": {o: sum(r["outcome"] == o for r in rows) / n for o in ("decided", "futile", "max_seeds")},
        "fixed_seeds_same_power": same,
        "fixed_arms_same_power": same * design.strategies if same else None,
        "fixed_power": fixed_power,
    }


def table(
    settings: Settings, designs: list[Design], reps: int, arm_hours_here: float | None, arm_gpu_hours_7b: float
) -> str:
    """docs/statistics.md's operating-characteristics table, one row per design x true difference."""
    lines = [
        f"Margin ±{settings.margin:g}, alpha {settings.alpha} family-wise, {settings.spending.replace('_', '-')} "
        f"spending, {settings.first_seeds} seeds then {settings.seeds_per_round} a round up to "
        f"{settings.max_seeds}; {reps} studies a row (Monte Carlo error of a rate near 0.05: "
        f"±{calibration.mc_error(0.05, reps):.3f}).",
        "",
        "| design | true B − A | false claims | false claims without spending | joint coverage | power "
        "(decided, all right) | winner found | E[seeds] | E[arms] | fixed design of the same power (arms) | "
        "E[cost] here | E[cost] at 7B (GPU-h) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for design in designs:
        for effect in (0.0, settings.margin / 2, settings.margin, 2 * settings.margin):
            r = simulate(design, settings, effect, reps)
            naive = simulate(design, settings, effect, reps, spend=False)
            here = f"{r['arms'] * arm_hours_here:.3g} h" if arm_hours_here else ""
            fixed = f"{r['fixed_arms_same_power']}" if r["fixed_arms_same_power"] else "none within max_seeds"
            found = "" if r["winner_found"] is None else f"{r['winner_found']:.2f}"
            lines.append(
                f"| {design.label()} | {effect:+.3f} | {r['false_claims']:.3f} | {naive['false_claims']:.3f} | "
                f"{r['coverage']:.3f} | {r['power']:.2f} | {found} | {r['seeds']:.1f} | {r['arms']:.1f} | {fixed} | "
                f"{here} | {r['arms'] * arm_gpu_hours_7b:,.0f} |"
            )
    return "\n".join(lines)


# the components the critique_vs_rating study measured on its pooled rows (judged win rate, seed units x 300
# shared prompts; docs/studies.md, "Studies that stop when they are decided"), and the calibration suite's planted world
MEASURED = {"seed": 2e-5, "prompt": 0.0022, "resid": 0.0038}


# where the seed part dominates: the worst case of the joint levels (the looks' t statistics on seeds - 1 df are
# least correlated); a Gaussian difference of seed variance 0.01 and a prompt part near 0, and the planted world
# at seed sd 0.3
SEED_DOMINANT = {"seed": 0.01, "prompt": 1e-6, "resid": 0.2}
SEED_DOMINANT_WORLD = calibration.World("judged", seed_sd=0.3, lean_sd=0.3)


def seed_dominant_designs() -> list[Design]:
    return [Design("gaussian", 2, 300, SEED_DOMINANT), Design("judged", 2, 300, world=SEED_DOMINANT_WORLD)]


def sequential_markdown(reps: int, margin: float, arm_hours_here: float | None) -> str:
    """docs/statistics.md's operating-characteristics tables: the default rule, 2 and 3 strategies, both designs; then
    the seed-dominant designs under both spendings (joint boundary)."""
    from notus_lab.config.options import load_option
    from notus_lab.study.cost import NOTUS_ARM_GPU_HOURS

    node = load_option("hydra/sweeper", "sequential")

    def rule(spending: str) -> Settings:
        return Settings(
            margin=margin,
            alpha=node.alpha,
            first_seeds=node.first_seeds,
            seeds_per_round=node.seeds_per_round,
            max_seeds=node.max_seeds,
            budget_hours=None,
            metric=None,
            spending=spending,
            boundary=node.boundary,
        ).check()

    designs = [Design("gaussian", k, 300, MEASURED) for k in (2, 3)]
    designs += [Design("judged", k, 300, world=calibration.World("judged", seed_sd=0.1, lean_sd=0.3)) for k in (2, 3)]
    out = [table(rule(node.spending), designs, reps, arm_hours_here, NOTUS_ARM_GPU_HOURS)]
    for spending in ("obrien_fleming", "pocock"):
        out += ["", table(rule(spending), seed_dominant_designs(), reps, arm_hours_here, NOTUS_ARM_GPU_HOURS)]
    return "\n".join(out)
