"""Report stage: a sweep dir -> report.md, report.json and PNG plots, read from the run dirs alone.

    python -m notus_lab.report outputs/sweeps/critique_vs_rating [--metric truth_accuracy]

An arm is one setting of the swept keys other than the seed. Per arm: mean and 95 % t-interval over
seeds. Per pair of data strategies: differences paired by seed (and by every other swept key, e.g.
beta), with a t-interval; a verdict line is written only when that interval, widened for the number of
strategy comparisons (Bonferroni), excludes zero. Failed and unfinished arms are listed, never dropped.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import yaml

SEED_KEYS = ("train.seed", "seed")
STRATEGY_KEY = "data"


# ---------------------------------------------------------------------------------------------
# Reading a sweep


def _overrides(run_dir: Path) -> dict:
    """The command-line/sweep overrides of one job, from the record Hydra keeps in .hydra/."""
    path = run_dir / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(path.read_text()) if path.exists() else []
    return dict(o.lstrip("+~").split("=", 1) for o in items or [] if "=" in o)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def read_runs(sweep_dir: Path) -> list[dict]:
    """Every job dir of the sweep with its status: finished, failed (with the error) or unfinished."""
    runs = []
    for run_dir in sorted(p for p in sweep_dir.iterdir()
                          if (p / "config.yaml").is_file() or (p / ".hydra" / "config.yaml").is_file()):
        run = {"dir": run_dir, "name": run_dir.name, "overrides": _overrides(run_dir), "status": "unfinished"}
        if (run_dir / "metrics.json").exists():
            run["status"], run["metrics"] = "finished", flatten(json.loads((run_dir / "metrics.json").read_text()))
        elif (run_dir / "failed.json").exists():
            failed = json.loads((run_dir / "failed.json").read_text())
            run["status"], run["error"] = "failed", f"{failed.get('error')}: {failed.get('message', '')}"
        runs.append(run)
    return runs


def factors(runs: list[dict]) -> list[str]:
    """Swept keys: overrides whose value differs between jobs."""
    keys = sorted({k for r in runs for k in r["overrides"]})
    return [k for k in keys if len({r["overrides"].get(k) for r in runs}) > 1]


# ---------------------------------------------------------------------------------------------
# Statistics


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean; (mean, nan, nan) for fewer than 2 values."""
    from scipy import stats

    m = statistics.fmean(values)
    if len(values) < 2:
        return m, math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def arm_table(runs: list[dict], metric: str, arm_keys: list[str]) -> list[dict]:
    by_arm = defaultdict(list)
    for r in runs:
        if r["status"] == "finished" and metric in r["metrics"]:
            by_arm[tuple(r["overrides"].get(k) for k in arm_keys)].append(r)
    rows = []
    for arm, members in sorted(by_arm.items(), key=lambda kv: tuple(map(str, kv[0]))):
        mean, lo, hi = t_interval([m["metrics"][metric] for m in members])
        rows.append({"arm": dict(zip(arm_keys, arm)), "n": len(members), "mean": mean, "ci": [lo, hi],
                     "members": members})
    return rows


def paired_differences(runs: list[dict], metric: str, keys: list[str], comparisons: int) -> list[dict]:
    """For each pair of strategies: differences of `metric` between runs that share every other swept
    key (seed, beta, ...), pooled, and per value of each non-seed key."""
    if STRATEGY_KEY not in keys:
        return []
    others = [k for k in keys if k != STRATEGY_KEY]
    value = {}
    for r in runs:
        if r["status"] == "finished" and metric in r["metrics"]:
            value[(r["overrides"][STRATEGY_KEY], tuple(r["overrides"].get(k) for k in others))] = r["metrics"][metric]
    strategies = sorted({s for s, _ in value})
    scopes = [("all", lambda ctx: True)] + [
        (f"{k}={v}", lambda ctx, i=others.index(k), v=v: ctx[i] == v)
        for k in others if k not in SEED_KEYS for v in sorted({ctx[others.index(k)] for _, ctx in value}, key=str)]
    out = []
    for a, b in combinations(strategies, 2):
        for scope, keep in scopes:
            diffs = [value[(b, ctx)] - value[(a, ctx)] for s, ctx in value
                     if s == a and keep(ctx) and (b, ctx) in value]
            if not diffs:
                continue
            mean, lo, hi = t_interval(diffs)
            _, alo, ahi = t_interval(diffs, 1 - 0.05 / max(comparisons, 1))
            out.append({"a": a, "b": b, "scope": scope, "n": len(diffs), "mean": mean, "ci": [lo, hi],
                        "adjusted_ci": [alo, ahi], "excludes_zero": bool(alo > 0 or ahi < 0)})
    return out


