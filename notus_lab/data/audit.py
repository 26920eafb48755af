"""The audit a researcher reads before spending GPU hours: signal-level facts about raw rows, how far
each signal agrees with the truth (in the bundled world), summary.md and a score histogram PNG.

The annotation statistics are the ones docs/data.md ("The bundled world") gives for real UltraFeedback rows, so the same
numbers can be compared between a real file and the bundled world (`python -m notus_lab.binarize`).
"""

from __future__ import annotations

import statistics
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Iterable, Optional

from notus_lab.config.schema import ASPECTS, DataConfig
from notus_lab.data.signals import (
    aspect_rating,
    critique_score,
    is_bug_signature,
    mean_of,
)

COMPARED_SIGNALS = ("critique", "mean_rating") + ASPECTS  # for the "chosen differs" matrix


def _top_tied(scores: list) -> bool:
    top = sorted(scores, reverse=True)
    return len(top) > 1 and top[0] == top[1]


def _correlation(xs: list, ys: list) -> Optional[float]:
    try:
        return round(statistics.correlation(xs, ys), 4)
    except (statistics.StatisticsError, ValueError):  # fewer than 2 points, or a constant
        return None


def audit(rows: list, d: DataConfig, indices: Iterable[int], points: Optional[list] = None) -> dict:
    """Signal-level facts about the raw rows as stored, whatever strategy trains on them.

    Each completion is parsed once; `points` (if given) collects (mean rating, critique) for the plot.
    """
    na = Counter()
    bugs = 0
    chosen_by_signal = {s: {} for s in COMPARED_SIGNALS}
    pairs_for_corr, aspect_columns = [], {a: [] for a in ASPECTS}  # completions with every value numeric
    top_tied, complete_rows, half_points, critiques = Counter(), 0, 0, 0
    for i in indices:
        row = rows[i]
        if not isinstance(row, dict) or not isinstance(row.get("completions"), list):
            continue
        comps = row["completions"]
        per_signal = {s: [] for s in COMPARED_SIGNALS}
        for c in comps:
            if not isinstance(c, dict):
                for s in COMPARED_SIGNALS:
                    per_signal[s].append(None)
                continue
            ratings = [aspect_rating(c, a) for a in ASPECTS]
            mean, _ = mean_of(ratings)
            critique, _ = critique_score(c)
            for a, r in zip(ASPECTS, ratings):
                na[a] += r == "N/A"
                per_signal[a].append(r if r != "N/A" else None)
            per_signal["mean_rating"].append(mean)
            per_signal["critique"].append(critique)
            bugs += is_bug_signature(critique, mean, d.curate_threshold)
            if critique is not None:
                critiques += 1
                half_points += critique % 1 == 0.5
            if mean is not None and critique is not None:
                pairs_for_corr.append((critique, mean))
                if points is not None:
                    points.append((mean, critique))
            if all(isinstance(r, float) for r in ratings):
                for a, r in zip(ASPECTS, ratings):
                    aspect_columns[a].append(r)
        if len(comps) < 2:
            continue
        for signal, scores in per_signal.items():
            if None not in scores:
                chosen_by_signal[signal][i] = max(range(len(scores)), key=lambda k: (scores[k], -k))
        if None not in per_signal["critique"] and None not in per_signal["mean_rating"]:
            complete_rows += 1
            top_tied["critique"] += _top_tied(per_signal["critique"])
            top_tied["mean_rating"] += _top_tied(per_signal["mean_rating"])
    differs = {}
    for a, b in combinations(COMPARED_SIGNALS, 2):
        both = chosen_by_signal[a].keys() & chosen_by_signal[b].keys()
        if both:
            differs[f"{a}~{b}"] = round(
                sum(chosen_by_signal[a][i] != chosen_by_signal[b][i] for i in both) / len(both), 4
            )
    aspect_corr = [
        c for a, b in combinations(ASPECTS, 2) if (c := _correlation(aspect_columns[a], aspect_columns[b])) is not None
    ]
    return {
        "na_ratings": dict(na),
        "bug_signature_completions": bugs,
        "chosen_differs": differs,
        "chosen_differs_critique_vs_mean_rating": differs.get("critique~mean_rating"),
        # the statistics of docs/data.md, "The bundled world", comparable between a real file and the world
        "annotation": {
            "critique_vs_mean_rating_correlation": _correlation(*zip(*pairs_for_corr)) if pairs_for_corr else None,
            "top_critique_tied": round(top_tied["critique"] / complete_rows, 4) if complete_rows else None,
            "top_mean_rating_tied": round(top_tied["mean_rating"] / complete_rows, 4) if complete_rows else None,
            "aspect_correlation": round(statistics.fmean(aspect_corr), 4) if aspect_corr else None,
            "critique_half_points": round(half_points / critiques, 4) if critiques else None,
        },
    }


