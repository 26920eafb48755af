"""The report's figures: the forest plot of paired differences (what researchers read), the metric per arm
with one dot per seed, and held-out curves over training steps per strategy."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from notus_lab.core.intervals import t_interval
from notus_lab.study.runs import STRATEGY_KEY


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def arms(rows: list[dict], arm_keys: list[str], metric: str, path: Path, own: bool) -> None:
    """Each arm's mean with its 95 % interval, and every seed as a dot beside it. `own`: `metric` is the one the
    rows were built for, with the arm interval of notus_lab/study/stats.py (seeds x shared prompts where the
    metric has per-prompt records); else (a diagnostic such as the margins) the t-interval over seeds."""
    plt = _pyplot()

    def others(row):  # the arm's swept keys other than the strategy: one x position per combination
        return tuple((k, row["arm"][k]) for k in arm_keys if k != STRATEGY_KEY)

    strategies = sorted({r["arm"].get(STRATEGY_KEY) for r in rows}, key=str)
    groups = sorted({others(r) for r in rows}, key=str)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(groups) * max(1, len(strategies))), 3.6))
    width = 0.8 / max(1, len(strategies))
    for i, s in enumerate(strategies):
        xs, ys, errs, dots = [], [], [], []
        for r in rows:
            vals = [m["metrics"][metric] for m in r["members"] if metric in m["metrics"]]
            if r["arm"].get(STRATEGY_KEY) != s or not vals:
                continue
            lo, hi = r["ci"] if own else t_interval(vals)[1:]
            x = groups.index(others(r)) + (i - (len(strategies) - 1) / 2) * width
            xs.append(x)
            ys.append(r["mean"] if own else statistics.fmean(vals))
            errs.append(0 if math.isnan(lo) else (hi - lo) / 2)
            dots += [(x + width * 0.25, v) for v in vals]
        bars = ax.errorbar(xs, ys, yerr=errs, fmt="o", capsize=4, label=str(s))  # points: no bar hides a small gap
        if dots:
            ax.scatter(*zip(*dots), s=12, alpha=0.5, color=bars[0].get_color())
    ax.set_xticks(range(len(groups)), [", ".join(f"{k}={v}" for k, v in g) or "all" for g in groups])
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    where = "over seeds x shared prompts" if own and rows and rows[0].get("prompts") else "over seeds"
    ax.set_title(f"{metric}\nmean and 95 % CI {where}; small dots: one per seed", fontsize=9)
    _save(fig, path)


def forest(diffs: list[dict], metric: str, path: Path, sequential: bool = False) -> None:
    """One row per paired difference (B - A, scope): the estimate, its 95 % CI (thick) and, for the pooled rows
    that can give a verdict, its Holm-adjusted CI (thin); a row with a verdict is drawn solid. In a `sequential`
    study these are the fixed-design view, whose verdicts are not the study's: no row is drawn as one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(diffs) + 1.2))
    for y, d in enumerate(reversed(diffs)):
        decided = d["excludes_zero"] and not sequential
        color = "tab:blue" if decided else "tab:gray"
        if d["adjusted_ci"][0] is not None:  # in the decision family: its Holm-adjusted interval
            ax.plot(d["adjusted_ci"], [y, y], color=color, lw=1)
        if d["ci"][0] is not None:  # one seed, or no variation: no interval, the estimate alone
            ax.plot(d["ci"], [y, y], color=color, lw=4, alpha=0.6)
        ax.plot([d["mean"]], [y], "o", color=color, mfc=color if decided else "white")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(diffs)), [f"{d['b']} − {d['a']} ({d['scope']})" for d in reversed(diffs)], fontsize=8)
    ax.set_xlabel(f"difference in {metric}")
    ax.xaxis.set_major_locator(plt.MaxNLocator(6))  # readable ticks whatever the range
    # two lines: at the figure's width one line was cut off
    ax.set_title(
        "paired differences: 95 % CI (thick)\nHolm-adjusted for the pooled rows (thin)"
        + ("\nthe fixed-design view: the study's decisions are report.md's Rounds" if sequential else ""),
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def effects(rows: list[dict], metric: str, path: Path) -> None:
    """One row per factorial effect: its estimate, 95 % CI (thick) and Bonferroni-adjusted CI (thin)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    for y, r in enumerate(reversed(rows)):
        color = "tab:blue" if r["decided"] else "tab:gray"
        ax.plot(r["adjusted_ci"], [y, y], color=color, lw=1)
        ax.plot(r["ci"], [y, y], color=color, lw=4, alpha=0.6)
        ax.plot([r["mean"]], [y], "o", color=color, mfc=color if r["decided"] else "white")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(
        range(len(rows)),
        # an interaction's contrast names four cells: report.md's table spells them; the axis keeps it legible
        [_effect_label(r, rows) for r in reversed(rows)],
        fontsize=7,
    )
    ax.set_xlabel(f"effect on {metric}")
    ax.set_title("factorial effects: 95 % CI (thick)\nBonferroni-adjusted over the effects (thin)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def _effect_label(r: dict, rows: list[dict]) -> str:
    """A main effect reads "factor: high − low"; an interaction by its factors, and by its contrast only where the
    factors have more than 2 levels (several rows share the factors)."""
    if " x " not in r["factor"]:
        return f"{r['factor']}: {r['contrast'][1]} − {r['contrast'][0]}"
    if sum(q["factor"] == r["factor"] for q in rows) == 1:
        return r["factor"]
    return f"{r['factor']}: {r['contrast'][1].split(' at ')[0]} by {r['contrast'][1].split(' at ')[1]}"


def curves(runs: list[dict], signal: str, path: Path) -> bool:
    """Held-out reward accuracy under `signal` over training steps, one line per run, coloured by strategy.
    False when no run logged more than one evaluation (train.eval_steps was off)."""
    series = []
    for r in runs:
        points = r.get("eval_history", {}).get(signal) or []
        if len(points) > 1:
            series.append((str(r["overrides"].get(STRATEGY_KEY)), points))
    if not series:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    colors = {s: f"C{i}" for i, s in enumerate(sorted({s for s, _ in series}))}
    for strategy, points in series:
        ax.plot(*zip(*points), color=colors[strategy], alpha=0.25, lw=1)
    by_step = {s: {} for s in colors}  # each strategy's values at each step it was evaluated
    for strategy, points in series:
        for step, value in points:
            by_step[strategy].setdefault(step, []).append(value)
    for strategy, color in colors.items():  # the strategy's mean
        steps = sorted(by_step[strategy])
        ax.plot(
            steps,
            [statistics.fmean(by_step[strategy][x]) for x in steps],
            color=color,
            lw=2.5,
            marker="o",
            label=strategy,
        )
    ax.set_xlabel("step")
    ax.set_ylabel(f"eval {signal} rewards/accuracies")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("held-out curves: thin, one line per run; thick, the strategy's mean", fontsize=9)
    _save(fig, path)
    return True


def draw(s, out_dir: Path) -> list[str]:
    """forest.png (paired differences), arms.png and margins.png (per arm), curves.png (eval curves)."""
    rows, metric, plots = s.rows, s.metric, []
    if s.diffs:
        forest(s.diffs, metric, out_dir / "forest.png", sequential=bool(s.rounds and s.rounds["rounds"]))
        plots.append("forest.png")
    if s.effects and s.effects["rows"]:
        effects(s.effects["rows"], metric, out_dir / "effects.png")
        plots.append("effects.png")
    if rows:
        arms(rows, s.arm_keys, metric, out_dir / "arms.png", own=True)
        plots.append("arms.png")
        margin = next(
            (
                k
                for k in ("eval/truth/rewards/margins", metric.replace("accuracies", "margins"))
                if k != metric and all(k in m["metrics"] for r in rows for m in r["members"])
            ),
            None,
        )
        if margin:
            arms(rows, s.arm_keys, margin, out_dir / "margins.png", own=False)
            plots.append("margins.png")
    curve_signal = "truth" if "truth" in s.signals else next(iter(s.signals), None)
    if curve_signal and curves(s.finished, curve_signal, out_dir / "curves.png"):
        plots.append("curves.png")
    return plots
