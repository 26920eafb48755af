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

    half(q) = sqrt(max(t(q, S-1)^2 V_S, t(q, (S-1)(P-1))^2 V_E) + t(q, P-1)^2 V_P),   V_E = MS_E / (S P).

The seed part never falls below the residual's own part: E[MS_S] >= E[MS_E], and with discrete outcomes (win /
tie / loss) two seed units' means tie now and then, MS_S is then exactly 0, and without the floor the interval
would rest on the prompt part alone (or have zero width). An interval whose width is still 0 (every value
equal) is no interval: it gives no verdict. A metric without per-prompt records is the t-interval over seed
units (P = 1, no prompt or residual part).

Verdicts. Only pooled rows (`all`, or one value of a key that changes the world or the judge) can give a verdict;
they form the family, and Holm's step-down procedure (Holm 1979, Scand. J. Statist. 6) over their p-values
keeps its family-wise error at alpha. A row's p-value is the alpha at which its interval touches 0. Its
adjusted interval is at the alpha of its Holm step (rows Holm rejects) or of the first step that failed (the
rest), so an adjusted interval excludes 0 exactly when the row has a verdict.

Power, from the same interval: the chance that it excludes 0 at a true difference, integrated over the
chi-square distribution of MS_S (Gauss quadrature; MS_E and MS_P are taken at their expectations, having many
degrees of freedom). The detectable difference (MDE) is where that chance is 80 % at alpha / m, Holm's first step;
a design of S' seeds x P' prompts is projected with E[MS_S] = P' s_seed^2 + s_resid^2 and V_P' = s_prompt^2 / P'.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from functools import lru_cache
from itertools import combinations
from operator import itemgetter

import numpy as np

from notus_lab.core.intervals import holm_steps, t_interval, t_upper
from notus_lab.study.runs import (
    SEED_KEYS,
    STRATEGY_KEY,
    has,
    never_pooled,
    per_prompt_outcomes,
    stratum,
)

ALPHA, POWER = 0.05, 0.8


METHOD = {
    True: "crossed random effects (seeds x shared prompts), Banerjee interval",
    False: "t over seed units (no per-prompt records)",
}


def mean_squares(d) -> dict:
    """Two-way ANOVA of d[..., S, P] (seed units x prompts; leading axes are replicates): the mean, the three
    mean squares and the variance components (negative estimates set to 0). P = 1 is a run-level design."""
    d = np.asarray(d, dtype=float)
    s, p = d.shape[-2:]
    grand = d.mean(axis=(-2, -1))
    ms_s = (
        p * ((d.mean(axis=-1) - grand[..., None]) ** 2).sum(axis=-1) / (s - 1)
        if s > 1
        else np.full(grand.shape, np.nan)
    )
    if p > 1:
        ms_p = s * ((d.mean(axis=-2) - grand[..., None]) ** 2).sum(axis=-1) / (p - 1)
        total = ((d - grand[..., None, None]) ** 2).sum(axis=(-2, -1))
        ms_e = (
            (total - (s - 1) * ms_s - (p - 1) * ms_p) / ((s - 1) * (p - 1)) if s > 1 else np.full(grand.shape, np.nan)
        )
        ms_e = np.maximum(ms_e, 0.0)  # rounding can leave -1e-17 where every residual is 0
        seed, prompt, resid = np.maximum((ms_s - ms_e) / p, 0), np.maximum((ms_p - ms_e) / s, 0), ms_e
    else:  # one value per seed unit: its spread is all there is
        ms_p = ms_e = np.zeros(grand.shape)
        seed, prompt, resid = ms_s, ms_p, ms_e
    return {
        "mean": grand,
        "seeds": s,
        "prompts": p,
        "ms_seed": ms_s,
        "ms_prompt": ms_p,
        "ms_resid": ms_e,
        "seed": seed,
        "prompt": prompt,
        "resid": resid,
    }


