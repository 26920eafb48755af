"""Student-t intervals, the one home of the t quantile every stage uses (the study's crossed intervals,
the sequential rule's levels, a run's per-prompt comparisons such as its GGUF files')."""

from __future__ import annotations

import math
import statistics

import numpy as np


def t_upper(tail, df) -> np.ndarray:
    """Student-t quantile with upper-tail probability `tail` (exact for tails far below 1e-16, where 1 - tail is
    1.0 in floating point); scipy.stats.t.isf without its per-call overhead."""
    from scipy.special import stdtrit

    return -stdtrit(np.maximum(df, 1), tail)


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean; (mean, nan, nan) for fewer than 2 values or none
    that differ (a zero-width interval would claim certainty the data cannot give)."""
    m = statistics.fmean(values)
    if len(values) < 2 or statistics.stdev(values) == 0:
        return m, math.nan, math.nan
    half = float(t_upper((1 - confidence) / 2, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def t_p_value(values: list[float], null: float = 0.0) -> float | None:
    """Two-sided p-value of the one-sample t test of mean(values) = null; None where `t_interval` gives no
    interval (fewer than 2 values, or none that differ)."""
    from scipy.special import stdtr

    if len(values) < 2 or statistics.stdev(values) == 0:
        return None
    t = (statistics.fmean(values) - null) / (statistics.stdev(values) / math.sqrt(len(values)))
    return float(2 * stdtr(len(values) - 1, -abs(t)))


def holm_steps(p_values: list[float | None], alpha: float) -> list[tuple[bool, float]]:
    """Holm's step-down procedure (Holm 1979, Scand. J. Statist. 6): per p-value, (rejected, the level it was
    judged at). Rejected ones are judged at their own step's level. Every other one is judged at the level of the
    first step that failed. A None (no interval) is never rejected. The family-wise error stays at alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (p_values[i] is None, p_values[i] or 1.0))
    out: list[tuple[bool, float]] = [(False, alpha)] * m
    failed_at = None
    for step, i in enumerate(order):
        level = alpha / (m - step)
        rejected = failed_at is None and p_values[i] is not None and p_values[i] <= level
        if not rejected and failed_at is None:
            failed_at = level
        out[i] = (rejected, level if rejected else failed_at)
    return out
