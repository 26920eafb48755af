"""Is a "95 %" interval right 95 % of the time? Planted designs with a known answer, through the report's own
statistics (notus_lab/study/stats.py), numpy only.

    python -m notus_lab.calibration [--reps 2000]     # the coverage and power tables of docs/statistics.md

Two outcome kinds, each as the report sees it (one value per seed unit x shared prompt):
- judged: win 1 / tie 0.5 / loss 0 against the reference, `samples` answers per prompt, so values in steps of
  1 / (2 samples); a prompt's difficulty is shared by both strategies, its lean towards one of them by every
  seed, and each strategy draws its own seed effect (logit scale);
- scores: MT-Bench-like integer grades 1-10, two turns per question averaged, with the same structure.
Under no planted effect the strategies are exchangeable, so the truth is 0 and coverage is the share of
replicates whose interval holds 0. Power is the share whose interval excludes 0 at a planted effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from notus_lab.study.stats import ALPHA, compare, crossed_interval, verdicts

SEEDS, PROMPTS = (2, 3, 6, 12), (50, 300, 2000)


CHUNK = 4_000_000  # values generated at once


@dataclass(frozen=True)
class World:
    """A planted design's noise, on the latent (logit / grade) scale."""

    kind: str = "judged"  # judged | scores
    seed_sd: float = 0.3  # each strategy's own seed effect
    lean_sd: float = 0.5  # a prompt's lean towards one strategy, shared by every seed
    samples: int = 2  # answers (judged) or turns (scores) per prompt
    tie: float = 0.1  # judged: share of ties


def _outcomes(rng, world: World, latent: np.ndarray) -> np.ndarray:
    """Per-prompt values of one strategy from its latent quality, averaged over samples or turns."""
    shape = latent.shape + (world.samples,)
    if world.kind == "judged":
        u = rng.random(shape, dtype=np.float32)
        win = world.tie + (1 - world.tie) / (1 + np.exp(-latent[..., None]))
        return np.where(u < world.tie, 0.5, np.where(u < win, 1.0, 0.0)).mean(axis=-1)
    grades = np.rint(latent[..., None] + rng.normal(0, 1.5, shape).astype(np.float32))
    return np.clip(grades, 1, 10).mean(axis=-1)


def planted(rng, world: World, reps: int, seeds: int, prompts: int, effect: float = 0.0) -> np.ndarray:
    """d[rep, seed, prompt] = strategy B - strategy A, with B better by `effect` on the latent scale."""
    base = 1.5 if world.kind == "judged" else 6.0
    difficulty = rng.normal(base, 1.0, (reps, 1, prompts)).astype(np.float32)
    lean = rng.normal(0, world.lean_sd, (reps, 1, prompts)).astype(np.float32)
    a = difficulty - lean / 2 + rng.normal(0, world.seed_sd, (reps, seeds, 1)).astype(np.float32)
    b = difficulty + lean / 2 + effect + rng.normal(0, world.seed_sd, (reps, seeds, 1)).astype(np.float32)
    return _outcomes(rng, world, b) - _outcomes(rng, world, a)


