"""The audit a researcher reads before spending GPU hours: summary.md and a score histogram PNG."""

from __future__ import annotations

from pathlib import Path


def write_summary(report: dict, points: list, d, out: Path) -> None:
    lines = [f"# Data audit: {report['strategy']} on {d.source}", "",
             f"- rows in: {report['rows_in']} (+{report['held_out']['rows_in']} held out)",
             f"- pairs out: {report['pairs_out']} (tie pairs: {report.get('tie_pairs', 0)})",
             f"- rows dropped: {report['rows_dropped'] or 'none'}",
             f"- completions dropped: {report.get('completions_dropped') or 'none'}",
             f"- unreadable lines: {report.get('rows_unreadable') or 'none'}"]
    if "na_ratings" in report:
        lines += [f"- N/A ratings per aspect: {report['na_ratings']}",
                  f"- bug-signature completions (overall_score 10, mean rating <= {d.curate_threshold}): "
                  f"{report['bug_signature_completions']}", "",
                  "## Fraction of prompts whose chosen completion differs", "", "| signals | differs |", "|---|---|"]
        lines += [f"| {k.replace('~', ' vs ')} | {v:.1%} |" for k, v in report["chosen_differs"].items()]
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
