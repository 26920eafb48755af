"""Factorial effects: what each data knob does to the judged win rate, when a sweep crosses `data` (the
strategy, i.e. the signal) with other `data.*` keys (data.tie_policy, data.rejected, data.min_margin ...).

Each effect is a contrast of cell means, every cell being one setting of the factors:
- a main effect of factor F, levels (low, high): the mean over the cells at F=high minus the mean over those at
  F=low, the other factors' cells weighted equally. A factor with more than 2 levels gets one row per pair.
- an interaction "A x B": half the difference between A's effect at B=high and at B=low (the usual 2^k
  effect: the mean of the cells where A and B are both high or both low, minus the rest).
A contrast is linear in the cells, so it is computed on every seed unit x shared prompt and gets the report's
interval (notus_lab/study/stats.py: crossed seeds x shared prompts, the seed part floored, seeds - 1 and
prompts - 1 degrees of freedom). A seed unit is every cell that shares the seed (other swept keys, such as beta,
averaged within it). Each contrast rests on the seeds that every cell it weighs has (a missing arm drops its seed
only from the contrasts that weigh its cell, not from every cell), so each row is the same crossed model on a
balanced subset and keeps its interval; the rows say how many seeds they rest on and the section names the
missing cells. Levels sort by value where they are all numbers (0, 2, 10), else as text.
Adjusted intervals are Bonferroni over the effect rows; `decided` is an adjusted interval clear of 0.

The decomposition splits the difference between two corners of the design (the published sets' rules:
notus_lab/config/published_sets.py CORNERS) into each differing factor's main effect and the rest (interactions),
each with its interval: with coded levels +-1, y(B) - y(A) = sum over factors of (x_B - x_A)/2 x effect + ...
It appears only where both corners are cells of the design; otherwise a note says why.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations, product
from operator import itemgetter

import numpy as np

from notus_lab.study.runs import (
    SEED_KEYS,
    STRATEGY_KEY,
    has,
    never_pooled,
    per_prompt_outcomes,
)
from notus_lab.study.stats import ALPHA, crossed_interval

DATA_KNOBS = "data."


def factor_keys(keys: list[str]) -> list[str]:
    """The swept keys that are factors of a data design: the strategy and every other `data.*` key (not the
    world's, which is never pooled, nor the pair seed, which follows train.seed)."""
    if STRATEGY_KEY not in keys:
        return []
    extra = [k for k in keys if k.startswith(DATA_KNOBS) and not never_pooled(k) and k != "data.seed"]
    return [STRATEGY_KEY] + extra if extra else []


def level_order(values) -> list:
    """A factor's levels in order: by value where every level reads as a number (0, 2, 10), else as text."""
    values = list(values)
    try:
        return sorted(values, key=lambda v: (float(v), str(v)))
    except (TypeError, ValueError):
        return sorted(values, key=str)


def cell_data(runs: list[dict], metric: str, factors: list[str]) -> tuple[dict, list, bool]:
    """{cell: array[seed units, prompts]} over every seed any cell has (other swept keys averaged within a seed;
    a row of nan where the cell has no finished arm at that seed), the seeds, and whether the metric is per
    prompt."""
    by = defaultdict(list)  # (cell, seed) -> runs
    for r in runs:
        if has(r, metric):
            cell = tuple(r["overrides"].get(k) for k in factors)
            seed = tuple(r["overrides"].get(k) for k in SEED_KEYS)
            by[(cell, seed)].append(r)
    cells = sorted({c for c, _ in by}, key=str)
    seeds = sorted({s for _, s in by}, key=str)
    if not cells or len(seeds) == 0:
        return {}, [], False
    records = {key: [per_prompt_outcomes(r["dir"], metric) for r in members] for key, members in by.items()}
    used = [rec for recs in records.values() for rec in recs]
    shared = sorted(set.intersection(*(set(r) for r in used))) if all(used) else []
    per_prompt = len(shared) > 1
    width = len(shared) if per_prompt else 1
    out = {}
    for c in cells:
        rows = []
        for s in seeds:
            if (c, s) not in by:
                rows.append(np.full(width, np.nan))
            elif per_prompt:
                take = itemgetter(*shared)
                rows.append(np.mean([take(rec) for rec in records[(c, s)]], axis=0))
            else:
                rows.append([np.mean([r["metrics"][metric] for r in by[(c, s)]])])
        out[c] = np.asarray(rows, dtype=float)
    return out, seeds, per_prompt


def _seeds_with(data: dict, weights: dict) -> np.ndarray | None:
    """Which seed units (the -2 axis) every cell the contrast weighs has; None where a weighed cell is absent."""
    cells = [c for c, w in weights.items() if w]
    if any(c not in data for c in cells):
        return None
    ok = [np.isfinite(data[c]).all(axis=tuple(i for i in range(data[c].ndim) if i != data[c].ndim - 2)) for c in cells]
    return np.logical_and.reduce(ok)


def contrast_interval(data: dict, weights: dict, alphas: tuple[float, ...] = (ALPHA,)):
    """The contrast's mean, one interval per alpha and its mean squares, on the seeds every weighed cell has; None
    where no cell is weighed, a weighed cell is missing, or fewer than 2 seeds remain."""
    if not any(weights.values()):
        return None
    keep = _seeds_with(data, weights)
    if keep is None or keep.sum() < 2:
        return None
    return crossed_interval(combine({c: data[c][..., keep, :] for c, w in weights.items() if w}, weights), alphas)


def contrasts(levels: dict[str, list]) -> list[dict]:
    """Every main effect (each pair of a factor's levels) and two-way interaction, as weights over cells."""
    names = list(levels)
    cells = list(product(*(levels[n] for n in names)))
    rows = []
    for i, name in enumerate(names):
        for low, high in combinations(levels[name], 2):
            w = {c: (1.0 if c[i] == high else -1.0 if c[i] == low else 0.0) for c in cells}
            rows.append({"factor": name, "contrast": [low, high], "weights": _per_side(w)})
    for (i, a), (j, b) in combinations(enumerate(names), 2):
        for (a0, a1), (b0, b1) in product(combinations(levels[a], 2), combinations(levels[b], 2)):
            sign = {(a1, b1): 1.0, (a0, b0): 1.0, (a1, b0): -1.0, (a0, b1): -1.0}
            w = {c: sign.get((c[i], c[j]), 0.0) for c in cells}
            # half of (a1 - a0 at b=b1) minus (a1 - a0 at b=b0): the matched cells minus the mixed ones
            rows.append(
                {
                    "factor": f"{a} x {b}",
                    "contrast": [f"{a1} − {a0} at {b}={b0}", f"{a1} − {a0} at {b}={b1}"],
                    "weights": _per_side(w),
                }
            )
    return rows


def _per_side(w: dict) -> dict:
    """Weights that average each side: +1/n_plus on one side, -1/n_minus on the other."""
    plus, minus = sum(v > 0 for v in w.values()), sum(v < 0 for v in w.values())
    return {c: (v / plus if v > 0 else v / minus if v < 0 else 0.0) for c, v in w.items()}


def combine(data: dict, weights: dict) -> np.ndarray:
    """The contrast on every seed unit x prompt (leading axes, such as replicates, pass through)."""
    terms = [w * data[c] for c, w in weights.items() if w]
    if not terms:
        raise ValueError("a contrast with every weight 0 has no interval")
    return sum(terms)


def effect_rows(data: dict, levels: dict[str, list]) -> list[dict]:
    """Each contrast's mean, 95 % interval and Bonferroni-adjusted interval over all the rows that can be computed
    (vectorised over leading axes); a contrast that weighs a missing cell, or rests on fewer than 2 seeds, is left
    out."""
    rows = []
    candidates = contrasts(levels)
    computable = [r for r in candidates if contrast_interval(data, r["weights"]) is not None]
    m = len(computable)
    for r in computable:
        mean, (ci, adjusted), ms = contrast_interval(data, r["weights"], (ALPHA, ALPHA / m))
        r.update(mean=mean, ci=ci, adjusted_ci=adjusted, seeds=ms["seeds"], prompts=ms["prompts"], comparisons=m)
        r["decided"] = (adjusted[0] > 0) | (adjusted[1] < 0)
        rows.append(r)
    return rows


def effects(runs: list[dict], metric: str, keys: list[str]) -> dict | None:
    """report.json's "effects": the rows, the seeds they rest on, the missing cells and the corners'
    decomposition (or why there is none)."""
    from notus_lab.config.published_sets import CORNERS

    factors = factor_keys(keys)
    if not factors:
        return None
    data, seeds, per_prompt = cell_data(runs, metric, factors)
    levels = {f: level_order({c[i] for c in data}) for i, f in enumerate(factors)}
    cells = list(product(*levels.values()))
    missing = [_name(levels, c) for c in cells if c not in data]
    missing += [
        f"{_name(levels, c)} at seed {','.join(str(v) for v in s if v is not None)}"
        for c in cells
        if c in data
        for s, ok in zip(seeds, np.isfinite(data[c]).all(axis=-1))
        if not ok
    ]
    base = {"factors": factors, "levels": levels, "seeds": len(seeds), "per_prompt": per_prompt, "missing": missing}
    rows = [_plain(r) for r in effect_rows(data, levels)] if len(seeds) >= 2 else []
    if not rows:
        return {**base, "rows": [], "note": "no effect has 2 seeds at which every cell it weighs has a finished arm"}
    decomposed, why = decomposition(data, levels, CORNERS)
    return {**base, "rows": rows, "decomposition": decomposed, "decomposition_note": why}


def _name(levels: dict, cell: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(levels, cell))


def _plain(r: dict) -> dict:
    out = {k: v for k, v in r.items() if k != "weights"}
    out["mean"] = float(out["mean"])
    out["ci"] = [float(x) for x in out["ci"]]
    out["adjusted_ci"] = [float(x) for x in out["adjusted_ci"]]
    out["decided"] = bool(out["decided"])
    out["seeds"] = int(out["seeds"])
    return out


def _corner_cell(levels: dict[str, list], corner: dict) -> tuple | None:
    """The design's cell for a published corner: each factor at the corner's value (any of several spellings)."""
    cell = []
    for name, values in levels.items():
        wanted = corner.get(name)
        if wanted is None:
            return None
        match = [v for v in values if str(v) in wanted]
        if not match:
            return None
        cell.append(match[0])
    return tuple(cell)


def decomposition(data: dict, levels: dict[str, list], corners: dict) -> tuple[dict | None, str | None]:
    """B - A between two published corners, split into each factor's part (its main effect between the corners'
    levels times the sign of the move) and the rest (the interactions), each with its 95 % interval; or None and
    one line saying why there is none (a corner is not a cell of the design, or has no finished arm)."""
    (name_a, corner_a), (name_b, corner_b) = list(corners.items())[:2]
    a, b = _corner_cell(levels, corner_a), _corner_cell(levels, corner_b)
    unfixed = [k for k in levels if k not in corner_a or k not in corner_b]
    if unfixed:
        return None, f"no decomposition: the published corners fix no level of {', '.join(unfixed)}"
    for name, corner, cell in ((name_a, corner_a, a), (name_b, corner_b, b)):
        if cell is None:
            spelled = ", ".join(f"{k}={' or '.join(map(str, corner[k]))}" for k in levels)
            return None, f"no decomposition: the {name} corner ({spelled}) is not a cell of this design"
        if cell not in data:
            return None, f"no decomposition: the {name} corner ({_name(levels, cell)}) has no finished arm"
    mains = {(r["factor"], tuple(r["contrast"])): r for r in contrasts(levels) if " x " not in r["factor"]}
    total = {c: (1.0 if c == b else -1.0 if c == a else 0.0) for c in data}
    parts, rest = [], dict(total)
    for i, name in enumerate(levels):
        if a[i] == b[i]:
            parts.append({"part": name, "from": a[i], "to": b[i], "weights": None})
            continue
        lo, hi = sorted((a[i], b[i]), key=levels[name].index)
        sign = 1.0 if hi == b[i] else -1.0
        w = {c: sign * mains[(name, (lo, hi))]["weights"].get(c, 0.0) for c in data}
        parts.append({"part": name, "from": a[i], "to": b[i], "weights": w})
        rest = {c: rest[c] - w[c] for c in rest}
    rest = {c: (0.0 if abs(v) < 1e-12 else v) for c, v in rest.items()}
    parts.append({"part": "interactions", "weights": rest})
    parts.append({"part": "total", "from": name_a, "to": name_b, "weights": total})
    out = []
    for p in parts:
        plain = {k: v for k, v in p.items() if k != "weights"}
        if p["weights"] is None:
            out.append({**plain, "mean": 0.0, "ci": None, "note": "the corners share this level: no part"})
            continue
        if not any(p["weights"].values()):
            out.append({**plain, "mean": 0.0, "ci": None, "note": "no interaction separates the corners"})
            continue
        got = contrast_interval(data, p["weights"])
        if got is None:
            out.append({**plain, "mean": float("nan"), "ci": None, "note": "a cell it weighs is missing"})
            continue
        mean, [ci], _ = got
        out.append({**plain, "mean": float(mean), "ci": [float(x) for x in ci]})
    return {"from": name_a, "to": name_b, "cells": [list(a), list(b)], "parts": out}, None


# ---------------------------------------------------------------------------------------------
# Planted factorial designs: the same functions on data with a known truth

SCENARIOS = {  # true effects (high - low) of a signal x tie rule x rejected rule design, in win rate
    "nothing": {},
    "only the signal": {STRATEGY_KEY: 0.04},
    "only the tie rule": {"data.tie_policy": 0.04},
    "signal and tie rule": {STRATEGY_KEY: 0.04, "data.tie_policy": -0.03},
    "an interaction": {f"{STRATEGY_KEY} x data.tie_policy": 0.04},
}
PLANTED_LEVELS = {
    STRATEGY_KEY: ["critique_fixed", "mean_rating"],
    "data.tie_policy": ["drop", "keep"],
    "data.rejected": ["lowest", "random"],
}


def planted_cells(
    rng, truth: dict, reps: int, seeds: int, prompts: int, components: dict, levels: dict | None = None
) -> dict:
    """{cell: y[rep, seed, prompt]} for the 2 x 2 x 2 design: cell means from the true effects (coded +-1/2), a seed
    effect shared by every cell of a seed plus each cell's own, a prompt effect shared by every cell plus each
    cell's own lean, and a residual. `components` are those of one cell's outcome."""
    levels = levels or PLANTED_LEVELS
    names = list(levels)
    cells = list(product(*(levels[n] for n in names)))
    shared_seed = rng.normal(0, np.sqrt(components["seed"]), (reps, seeds, 1))
    shared_prompt = rng.normal(0, np.sqrt(components["prompt"]), (reps, 1, prompts))
    out = {}
    for c in cells:
        # a factor with more than 2 levels: its middle levels sit at 0 (plant effects only on 2-level factors)
        x = {n: (0.5 if c[i] == levels[n][-1] else -0.5 if c[i] == levels[n][0] else 0.0) for i, n in enumerate(names)}
        # coded +-1/2: a main effect v moves high - low by v; an interaction v moves matched - mixed cells by v
        mean = 0.8 + sum(
            v * (x[k] if " x " not in k else 2 * np.prod([x[f] for f in k.split(" x ")])) for k, v in truth.items()
        )
        out[c] = (
            mean
            + shared_seed
            + rng.normal(0, np.sqrt(components["seed"]), (reps, seeds, 1))
            + shared_prompt
            + rng.normal(0, np.sqrt(components["prompt"]), (reps, 1, prompts))
            + rng.normal(0, np.sqrt(components["resid"]), (reps, seeds, prompts))
        )
    return out


def planted_truth(truth: dict, row: dict) -> float:
    """The true value of an effect row: the planted effect for its factor, 0 for every other."""
    return truth.get(row["factor"], 0.0)


def factorial_check(
    scenario: str,
    reps: int,
    seeds: int = 3,
    prompts: int = 300,
    seed: int = 0,
    components: dict | None = None,
    missing: tuple = (),
    levels: dict | None = None,
) -> dict:
    """Coverage of each effect's interval, false attribution (any effect decided for a factor that has none:
    family-wise) and power (every planted effect decided), through `effect_rows`. `missing`: (cell, seed index)
    arms that did not finish (an unbalanced design), their rows set to nan as `cell_data` leaves them; `levels`:
    another design (planted effects only on its 2-level factors)."""
    components = components or {"seed": 0.0002, "prompt": 0.02, "resid": 0.1}
    truth = SCENARIOS[scenario]
    rng = np.random.default_rng([seed, seeds, prompts, len(scenario)])
    levels = levels or PLANTED_LEVELS
    cells = planted_cells(rng, truth, reps, seeds, prompts, components, levels)
    for cell, s in missing:
        cells[cell][:, s, :] = np.nan
    rows = effect_rows(cells, levels)
    covered = np.stack(
        [(r["ci"][0] <= planted_truth(truth, r)) & (planted_truth(truth, r) <= r["ci"][1]) for r in rows]
    )
    null = [r for r in rows if planted_truth(truth, r) == 0]
    real = [r for r in rows if planted_truth(truth, r) != 0]
    wrong = np.any(np.stack([r["decided"] for r in null]), axis=0) if null else np.zeros(reps, bool)
    found = np.all(np.stack([r["decided"] for r in real]), axis=0) if real else None
    return {
        "scenario": scenario,
        "effects": len(rows),
        "seeds": [int(r["seeds"]) for r in rows],
        "coverage": float(covered.mean()),
        "worst_coverage": float(covered.mean(axis=1).min()),
        "false_attribution": float(wrong.mean()),
        "power": None if found is None else float(found.mean()),
    }


def factorial_markdown(reps: int) -> str:
    """docs/statistics.md's table: each planted scenario at 3 and 6 seeds x 300 prompts."""
    from notus_lab.study.planted import mc_error

    lines = [
        f"Effects of a 2 x 2 x 2 design (signal x tie rule x rejected rule; {reps} replicates a row, Monte Carlo "
        f"error of a rate near 0.05: ±{mc_error(0.05, reps):.3f}); planted effects of 0.03-0.04 in win rate:",
        "",
        "| planted | seeds | coverage of the 95 % intervals (mean / worst effect) | false attribution (family-wise) "
        "| power (every planted effect decided) |",
        "|---|---|---|---|---|",
    ]
    for seeds in (3, 6):
        for scenario in SCENARIOS:
            r = factorial_check(scenario, reps, seeds)
            power = "" if r["power"] is None else f"{r['power']:.2f}"
            lines.append(
                f"| {scenario} | {seeds} | {r['coverage']:.3f} / {r['worst_coverage']:.3f} | "
                f"{r['false_attribution']:.3f} | {power} |"
            )
    return "\n".join(lines)