def verdicts(diffs: list[dict], metric: str) -> list[str]:
    lines = []
    for d in diffs:
        if d["scope"] != "all" or not d["excludes_zero"]:
            continue
        winner, loser = (d["b"], d["a"]) if d["mean"] > 0 else (d["a"], d["b"])
        lo, hi = sorted(abs(x) for x in d["adjusted_ci"])
        lines.append(f"**{winner}** beats **{loser}** on `{metric}` by {abs(d['mean']):.4f} "
                     f"(adjusted 95 % CI {lo:.4f} to {hi:.4f}, {d['n']} paired runs)")
    return lines


# ---------------------------------------------------------------------------------------------
# Writing


def _fmt(mean: float, ci) -> str:
    if any(math.isnan(x) for x in ci):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {(ci[1] - ci[0]) / 2:.4f}"


def cross_eval_mean(row: dict, signal: str, key: str):
    """Mean over an arm's seeds of one held-out metric under one eval signal (None if no run has it)."""
    vals = [v for m in row["members"] if (v := m["metrics"].get(f"eval/{signal}/{key}")) is not None]
    return statistics.fmean(vals) if vals else None


def default_metric(runs: list[dict]) -> str:
    finished = [r for r in runs if r["status"] == "finished"]
    if finished and all("truth_accuracy" in r["metrics"] for r in finished):
        return "truth_accuracy"
    keys = sorted({k for r in finished for k in r["metrics"] if k.startswith("eval/") and k.endswith("accuracies")})
    return keys[0] if keys else "truth_accuracy"