def half_width(v_seed, v_prompt, v_resid, seeds: int, prompts: int, tail):
    """Banerjee's combination of the seed part (seeds-1 df, never below the residual's part on (seeds-1)(prompts-1)
    df) and the prompt part (prompts-1 df), each t at upper-tail probability `tail` (alpha / 2 for an interval)."""
    seed_part = t_upper(tail, seeds - 1) ** 2 * v_seed
    if prompts == 1:
        return np.sqrt(seed_part)
    seed_part = np.maximum(seed_part, t_upper(tail, (seeds - 1) * (prompts - 1)) ** 2 * v_resid)
    return np.sqrt(seed_part + t_upper(tail, prompts - 1) ** 2 * v_prompt)


def variance_parts(ms: dict) -> tuple:
    """(V_S, V_P, V_E) of the mean from `mean_squares`' output."""
    n = ms["seeds"] * ms["prompts"]
    if ms["prompts"] == 1:
        return ms["ms_seed"] / n, 0.0, 0.0
    return ms["ms_seed"] / n, np.maximum(ms["ms_prompt"] - ms["ms_resid"], 0) / n, ms["ms_resid"] / n


def crossed_interval(d, alphas: tuple[float, ...] = (ALPHA,)):
    """Mean of d[..., S, P] and one (low, high) per alpha; the interval of this module's docstring. Where the
    half-width is 0 (no variation at all), (nan, nan): no interval."""
    ms = mean_squares(d)
    parts = variance_parts(ms)
    out = []
    for a in alphas:
        half = half_width(*parts, ms["seeds"], ms["prompts"], a / 2)
        half = np.where(half > 0, half, np.nan)
        out.append((ms["mean"] - half, ms["mean"] + half))
    return ms["mean"], out, ms


def p_value(ms: dict, tol: float = 1e-10) -> np.ndarray:
    """The alpha at which the interval of `mean_squares` output `ms` touches 0 (two-sided); 1 where there is no
    interval. Found by bisection on log alpha, the half-width being monotone in it."""
    mean = np.abs(np.asarray(ms["mean"], dtype=float))
    parts = variance_parts(ms)
    lo, hi = np.full(mean.shape, math.log(1e-20)), np.zeros(mean.shape)  # log alpha; p below 1e-20 reads 1e-20
    for _ in range(80):
        mid = (lo + hi) / 2
        excluded = half_width(*parts, ms["seeds"], ms["prompts"], np.exp(mid) / 2) < mean  # then p <= exp(mid)
        lo, hi = np.where(excluded, lo, mid), np.where(excluded, mid, hi)
        if np.all(hi - lo < tol):
            break
    zero = half_width(*parts, ms["seeds"], ms["prompts"], 0.25)
    return np.where(np.isfinite(zero) & (zero > 0), np.exp(hi), 1.0)


