"""The statistics that turn a sweep into a claim.

Design. Two data strategies A and B are compared on the difference B - A of a metric, paired on every other
swept key (a *context*: seed, beta, ...) and, where the metric has per-prompt records, prompt by prompt. Every
arm answers the SAME held-out prompts, so prompts are crossed with contexts, not nested in them:

    d[u, p] = delta + seed[u] + prompt[p] + residual[u, p]

`prompt[p]` is a prompt's lean towards one strategy, shared by every seed. Contexts that share a seed (seed x
beta) are averaged into one seed unit first: a seed shares data.seed and the initialisation across betas, so a
pooled row has as many independent units as seeds, not seeds x betas.

Interval. With S seed units and P prompts, the balanced two-way random-effects ANOVA (Searle, Casella &
McCulloch 1992, Variance Components, ch. 4) gives the mean squares MS_S (S-1 df), MS_P (P-1 df), MS_E
((S-1)(P-1) df), and the variance of the mean difference splits into a seed part and a prompt part:

    Var = (s_seed^2 + s_resid^2 / P) / S + s_prompt^2 / P,   V_S = MS_S / (S P),   V_P = (MS_P - MS_E)+ / (S P)

with S-1 and P-1 degrees of freedom. Adding two such parts is a Behrens-Fisher problem; at 2 seeds the
Welch-Satterthwaite t covers only ~0.89 (its degrees of freedom jump exactly when the seed part is small by
chance), so the interval is Banerjee's (1961, Sankhya A 23) conservative combination

    half(q) = sqrt(t(q, S-1)^2 V_S + t(q, P-1)^2 V_P),

whose coverage tests/unit/test_calibration.py measures on planted designs (2-12 seeds x 50-2000 prompts). A metric
without per-prompt records is the t-interval over seed units (P = 1, no prompt part). Adjusted intervals use
alpha / m for the m rows of the table (Bonferroni).

Power, from the same model and distribution: MDE = half(1 - alpha/2m) + half(power), never below the adjusted
half-width; a design of S' seeds x P' prompts is projected with V_S' = (s_seed^2 + s_resid^2 / P') / S' and
V_P' = s_prompt^2 / P'.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from itertools import combinations
from operator import itemgetter

import numpy as np

from notus_lab.study.runs import SEED_KEYS, STRATEGY_KEY, has, never_pooled, per_prompt_outcomes

ALPHA, POWER = 0.05, 0.8


METHOD = {True: "crossed random effects (seeds x shared prompts), Banerjee interval",
          False: "t over seed units (no per-prompt records)"}


def _t(q: float, df) -> np.ndarray:
    from scipy.special import stdtrit  # Student-t quantile; scipy.stats.t.ppf without its per-call overhead

    return stdtrit(np.maximum(df, 1), q)


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean; (mean, nan, nan) for fewer than 2 values."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, math.nan, math.nan
    half = float(_t(0.5 + confidence / 2, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def mean_squares(d) -> dict:
    """Two-way ANOVA of d[..., S, P] (seed units x prompts; leading axes are replicates): the mean, the three
    mean squares and the variance components (negative estimates set to 0). P = 1 is a run-level design."""
    d = np.asarray(d, dtype=float)
    s, p = d.shape[-2:]
    grand = d.mean(axis=(-2, -1))
    ms_s = p * ((d.mean(axis=-1) - grand[..., None]) ** 2).sum(axis=-1) / (s - 1) if s > 1 else np.full(grand.shape, np.nan)
    if p > 1:
        ms_p = s * ((d.mean(axis=-2) - grand[..., None]) ** 2).sum(axis=-1) / (p - 1)
        total = ((d - grand[..., None, None]) ** 2).sum(axis=(-2, -1))
        ms_e = (total - (s - 1) * ms_s - (p - 1) * ms_p) / ((s - 1) * (p - 1)) if s > 1 else np.full(grand.shape, np.nan)
        seed, prompt, resid = np.maximum((ms_s - ms_e) / p, 0), np.maximum((ms_p - ms_e) / s, 0), ms_e
    else:  # one value per seed unit: its spread is all there is
        ms_p = ms_e = np.zeros(grand.shape)
        seed, prompt, resid = ms_s, ms_p, ms_e
    return {"mean": grand, "seeds": s, "prompts": p, "ms_seed": ms_s, "ms_prompt": ms_p, "ms_resid": ms_e,
            "seed": seed, "prompt": prompt, "resid": resid}


def half_width(v_seed, v_prompt, seeds: int, prompts: int, q: float):
    """Banerjee's combination of the seed part (seeds-1 df) and the prompt part (prompts-1 df) at quantile q."""
    return np.sqrt(_t(q, seeds - 1) ** 2 * v_seed + (_t(q, prompts - 1) ** 2 * v_prompt if prompts > 1 else 0.0))


