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