@lru_cache(maxsize=64)
def _chi2_nodes(df: int, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Laguerre-style quadrature of chi2(df) / df: (points, weights)."""
    from scipy.special import roots_genlaguerre

    x, w = roots_genlaguerre(n, df / 2 - 1)  # weight x^(df/2 - 1) e^-x: chi2(df) / 2 after scaling
    return 2 * x / df, w / w.sum()


def expected_parts(components: dict, seeds: int, prompts: int) -> dict:
    """E[MS_S], V_P and V_E of a design with `seeds` units x `prompts` prompts under the estimated components."""
    if components["prompts"] == 1:  # run-level: only the spread of seed units
        return {"ms_seed": components["seed"], "v_prompt": 0.0, "v_resid": 0.0, "prompts": 1}
    return {
        "ms_seed": prompts * components["seed"] + components["resid"],
        "v_prompt": components["prompt"] / prompts,
        "v_resid": components["resid"] / (seeds * prompts),
        "prompts": prompts,
    }


def projected(components: dict, seeds: int, prompts: int) -> tuple[float, float]:
    """(V_S, V_P) of a design with `seeds` units x `prompts` prompts under the estimated components."""
    e = expected_parts(components, seeds, prompts)
    return e["ms_seed"] / (seeds * e["prompts"]), e["v_prompt"]


def power(effect: float, components: dict, seeds: int, prompts: int | None = None, alpha: float = ALPHA) -> float:
    """The chance that the interval at `alpha` excludes 0 when the true difference is `effect`, for `seeds` units x
    `prompts` prompts (default: the estimate's own), under the estimated components."""
    from scipy.special import ndtr

    p = prompts or components["prompts"]
    e = expected_parts(components, seeds, p)
    n = seeds * e["prompts"]
    sd = math.sqrt(e["ms_seed"] / n + e["v_prompt"])
    if sd == 0:
        return 1.0 if effect else 0.0
    x, w = _chi2_nodes(seeds - 1)
    half = half_width(e["ms_seed"] * x / n, e["v_prompt"], e["v_resid"], seeds, e["prompts"], alpha / 2)
    return float(np.sum(w * (ndtr((effect - half) / sd) + ndtr((-effect - half) / sd))))


def detectable(components: dict, comparisons: int, seeds: int | None = None, prompts: int | None = None) -> float:
    """The smallest difference a design finds with 80 % power at alpha / comparisons (two-sided), by `power`."""
    s, p = seeds or components["seeds"], prompts or components["prompts"]
    alpha = ALPHA / comparisons
    high = 1.0
    while power(high, components, s, p, alpha) < POWER:
        high *= 2
        if high > 1e12:
            return math.inf
    low = 0.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if power(mid, components, s, p, alpha) < POWER else (low, mid)
        if high - low < 1e-7 * high:
            break
    return high


def prompts_needed(components: dict, target: float, comparisons: int, seeds: int, most: int = 10**6) -> int | None:
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


def arm_interval(values: list[float], records: list[dict | None]) -> dict:
    """An arm's own level (one strategy at one setting) over its seeds and the shared prompts: the crossed model
    on its seeds x prompts matrix when every run has per-prompt records (an arm's win rate varies with the
    prompts drawn as much as with the seeds), else the t-interval over its seeds' values."""
    shared = sorted(set.intersection(*(set(r) for r in records))) if records and all(records) else []
    if len(values) >= 2 and len(shared) > 1:
        take = itemgetter(*shared)
        mean, [(low, high)], _ = crossed_interval(np.array([take(r) for r in records], dtype=float))
        return {"mean": float(mean), "ci": [float(low), float(high)], "method": METHOD[True], "prompts": len(shared)}
    mean, low, high = t_interval(values)
    return {"mean": mean, "ci": [low, high], "method": METHOD[False]}


def components(m) -> dict:
    """The variance components (seed, prompt, resid) and the design (seeds, prompts) of `mean_squares` output or
    anything carrying the same keys (a sequential look's pair_stats), as `detectable` and `power` take them."""
    return {k: float(m[k]) for k in ("seed", "prompt", "resid")} | {
        "seeds": int(m["seeds"]),
        "prompts": int(m["prompts"]),
    }


def difference(unit_rows, comparisons: int, per_prompt: bool) -> dict:
    """One row's statistics from its seed units x prompts matrix (one column when run-level): its 95 % interval,
    p-value and detectable difference at alpha / comparisons. `holm` adds the adjusted interval and verdict."""
    d = np.asarray(unit_rows, dtype=float)
    s, p = d.shape
    row = {"method": METHOD[per_prompt], "seeds": s, "mean": float(d.mean())}
    if per_prompt:
        row["prompts"] = p
    empty = {
        "ci": [None, None],
        "adjusted_ci": [None, None],
        "p_value": None,
        "mde": None,
        "effect_size": None,
        "df": {"seed": max(s - 1, 0), "prompt": p - 1},
        "variance": None,
        "excludes_zero": False,
    }
    if s < 2:  # no seed spread to measure: no interval, no verdict
        return {**row, **empty, "no_interval": "one seed unit"}
    _, [ci], ms = crossed_interval(d)
    parts = components(ms)
    if not np.isfinite(ci[0]):  # every value equal: no variation to measure, so no interval
        return {**row, **empty, "variance": parts, "no_interval": "no variation: every seed unit and prompt agree"}
    total = parts["seed"] + parts["prompt"] + parts["resid"]
    return {
        **row,
        **empty,
        "ci": [float(x) for x in ci],
        "p_value": float(p_value(ms)),
        "df": {"seed": s - 1, "prompt": p - 1},
        "variance": parts,
        "mde": detectable(parts, comparisons),
        "effect_size": row["mean"] / math.sqrt(total) if total > 0 else None,
        "matrix": d,
    }


def holm(rows: list[dict], alpha: float = ALPHA) -> None:
    """Holm's step-down procedure over `rows` (each with a p-value or None), in place: `excludes_zero` (the
    verdict), `adjusted_alpha` and `adjusted_ci` at that alpha. A row without an interval is never rejected."""
    for r, (rejected, level) in zip(rows, holm_steps([r["p_value"] for r in rows], alpha)):
        r["adjusted_alpha"], r["excludes_zero"] = level, rejected
    for r in rows:
        matrix = r.pop("matrix", None)
        if matrix is not None:
            _, [adjusted], _ = crossed_interval(matrix, (r["adjusted_alpha"],))
            r["adjusted_ci"] = [float(x) for x in adjusted]


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
    return np.array(
        [
            [statistics.fmean(cells[(b, c)]["value"] - cells[(a, c)]["value"] for c in members)]
            for members in units.values()
        ]
    ), False


def row_plans(cells: dict, others: list[str]) -> tuple[list[tuple], list[int]]:
    """The rows of a comparison: (a, b, scope, pooled, contexts) for every pair of strategies in `cells`, pooled
    over the other keys and per value of each, within each value of the keys that change the world or the judge
    (never pooled); and the positions of the seed keys in a context."""
    seed_at = [i for i, k in enumerate(others) if k in SEED_KEYS]
    apart = [i for i, k in enumerate(others) if never_pooled(k)]
    scoped = [i for i, k in enumerate(others) if i not in seed_at and i not in apart]
    strategies = sorted({s for s, _ in cells})
    strata = sorted({tuple(ctx[i] for i in apart) for _, ctx in cells}, key=str)
    plans = []
    for a, b in combinations(strategies, 2):
        for values in strata:
            inside = [
                ctx for s, ctx in cells if s == a and (b, ctx) in cells and tuple(ctx[i] for i in apart) == values
            ]
            pooled_scope = stratum({others[i]: v for i, v in zip(apart, values)}, others)
            label = [] if pooled_scope == "all" else [pooled_scope]
            scopes = [(pooled_scope, True, inside)]
            for i in scoped:
                for v in sorted({ctx[i] for ctx in inside}, key=str):
                    scopes.append((", ".join(label + [f"{others[i]}={v}"]), False, [c for c in inside if c[i] == v]))
            plans += [(a, b, scope, pooled, ctxs) for scope, pooled, ctxs in scopes if ctxs]
    return plans, seed_at


def compare(cells: dict, others: list[str]) -> list[dict]:
    """Every row of `row_plans` for `cells` ({(strategy, context): {"value", "prompts"}}, a context being the
    values of `others`) with its statistics; Holm over the pooled rows."""
    plans, seed_at = row_plans(cells, others)
    m = max(sum(pooled for *_, pooled, _ in plans), 1)  # the family: rows that can give a verdict
    rows = []
    for a, b, scope, pooled, contexts in plans:
        matrix, per_prompt = _unit_matrix(a, b, contexts, cells, seed_at)
        rows.append(
            {
                "a": a,
                "b": b,
                "scope": scope,
                "pooled": pooled,
                "n": len(contexts),
                **difference(matrix, m, per_prompt),
                "comparisons": m,
            }
        )
    holm([r for r in rows if r["pooled"]])
    for r in rows:  # a scope row describes where a pooled difference lives; it claims nothing itself
        r.pop("matrix", None)
    return rows


def sweep_cells(runs: list[dict], metric: str, keys: list[str]) -> tuple[dict, list[str]]:
    """A sweep's finished runs as `compare`'s cells, and the swept keys other than the strategy."""
    others = [k for k in keys if k != STRATEGY_KEY]
    cells = {}
    for r in runs:
        if has(r, metric):
            cells[(r["overrides"][STRATEGY_KEY], tuple(r["overrides"].get(k) for k in others))] = {
                "value": r["metrics"][metric],
                "prompts": per_prompt_outcomes(r["dir"], metric),
            }
    return cells, others


def paired_differences(runs: list[dict], metric: str, keys: list[str]) -> list[dict]:
    """The rows of `compare` for a sweep's finished runs, read from their run dirs."""
    if STRATEGY_KEY not in keys:
        return []
    return compare(*sweep_cells(runs, metric, keys))


def pooled_matrices(runs: list[dict], metric: str, keys: list[str]) -> list[dict]:
    """The pooled rows' seed units x prompts matrices of B - A (what a sequential look decides on), read from the
    sweep's run dirs by the same rules as the report's rows."""
    if STRATEGY_KEY not in keys:
        return []
    cells, others = sweep_cells(runs, metric, keys)
    plans, seed_at = row_plans(cells, others)
    out = []
    for a, b, scope, pooled, contexts in plans:
        if pooled:
            matrix, per_prompt = _unit_matrix(a, b, contexts, cells, seed_at)
            out.append({"a": a, "b": b, "scope": scope, "n": len(contexts), "matrix": matrix, "per_prompt": per_prompt})
    return out


def verdicts(diffs: list[dict], metric: str) -> list[str]:
    lines = []
    for d in diffs:
        if not d["pooled"] or not d["excludes_zero"]:
            continue
        winner, loser = (d["b"], d["a"]) if d["mean"] > 0 else (d["a"], d["b"])
        lo, hi = sorted(abs(x) for x in d["adjusted_ci"])
        where = "" if d["scope"] == "all" else f" at {d['scope']}"
        size = f", effect size {abs(d['effect_size']):.2f}" if d.get("effect_size") is not None else ""
        lines.append(
            f"**{winner}** beats **{loser}** on `{metric}`{where} by {abs(d['mean']):.4f} "
            f"(Holm-adjusted CI {lo:.4f} to {hi:.4f}, p {d['p_value']:.2g}, {unit(d)}{size})"
        )
    return lines


def unit(d: dict) -> str:
    """ "3 seeds (6 paired runs) x 300 prompts": what a row's interval rests on."""
    runs = f" ({d['n']} paired runs)" if d["n"] != d["seeds"] else ""
    return f"{d['seeds']} seed{'s' if d['seeds'] != 1 else ''}{runs}" + (
        f" x {d['prompts']} prompts" if "prompts" in d else ""
    )


def design_line(diffs: list[dict]) -> str | None:
    """What the pooled rows' design supports: its detectable difference, or that it needs more seeds."""
    pooled = [d for d in diffs if d["pooled"]]
    if not pooled:
        return None
    if any(d["seeds"] < 2 for d in pooled):
        return (
            "A verdict needs at least 2 seeds: with one, seed noise cannot be measured and no interval is "
            "given (sweep train.seed)."
        )
    measured = [d for d in pooled if d["mde"] is not None]
    if not measured:
        return "No pooled row has an interval: " + "; ".join(sorted({d["no_interval"] for d in pooled})) + "."
    worst = max(measured, key=lambda d: d["mde"])
    line = (
        f"With {unit(worst)} this sweep detects differences >= {worst['mde']:.4f} in the metric (80 % power, "
        f"alpha 0.05 / {worst['comparisons']}: Holm's first step over the {worst['comparisons']} pooled rows; "
        "the largest of them). "
        f"Seed noise has {worst['seeds'] - 1} degree{'s' if worst['seeds'] != 2 else ''} of freedom"
    )
    undecided = [d for d in pooled if not d["excludes_zero"]]
    if worst["seeds"] <= 3 and undecided:
        line += (
            ": the intervals are wide, and a verdict between close strategies needs more seeds "
            "(`--target-effect D` gives seeds x prompts)"
        )
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