def crossed_interval(d, alphas: tuple[float, ...] = (ALPHA,)):
    """Mean of d[..., S, P] and one (low, high) per alpha; the interval of this module's docstring."""
    ms = mean_squares(d)
    s, p = ms["seeds"], ms["prompts"]
    v_seed = ms["ms_seed"] / (s * p)
    v_prompt = np.maximum(ms["ms_prompt"] - ms["ms_resid"], 0) / (s * p) if p > 1 else 0.0
    halves = [half_width(v_seed, v_prompt, s, p, 1 - a / 2) for a in alphas]
    return ms["mean"], [(ms["mean"] - h, ms["mean"] + h) for h in halves], ms


def projected(components: dict, seeds: int, prompts: int) -> tuple[float, float]:
    """(V_S, V_P) of a design with `seeds` units x `prompts` prompts under the estimated components."""
    if components["prompts"] == 1:  # run-level: only the spread of seed units
        return components["seed"] / seeds, 0.0
    return (components["seed"] + components["resid"] / prompts) / seeds, components["prompt"] / prompts


def detectable(components: dict, comparisons: int, seeds: int | None = None, prompts: int | None = None) -> float:
    """The smallest difference a design finds with 80 % power at alpha / comparisons (two-sided)."""
    s, p = seeds or components["seeds"], prompts or components["prompts"]
    v_seed, v_prompt = projected(components, s, p)
    p_df = p if components["prompts"] > 1 else 1
    return float(half_width(v_seed, v_prompt, s, p_df, 1 - ALPHA / (2 * comparisons))
                 + half_width(v_seed, v_prompt, s, p_df, POWER))


def prompts_needed(components: dict, target: float, comparisons: int, seeds: int, most: int = 10 ** 6) -> int | None:
    """The fewest shared prompts for `target` at 80 % power with `seeds` units; None when seeds alone cap it."""
    if components["prompts"] == 1:
        return 1 if detectable(components, comparisons, seeds) <= target else None
    if detectable(components, comparisons, seeds, most) > target:
        return None
    low, high = 2, most
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if detectable(components, comparisons, seeds, mid) > target else (low, mid)
    return low


def difference(unit_rows, comparisons: int, per_prompt: bool) -> dict:
    """One row's statistics from its seed units x prompts matrix (one column when run-level)."""
    d = np.asarray(unit_rows, dtype=float)
    s, p = d.shape
    row = {"method": METHOD[per_prompt], "seeds": s, "mean": float(d.mean())}
    if per_prompt:
        row["prompts"] = p
    if s < 2:  # no seed spread to measure: no interval, no verdict
        return {**row, "ci": [None, None], "adjusted_ci": [None, None], "mde": None, "effect_size": None,
                "df": {"seed": 0, "prompt": p - 1}, "variance": None, "excludes_zero": False}
    _, (ci, adjusted), ms = crossed_interval(d, (ALPHA, ALPHA / comparisons))
    parts = {k: float(ms[k]) for k in ("seed", "prompt", "resid")} | {"seeds": s, "prompts": p}
    total = parts["seed"] + parts["prompt"] + parts["resid"]
    return {**row, "ci": [float(x) for x in ci], "adjusted_ci": [float(x) for x in adjusted],
            "df": {"seed": s - 1, "prompt": p - 1}, "variance": parts, "mde": detectable(parts, comparisons),
            "effect_size": row["mean"] / math.sqrt(total) if total > 0 else None,
            "excludes_zero": bool(adjusted[0] > 0 or adjusted[1] < 0)}


def _unit_matrix(a: str, b: str, contexts: list[tuple], cells: dict, seed_at: list[int]) -> tuple[np.ndarray, bool]:
    """Seed units x prompts of B - A, contexts of one seed averaged; the prompts every context shares."""
    units = defaultdict(list)
    for ctx in contexts:
        units[tuple(ctx[i] for i in seed_at)].append(ctx)
    records = [cells[(s, ctx)]["prompts"] for s in (a, b) for ctx in contexts]
    shared = sorted(set.intersection(*(set(r) for r in records))) if all(records) else []
    if len(shared) > 1:
        take = itemgetter(*shared)
        diff = {c: np.subtract(take(cells[(b, c)]["prompts"]), take(cells[(a, c)]["prompts"])) for c in contexts}
        return np.array([np.mean([diff[c] for c in members], axis=0) for members in units.values()]), True
    return np.array([[statistics.fmean(cells[(b, c)]["value"] - cells[(a, c)]["value"] for c in members)]
                     for members in units.values()]), False


