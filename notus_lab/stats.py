"""The statistics that turn a sweep into a claim.

Arms are compared in pairs of data strategies, matched on every other swept key (seed, beta, ...: a
"context") and, where the metric has per-prompt records (judged generations, external judges), prompt by
prompt. The interval of a paired difference is then a two-level cluster bootstrap (contexts, then prompts
within them), so both seed and prompt noise are in it; otherwise a t-interval over the paired runs.
Every row's adjusted interval is Bonferroni-widened for all rows of the table.

Power: from the same per-prompt differences, the between-context (seed) and within-context (prompt)
variance components give the standard error of a design with S contexts x P prompts,
    SE(S, P)^2 = var_seed / S + var_prompt / (S P),
the minimum detectable effect at 80 % power, MDE = (z(1 - a/2m) + z(0.8)) SE, and for a target effect D
the prompts needed at each number of seeds.
"""

from __future__ import annotations

import math
import statistics
from itertools import combinations

from notus_lab.runs import SEED_KEYS, STRATEGY_KEY, per_prompt_outcomes

ALPHA, POWER = 0.05, 0.8


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean; (mean, nan, nan) for fewer than 2 values."""
    from scipy import stats

    m = statistics.fmean(values)
    if len(values) < 2:
        return m, math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def cluster_bootstrap(diffs_by_context: list[list[float]], alphas: tuple[float, ...], resamples: int = 4000,
                      seed: int = 0) -> tuple[float, list[tuple[float, float]]]:
    """Mean paired difference and its percentile intervals (one per alpha), resampling contexts (the
    clusters) and, within each drawn context, its prompts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    k = len(diffs_by_context)
    point = float(np.mean([np.mean(d) for d in diffs_by_context]))
    picks = rng.integers(0, k, size=(resamples, k))  # which context fills each slot of each resample
    means = np.zeros((resamples, k))
    for c, d in enumerate(diffs_by_context):
        d = np.asarray(d, dtype=float)
        drawn = picks == c
        n = int(drawn.sum())
        if n:
            means[drawn] = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    boot = means.mean(axis=1)
    return point, [(float(np.quantile(boot, a / 2)), float(np.quantile(boot, 1 - a / 2))) for a in alphas]


def variance_components(diffs_by_context: list[list[float]]) -> dict:
    """Within-context (prompt) variance, pooled; between-context (seed) variance net of the prompt noise
    the context means carry; None for the seed part with a single context (it cannot be estimated)."""
    means = [statistics.fmean(d) for d in diffs_by_context]
    dof = sum(len(d) - 1 for d in diffs_by_context)
    within = sum((x - m) ** 2 for d, m in zip(diffs_by_context, means) for x in d) / dof if dof > 0 else 0.0
    prompts = statistics.fmean(len(d) for d in diffs_by_context)
    between = statistics.variance(means) if len(means) > 1 else None
    seed = None if between is None else max(between - within / prompts, 0.0)
    return {"prompt": within, "seed": seed, "contexts": len(means), "prompts": prompts}


def z_total(comparisons: int) -> float:
    from scipy.stats import norm

    return norm.ppf(1 - ALPHA / (2 * comparisons)) + norm.ppf(POWER)


def detectable(components: dict, comparisons: int, contexts: int | None = None, prompts: float | None = None) -> float:
    """The minimum difference this design finds with 80 % power at the adjusted alpha."""
    s, p = contexts or components["contexts"], prompts or components["prompts"]
    variance = (components["seed"] or 0.0) / s + components["prompt"] / (s * p)
    return z_total(comparisons) * math.sqrt(variance)


def prompts_needed(components: dict, target: float, comparisons: int, contexts: int) -> int | None:
    """Prompts per context for `target` at 80 % power with `contexts` seeds; None when seeds alone cap it."""
    budget = (target / z_total(comparisons)) ** 2 - (components["seed"] or 0.0) / contexts
    return math.ceil(components["prompt"] / (contexts * budget)) if budget > 0 else None


