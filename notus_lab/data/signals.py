"""How each binarization scores one completion: the four aspect ratings, their mean (Notus), the critique
`overall_score` (Zephyr) as stored or with upstream's fix, and the critique bug's signature.

Each score is `(value, None)` or `(None, reason)`: the data stage counts every reason it drops.
"""

from __future__ import annotations

import math
from typing import Optional

from notus_lab.config.schema import ASPECTS, DataConfig


def number(x) -> Optional[float]:
    """A finite number from a rating or score as UltraFeedback stores it ("4", 4, 4.0); else None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        v = float(x)
    elif isinstance(x, str):
        try:
            v = float(x.strip())
        except ValueError:
            return None
    else:
        return None
    return v if math.isfinite(v) else None


def aspect_rating(completion: dict, aspect: str):
    """The rating as a float, "N/A", or None when malformed."""
    ann = completion.get("annotations")
    node = ann.get(aspect) if isinstance(ann, dict) else None
    raw = node.get("Rating") if isinstance(node, dict) else None
    if isinstance(raw, str) and raw.strip().upper() == "N/A":
        return "N/A"
    v = number(raw)
    return v if v is not None and 1 <= v <= 5 else None


def mean_of(ratings: list):
    """Notus's rule on parsed ratings: mean with N/A skipped; any malformed one spoils it."""
    if None in ratings:
        return None, "malformed_rating"
    vals = [r for r in ratings if r != "N/A"]
    return (sum(vals) / len(vals), None) if vals else (None, "no_ratings")


def mean_rating(completion: dict):
    """Notus: mean of the four aspect ratings, N/A skipped. (score, None) or (None, reason)."""
    return mean_of([aspect_rating(completion, a) for a in ASPECTS])


def critique_score(completion: dict):
    v = number(completion.get("overall_score"))
    return (v, None) if v is not None and 1 <= v <= 10 else (None, "malformed_score")


def is_bug_signature(critique, mean, threshold: float) -> bool:
    """UltraFeedback's critique bug: overall_score 10 while the aspect ratings say it is bad."""
    return critique == 10 and mean is not None and mean <= threshold


def bug_signature(completion: dict, threshold: float) -> bool:
    return is_bug_signature(critique_score(completion)[0], mean_rating(completion)[0], threshold)


def signal_score(completion: dict, d: DataConfig, signal: str):
    """(score, None) or (None, reason) for one completion under one signal."""
    if signal == "critique":
        score, why = critique_score(completion)
        if why or d.vintage == "as_is" or score != 10:
            return score, why
        # upstream's 2023-12-29 fix: fine-grained mean <= 2 -> 1; > 4 -> keep 10; else re-annotated
        fine = number(completion.get("fine-grained_score"))
        if fine is None:
            fine, _ = mean_rating(completion)
        if fine is None:
            return None, "needs_reannotation"
        return (1.0, None) if fine <= 2 else (10.0, None) if fine > 4 else (None, "needs_reannotation")
    if signal == "mean_rating":
        return mean_rating(completion)
    aspect = d.aspect if signal == "aspect" else signal
    r = aspect_rating(completion, aspect)
    return (None, "malformed_rating") if r is None else (None, "no_ratings") if r == "N/A" else (r, None)