def compare(cells: dict, others: list[str]) -> list[dict]:
    """Every pair of strategies in `cells` ({(strategy, context): {"value", "prompts"}}, a context being the
    values of `others`), pooled over the other keys and per value of each, within each value of the keys that
    change the world or the judge (never pooled)."""
    seed_at = [i for i, k in enumerate(others) if k in SEED_KEYS]
    apart = [i for i, k in enumerate(others) if never_pooled(k)]
    scoped = [i for i, k in enumerate(others) if i not in seed_at and i not in apart]
    strategies = sorted({s for s, _ in cells})
    strata = sorted({tuple(ctx[i] for i in apart) for _, ctx in cells}, key=str)
    plans = []
    for a, b in combinations(strategies, 2):
        for stratum in strata:
            inside = [ctx for s, ctx in cells if s == a and (b, ctx) in cells and tuple(ctx[i] for i in apart) == stratum]
            label = [f"{others[i]}={v}" for i, v in zip(apart, stratum)]
            scopes = [(", ".join(label) or "all", True, inside)]
            for i in scoped:
                for v in sorted({ctx[i] for ctx in inside}, key=str):
                    scopes.append((", ".join(label + [f"{others[i]}={v}"]), False, [c for c in inside if c[i] == v]))
            plans += [(a, b, scope, pooled, ctxs) for scope, pooled, ctxs in scopes if ctxs]
    m = max(len(plans), 1)
    rows = []
    for a, b, scope, pooled, contexts in plans:
        matrix, per_prompt = _unit_matrix(a, b, contexts, cells, seed_at)
        rows.append({"a": a, "b": b, "scope": scope, "pooled": pooled, "n": len(contexts),
                     **difference(matrix, m, per_prompt), "comparisons": m})
    return rows


def paired_differences(runs: list[dict], metric: str, keys: list[str]) -> list[dict]:
    """The rows of `compare` for a sweep's finished runs, read from their run dirs."""
    if STRATEGY_KEY not in keys:
        return []
    others = [k for k in keys if k != STRATEGY_KEY]
    cells = {}
    for r in runs:
        if has(r, metric):
            cells[(r["overrides"][STRATEGY_KEY], tuple(r["overrides"].get(k) for k in others))] = {
                "value": r["metrics"][metric], "prompts": per_prompt_outcomes(r["dir"], metric)}
    return compare(cells, others)


def verdicts(diffs: list[dict], metric: str) -> list[str]:
    lines = []
    for d in diffs:
        if not d["pooled"] or not d["excludes_zero"]:
            continue
        winner, loser = (d["b"], d["a"]) if d["mean"] > 0 else (d["a"], d["b"])
        lo, hi = sorted(abs(x) for x in d["adjusted_ci"])
        where = "" if d["scope"] == "all" else f" at {d['scope']}"
        size = f", effect size {abs(d['effect_size']):.2f}" if d.get("effect_size") is not None else ""
        lines.append(f"**{winner}** beats **{loser}** on `{metric}`{where} by {abs(d['mean']):.4f} "
                     f"(adjusted 95 % CI {lo:.4f} to {hi:.4f}, {unit(d)}{size})")
    return lines


def unit(d: dict) -> str:
    """"3 seeds (6 paired runs) x 300 prompts": what a row's interval rests on."""
    runs = f" ({d['n']} paired runs)" if d["n"] != d["seeds"] else ""
    return f"{d['seeds']} seed{'s' if d['seeds'] != 1 else ''}{runs}" + (f" x {d['prompts']} prompts" if "prompts" in d else "")


def design_line(diffs: list[dict]) -> str | None:
    """What the pooled rows' design supports: its detectable difference, or that it needs more seeds."""
    pooled = [d for d in diffs if d["pooled"]]
    if not pooled:
        return None
    if any(d["seeds"] < 2 for d in pooled):
        return ("A verdict needs at least 2 seeds: with one, seed noise cannot be measured and no interval is "
                "given (sweep train.seed).")
    worst = max(pooled, key=lambda d: d["mde"])
    line = (f"With {unit(worst)} this sweep detects differences >= {worst['mde']:.4f} in the metric (80 % power, "
            f"alpha 0.05 Bonferroni-adjusted for {worst['comparisons']} comparisons; the largest of the pooled rows). "
            f"Seed noise has {worst['seeds'] - 1} degree{'s' if worst['seeds'] != 2 else ''} of freedom")
    undecided = [d for d in pooled if not d["excludes_zero"]]
    if worst["seeds"] <= 3 and undecided:
        line += (": the intervals are wide, and a verdict between close strategies needs more seeds "
                 "(`--target-effect D` gives seeds x prompts)")
    return line + "."


def plan(diffs: list[dict], target: float, seeds=(2, 3, 4, 5, 6, 8, 10, 12)) -> list[dict]:
    """Seeds and shared prompts needed to detect `target`, from the pooled rows' largest components."""
    pooled = [d for d in diffs if d["pooled"] and d["variance"]]
    if not pooled:
        return []
    per_prompt = [d for d in pooled if "prompts" in d] or pooled
    parts = {k: max(d["variance"][k] for d in per_prompt) for k in ("seed", "prompt", "resid")}
    parts["prompts"] = per_prompt[0]["variance"]["prompts"]
    m = pooled[0]["comparisons"]
    return [{"seeds": s, "prompts": prompts_needed(parts, target, m, s)} for s in seeds]