def rejections(
    world: World, reps: int, seeds: int, prompts: int, effect: float = 0.0, seed: int = 0, alpha: float = ALPHA
) -> float:
    """Share of replicates whose interval at `alpha` excludes 0 (1 - coverage when effect = 0). A replicate with no
    interval (no variation at all) excludes nothing."""
    rng = np.random.default_rng([seed, seeds, prompts, int(effect * 1000), world.kind == "judged"])
    step = max(1, CHUNK // (seeds * prompts * world.samples))
    hits = 0
    for start in range(0, reps, step):
        d = planted(rng, world, min(step, reps - start), seeds, prompts, effect)
        _, [(low, high)], _ = crossed_interval(d, (alpha,))
        hits += int(((low > 0) | (high < 0)).sum())
    return hits / reps


def planted_arm(rng, world: World, reps: int, seeds: int, prompts: int) -> np.ndarray:
    """y[rep, seed, prompt]: ONE arm's per-prompt outcomes (its seed effect, the prompts' difficulty)."""
    base = 1.5 if world.kind == "judged" else 6.0
    latent = rng.normal(base, 1.0, (reps, 1, prompts)) + rng.normal(0, world.seed_sd, (reps, seeds, 1))
    return _outcomes(rng, world, latent.astype(np.float32))


def arm_truth(world: World) -> float:
    """The arm's true level: its outcome averaged over the prompt and seed populations (Gauss-Hermite)."""
    from numpy.polynomial.hermite_e import hermegauss

    x, w = hermegauss(80)
    base = 1.5 if world.kind == "judged" else 6.0
    latent = base + np.sqrt(1.0 + world.seed_sd**2) * x
    if world.kind == "judged":
        level = 0.5 * world.tie + (1 - world.tie) / (1 + np.exp(-latent))
        return float(np.sum(w * level) / w.sum())
    raise ValueError("arm_truth is defined for judged outcomes")


def arm_coverage(world: World, reps: int, seeds: int, prompts: int, seed: int = 0) -> dict:
    """Coverage of the arm's true level by the report's arm interval (seeds x shared prompts) and, for contrast,
    by a t-interval over its seeds' values alone (what the arm table used to show)."""
    from scipy.special import stdtrit

    rng = np.random.default_rng([seed, seeds, prompts, 7])
    y = planted_arm(rng, world, reps, seeds, prompts)
    truth = arm_truth(world)
    _, [(low, high)], _ = crossed_interval(y)
    per_seed = y.mean(axis=-1)
    half = stdtrit(seeds - 1, 0.975) * per_seed.std(axis=-1, ddof=1) / np.sqrt(seeds)
    return {
        "crossed": float(((low <= truth) & (truth <= high)).mean()),
        "seeds_only": float((np.abs(per_seed.mean(axis=-1) - truth) <= half).mean()),
    }


def coverage_table(world: World, reps: int) -> dict:
    return {(s, p): 1 - rejections(world, reps, s, p) for s in SEEDS for p in PROMPTS}


def power_table(world: World, reps: int, effects: tuple[float, ...]) -> dict:
    return {(e, s, p): rejections(world, reps, s, p, e) for e in effects for s in SEEDS for p in PROMPTS}


def effect_in_outcome(world: World, effect: float, draws: int = 200_000) -> float:
    """A latent effect in the outcome's own units (win rate, grade), averaged over prompt difficulty."""
    rng = np.random.default_rng(1)
    big = World(world.kind, 0.0, 0.0, 64, world.tie)
    latent = rng.normal(1.5 if world.kind == "judged" else 6.0, 1.0, draws // 64).astype(np.float32)
    return float((_outcomes(rng, big, latent + effect) - _outcomes(rng, big, latent)).mean())


def null_sweep_verdict_rate(
    reps: int, seeds: int = 3, betas: int = 2, prompts: int = 300, strategies: int = 3, seed: int = 0
) -> float:
    """Family-wise false verdicts: a null sweep of `strategies` x `betas` x `seeds` on shared prompts, judged,
    seed effects shared across betas, through the report's own row builder and verdict rule."""
    rng = np.random.default_rng(seed)
    world = World()
    names = [f"s{i}" for i in range(strategies)]
    wrong = 0
    for _ in range(reps):
        difficulty = rng.normal(1.5, 1.0, prompts)
        lean = rng.normal(0, world.lean_sd, (strategies, prompts))
        own_seed = rng.normal(0, world.seed_sd, (strategies, seeds))
        cells = {}
        for i, name in enumerate(names):
            for s in range(seeds):
                for beta in range(betas):
                    latent = difficulty + lean[i] + own_seed[i, s] + rng.normal(0, 0.1)  # seed x beta
                    values = _outcomes(rng, world, latent.astype(np.float32))
                    cells[(name, (f"0.{beta + 1}", str(s)))] = {
                        "value": float(values.mean()),
                        "prompts": {f"p{q}": float(v) for q, v in enumerate(values)},
                    }
        wrong += bool(verdicts(compare(cells, ["beta", "train.seed"]), "win_rate"))
    return wrong / reps


def mc_error(p: float, reps: int) -> float:
    return float(np.sqrt(p * (1 - p) / reps))


def markdown(reps: int) -> str:
    lines = [
        f"Coverage of the nominal 95 % interval (no planted effect; {reps} replicates per cell, Monte Carlo "
        f"error ±{mc_error(0.95, reps):.3f}):",
        "",
        "| outcome | seeds | " + " | ".join(f"{p} prompts" for p in PROMPTS) + " |",
        "|---|---|" + "---|" * len(PROMPTS),
    ]
    for world in (World("judged"), World("scores", seed_sd=0.2, lean_sd=0.3)):
        table = coverage_table(world, reps)
        lines += [
            f"| {world.kind} | {s} | " + " | ".join(f"{table[(s, p)]:.3f}" for p in PROMPTS) + " |" for s in SEEDS
        ]
    world, effects = World("judged"), (0.2, 0.4, 0.8)  # about +0.026, +0.050, +0.089 in win rate
    power = power_table(world, reps // 2, effects)
    lines += [
        "",
        f"Power (judged; share of replicates whose 95 % interval excludes 0, one comparison, {reps // 2} replicates):",
        "",
        "| planted effect (win rate) | seeds | " + " | ".join(f"{p} prompts" for p in PROMPTS) + " |",
        "|---|---|" + "---|" * len(PROMPTS),
    ]
    for e in effects:
        lines += [
            f"| {effect_in_outcome(world, e):+.3f} | {s} | "
            + " | ".join(f"{power[(e, s, p)]:.2f}" for p in PROMPTS)
            + " |"
            for s in SEEDS
        ]
    rate = null_sweep_verdict_rate(max(100, reps // 5))
    lines += [
        "",
        f"False verdicts, family-wise (3 strategies x 2 betas x 3 seeds x 300 prompts, no difference, "
        f"{max(100, reps // 5)} sweeps; Holm over the 3 pooled rows): {rate:.3f} of sweeps (alpha {ALPHA}).",
    ]
    lines += [
        "",
        f"An arm's own interval (judged; {reps // 2} replicates): coverage of the arm's true win rate",
        "",
        "| seeds | prompts | seeds x shared prompts (the report) | t over seeds only |",
        "|---|---|---|---|",
    ]
    for s, p in ((3, 300), (12, 300), (12, 2000)):
        cov = arm_coverage(World("judged"), reps // 2, s, p)
        lines.append(f"| {s} | {p} | {cov['crossed']:.3f} | {cov['seeds_only']:.3f} |")
    return "\n".join(lines)