def plot(rows: list[dict], arm_keys: list[str], metric: str, path: Path, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def others(row):  # the arm's swept keys other than the strategy: one x position per combination
        return tuple((k, row["arm"][k]) for k in arm_keys if k != STRATEGY_KEY)

    strategies = sorted({r["arm"].get(STRATEGY_KEY) for r in rows}, key=str)
    groups = sorted({others(r) for r in rows}, key=str)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(groups) * max(1, len(strategies))), 3.6))
    width = 0.8 / max(1, len(strategies))
    for i, s in enumerate(strategies):
        xs, ys, errs = [], [], []
        for r in rows:
            vals = [m["metrics"][metric] for m in r["members"] if metric in m["metrics"]]
            if r["arm"].get(STRATEGY_KEY) != s or not vals:
                continue
            mean, lo, hi = t_interval(vals)
            xs.append(groups.index(others(r)) + (i - (len(strategies) - 1) / 2) * width)
            ys.append(mean)
            errs.append(0 if math.isnan(lo) else (hi - lo) / 2)
        ax.errorbar(xs, ys, yerr=errs, fmt="o", capsize=4, label=str(s))  # points: no bar hides a small gap
    ax.set_xticks(range(len(groups)), [", ".join(f"{k}={v}" for k, v in g) or "all" for g in groups])
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{ylabel} (mean, 95 % CI over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(sweep_dir: Path, metric: str | None = None, out_dir: Path | None = None) -> dict:
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir or sweep_dir)
    runs = read_runs(sweep_dir)
    if not runs:
        raise SystemExit(f"error: sweep_dir={str(sweep_dir)!r} is invalid: allowed a directory of notus_lab run dirs "
                         f"(each with config.yaml)")
    metric = metric or default_metric(runs)
    keys = factors(runs)
    arm_keys = [k for k in keys if k not in SEED_KEYS]
    rows = arm_table(runs, metric, arm_keys)
    n_strategies = len({r["overrides"].get(STRATEGY_KEY) for r in runs})
    comparisons = max(1, n_strategies * (n_strategies - 1) // 2)
    diffs = paired_differences(runs, metric, keys, comparisons)
    found = verdicts(diffs, metric)
    finished = [r for r in runs if r["status"] == "finished"]
    signals = sorted({k.split("/")[1] for r in finished for k in r["metrics"] if k.startswith("eval/")})

    md = [f"# Sweep report: `{sweep_dir.name}`", "",
          f"{len(runs)} runs: {len(finished)} finished, {sum(r['status'] == 'failed' for r in runs)} failed, "
          f"{sum(r['status'] == 'unfinished' for r in runs)} unfinished. Metric: `{metric}`. "
          f"Swept: {', '.join(f'`{k}`' for k in keys) or 'nothing'}.", "", "## Verdict", ""]
    if found:
        md += [f"- {v}" for v in found]
    else:
        md.append("No verdict: no difference between strategies has an adjusted 95 % CI that excludes 0 "
                  "(more seeds, or the strategies really are this close).")
    md += ["", f"## `{metric}` per arm (mean ± 95 % CI half-width over seeds)", "",
           "| " + " | ".join(arm_keys) + " | n | " + metric + " | " + " | ".join(f"eval {s} acc" for s in signals) + " |",
           "|" + "---|" * (len(arm_keys) + 2 + len(signals))]
    for r in rows:
        cells = ["" if (m := cross_eval_mean(r, s, "rewards/accuracies")) is None else f"{m:.3f}" for s in signals]
        md.append("| " + " | ".join(str(r["arm"][k]) for k in arm_keys) + f" | {r['n']} | {_fmt(r['mean'], r['ci'])} | "
                  + " | ".join(cells) + " |")
    md += ["", "The `eval <signal> acc` columns are the cross-eval matrix: every model scored on the same held-out "
           "prompts labelled by each binarization (mean over seeds).", ""]
    if rows and signals:
        md += ["### Cross-eval reward margins (mean over seeds)", "",
               "| " + " | ".join(arm_keys) + " | " + " | ".join(f"{s} margin" for s in signals) + " |",
               "|" + "---|" * (len(arm_keys) + len(signals))]
        for r in rows:
            means = [cross_eval_mean(r, s, "rewards/margins") for s in signals]
            md.append("| " + " | ".join(str(r["arm"][k]) for k in arm_keys) + " | "
                      + " | ".join("" if m is None else f"{m:.3f}" for m in means) + " |")
        md.append("")
    if diffs:
        md += ["## Paired differences (B − A, paired by every other swept key)", "",
               "| A | B | scope | n | mean diff | 95 % CI | adjusted CI | excludes 0 |", "|---|---|---|---|---|---|---|---|"]
        for d in diffs:
            md.append(f"| {d['a']} | {d['b']} | {d['scope']} | {d['n']} | {d['mean']:+.4f} | "
                      f"[{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}] | [{d['adjusted_ci'][0]:+.4f}, {d['adjusted_ci'][1]:+.4f}] | "
                      f"{'yes' if d['excludes_zero'] else 'no'} |")
        md += ["", f"Adjusted CIs are Bonferroni-widened for {comparisons} "
               "strategy comparisons; verdicts use the pooled (`all`) rows only.", ""]
    problems = [r for r in runs if r["status"] != "finished"]
    if problems:
        md += ["## Failed or unfinished runs", "", "| run | status | error |", "|---|---|---|"]
        md += [f"| `{r['name']}` | {r['status']} | {r.get('error', 'no metrics.json yet: rerun the sweep to resume it')} |"
               for r in problems]
        md.append("")

    out_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    if rows:
        plot(rows, arm_keys, metric, out_dir / "accuracy.png", metric)
        plots.append("accuracy.png")
        margin = next((k for k in ("eval/truth/rewards/margins", metric.replace("accuracies", "margins"))
                       if all(k in m["metrics"] for r in rows for m in r["members"])), None)
        if margin:
            plot(rows, arm_keys, margin, out_dir / "margins.png", margin)
            plots.append("margins.png")
    md += [f"![{p}]({p})" for p in plots]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
    summary = {"sweep": str(sweep_dir), "metric": metric, "factors": keys, "verdicts": found,
               "arms": [{k: v for k, v in r.items() if k != "members"} for r in rows], "differences": diffs,
               "runs": [{"name": r["name"], "status": r["status"], "error": r.get("error")} for r in runs],
               "plots": plots}
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m notus_lab.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir, e.g. outputs/sweeps/critique_vs_rating")
    parser.add_argument("--metric", help="a metrics.json key, flattened with '/' (default: truth_accuracy "
                                         "when every run has it, e.g. eval/mean_rating/rewards/accuracies)")
    parser.add_argument("--out", type=Path, help="where report.md goes (default: the sweep dir)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: sweep_dir={str(args.sweep_dir)!r} is invalid: allowed an existing sweep directory", file=sys.stderr)
        sys.exit(2)
    summary = write_report(args.sweep_dir, args.metric, args.out)
    print((Path(args.out or args.sweep_dir) / "report.md").read_text())
    failed = [r for r in summary["runs"] if r["status"] != "finished"]
    if failed:
        print(f"{len(failed)} run(s) failed or unfinished: see the table above", file=sys.stderr)


if __name__ == "__main__":
    main()