def _quality(rows: list, i: int, k: int):
    c = rows[i]["completions"][k]
    return c.get("true_quality") if isinstance(c, dict) else None


def has_truth(rows: list) -> bool:
    first = next(
        (r for r in rows if isinstance(r, dict) and isinstance(r.get("completions"), list) and r["completions"]), None
    )
    return (
        first is not None
        and isinstance(first["completions"][0], dict)
        and isinstance(first["completions"][0].get("true_quality"), (int, float))
    )


def truth_pairs(rows: list, indices: Iterable[int]) -> list[dict]:
    """Held-out pairs labelled by the world's true quality: every pair whose qualities differ."""
    pairs = []
    for i in indices:
        comps = rows[i].get("completions", []) if isinstance(rows[i], dict) else []
        q = [c.get("true_quality") if isinstance(c, dict) else None for c in comps]
        valid = [k for k, v in enumerate(q) if isinstance(v, (int, float))]
        for a, b in combinations(valid, 2):
            if q[a] != q[b]:
                hi, lo = (a, b) if q[a] > q[b] else (b, a)
                pairs.append(
                    {
                        "prompt": rows[i]["instruction"],
                        "chosen": comps[hi]["response"],
                        "rejected": comps[lo]["response"],
                        "score_chosen": q[hi],
                        "score_rejected": q[lo],
                        "row_index": i,
                    }
                )
    return pairs


def truth_agreement(rows: list, pairs: list[dict]) -> dict:
    """How often a signal's pairs prefer the truly better completion (equal truth counts half)."""
    agree = n = 0.0
    for p in pairs:
        chosen, rejected = (
            _quality(rows, p["row_index"], p["chosen_index"]),
            _quality(rows, p["row_index"], p["rejected_index"]),
        )
        if isinstance(chosen, (int, float)) and isinstance(rejected, (int, float)):
            n += 1
            agree += 1.0 if chosen > rejected else 0.5 if chosen == rejected else 0.0
    return {"pairs": int(n), "agreement": round(agree / n, 4) if n else None}


def write_summary(report: dict, points: list, d, out: Path) -> None:
    lines = [
        f"# Data audit: {report['strategy']} on {d.source}",
        "",
        f"- rows in: {report['rows_in']} (+{report['held_out']['rows_in']} held out)",
        f"- pairs out: {report['pairs_out']} (tie pairs: {report.get('tie_pairs', 0)})",
        f"- rows dropped: {report['rows_dropped'] or 'none'}",
        f"- completions dropped: {report.get('completions_dropped') or 'none'}",
        f"- unreadable lines: {report.get('rows_unreadable') or 'none'}",
    ]
    if "na_ratings" in report:
        lines += [
            f"- N/A ratings per aspect: {report['na_ratings']}",
            f"- bug-signature completions (overall_score 10, mean rating <= {d.curate_threshold}): "
            f"{report['bug_signature_completions']}",
            "",
            "## Fraction of prompts whose chosen completion differs",
            "",
            "| signals | differs |",
            "|---|---|",
        ]
        lines += [f"| {k.replace('~', ' vs ')} | {v:.1%} |" for k, v in report["chosen_differs"].items()]
        lines += ["", "## Annotation statistics (compare docs/data.md: The bundled world)", ""]
        lines += ["| statistic | value |", "|---|---|"]
        lines += [f"| {k} | {'n/a' if v is None else f'{v:.3f}'} |" for k, v in report["annotation"].items()]
    if report.get("truth_agreement"):
        lines += ["", "## Agreement with the truth (bundled world)", "", "| pairs | n | agreement |", "|---|---|---|"]
        lines += [f"| {k} | {v['pairs']} | {v['agreement']} |" for k, v in report["truth_agreement"].items()]
    if report.get("per_source"):
        lines += ["", "## Per source", "", "| source | rows in | pairs out |", "|---|---|---|"]
        lines += [f"| {s} | {c['rows_in']} | {c['pairs_out']} |" for s, c in report["per_source"].items()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    if "na_ratings" in report:
        plot_scores(points, out / "scores.png")


def plot_scores(points: list, path: Path) -> None:
    """2-D histogram of critique overall_score vs mean aspect rating: the 10-score bug is the top-left blob."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    if points:
        xs, ys = zip(*points)
        h = ax.hist2d(xs, ys, bins=[16, 19], range=[[1, 5], [1, 10]], cmap="viridis", cmin=1)
        fig.colorbar(h[3], ax=ax, label="completions")
    ax.set_xlabel("mean aspect rating (N/A skipped)")
    ax.set_ylabel("critique overall_score")
    ax.set_title(f"{len(points)} completions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