def paired_differences(runs: list[dict], metric: str, keys: list[str]) -> list[dict]:
    """For each pair of strategies: the difference of `metric` between runs that share every other swept key,
    pooled and per value of each non-seed key, with its interval, effect size and detectable effect."""
    if STRATEGY_KEY not in keys:
        return []
    others = [k for k in keys if k != STRATEGY_KEY]
    value, prompts = {}, {}
    for r in runs:
        if r["status"] == "finished" and metric in r["metrics"]:
            key = (r["overrides"][STRATEGY_KEY], tuple(r["overrides"].get(k) for k in others))
            value[key] = r["metrics"][metric]
            prompts[key] = per_prompt_outcomes(r["dir"], metric)
    strategies = sorted({s for s, _ in value})
    scopes = [("all", lambda ctx: True)] + [
        (f"{k}={v}", lambda ctx, i=others.index(k), v=v: ctx[i] == v)
        for k in others if k not in SEED_KEYS for v in sorted({ctx[others.index(k)] for _, ctx in value}, key=str)]
    rows = []
    for a, b in combinations(strategies, 2):
        for scope, keep in scopes:
            contexts = [ctx for s, ctx in value if s == a and keep(ctx) and (b, ctx) in value]
            if contexts:
                rows.append((a, b, scope, contexts))
    m = max(len(rows), 1)
    out = []
    for a, b, scope, contexts in rows:
        row = {"a": a, "b": b, "scope": scope, "n": len(contexts)}
        if all(prompts.get((s, ctx)) for s in (a, b) for ctx in contexts):
            per_context = [[prompts[(b, ctx)][p] - prompts[(a, ctx)][p] for p in prompts[(a, ctx)] if p in prompts[(b, ctx)]]
                           for ctx in contexts]
            mean, (ci, adjusted) = cluster_bootstrap(per_context, (ALPHA, ALPHA / m))
            parts = variance_components(per_context)
            row.update(method="cluster bootstrap (contexts x prompts)", prompts=min(len(d) for d in per_context),
                       mean=mean, ci=list(ci), adjusted_ci=list(adjusted), variance=parts,
                       mde=detectable(parts, m), effect_size=mean / math.sqrt((parts["seed"] or 0.0) + parts["prompt"])
                       if (parts["seed"] or 0.0) + parts["prompt"] > 0 else None)
        else:
            diffs = [value[(b, ctx)] - value[(a, ctx)] for ctx in contexts]
            mean, lo, hi = t_interval(diffs)
            _, alo, ahi = t_interval(diffs, 1 - ALPHA / m)
            sd = statistics.stdev(diffs) if len(diffs) > 1 else None
            parts = {"prompt": 0.0, "seed": None if sd is None else sd ** 2, "contexts": len(diffs), "prompts": 1}
            row.update(method="t over paired runs", mean=mean, ci=[lo, hi], adjusted_ci=[alo, ahi], variance=parts,
                       mde=detectable(parts, m) if sd is not None else None,
                       effect_size=mean / sd if sd else None)
        row["excludes_zero"] = bool(row["adjusted_ci"][0] > 0 or row["adjusted_ci"][1] < 0)
        row["comparisons"] = m
        out.append(row)
    return out


def verdicts(diffs: list[dict], metric: str) -> list[str]:
    lines = []
    for d in diffs:
        if d["scope"] != "all" or not d["excludes_zero"]:
            continue
        winner, loser = (d["b"], d["a"]) if d["mean"] > 0 else (d["a"], d["b"])
        lo, hi = sorted(abs(x) for x in d["adjusted_ci"])
        unit = f"{d['n']} paired runs" + (f" x {d['prompts']} prompts" if "prompts" in d else "")
        size = f", effect size {abs(d['effect_size']):.2f}" if d.get("effect_size") is not None else ""
        lines.append(f"**{winner}** beats **{loser}** on `{metric}` by {abs(d['mean']):.4f} "
                     f"(adjusted 95 % CI {lo:.4f} to {hi:.4f}, {unit}{size})")
    return lines


def design_line(diffs: list[dict]) -> str | None:
    """"with N paired runs x P prompts this sweep detects differences >= X" from the pooled rows."""
    pooled = [d for d in diffs if d["scope"] == "all" and d.get("mde") is not None]
    if not pooled:
        return None
    worst = max(pooled, key=lambda d: d["mde"])
    unit = f"{worst['n']} paired runs" + (f" x {worst['prompts']} prompts" if "prompts" in worst else "")
    return (f"With {unit} this sweep detects differences >= {worst['mde']:.4f} in the metric (80 % power, "
            f"alpha 0.05 Bonferroni-adjusted for {worst['comparisons']} comparisons; the largest of the pooled rows; "
            "a paired run is one seed at one setting of the other swept keys).")


def plan(diffs: list[dict], target: float, seeds=(2, 3, 4, 5, 8, 10)) -> list[dict]:
    """Seeds and prompts per seed needed to detect `target`, from the pooled rows' largest variances."""
    pooled = [d for d in diffs if d["scope"] == "all" and "variance" in d and d["variance"]["seed"] is not None]
    if not pooled:
        return []
    parts = {"prompt": max(d["variance"]["prompt"] for d in pooled), "seed": max(d["variance"]["seed"] for d in pooled)}
    m = pooled[0]["comparisons"]
    return [{"seeds": s, "prompts": prompts_needed(parts, target, m, s)} for s in seeds]
