"""Report stage: a sweep dir -> report.md, report.json and PNG plots, read from the run dirs alone.

    python -m notus_lab.report outputs/sweeps/critique_vs_rating [--metric truth_accuracy]

The metric is the judged win rate against the reference when every run has one (else truth_accuracy;
else --metric is required). An arm is one setting of the swept keys other than the seed. Per arm: mean and
95 % t-interval over seeds. Per pair of data strategies: differences paired by seed (and by every other
swept key, e.g. beta) and, for judged generations, prompt by prompt, with a cluster bootstrap over both;
a verdict line is written only when that interval, Bonferroni-widened for every row of the table,
excludes zero. Failed and unfinished arms are listed, never dropped.
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
            data_report = json.loads((run_dir / "data_report.json").read_text()) if (run_dir / "data_report.json").exists() else {}
            # in the bundled world: how often this arm's own training pairs prefer the truly better answer
            run["truth_agreement"] = data_report.get("truth_agreement", {}).get("train", {}).get("agreement")
            provenance = run_dir / "provenance.json"
            run["code"] = json.loads(provenance.read_text()).get("git_commit") if provenance.exists() else None
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


def per_prompt_outcomes(run_dir: Path) -> dict[str, float] | None:
    """{prompt: the policy's judged outcome against its reference, averaged over samples} (a win 1, a tie
    0.5, a loss 0), from generations.jsonl; None when the run has none."""
    path = run_dir / "generations.jsonl"
    if not path.exists():
        return None
    sums, counts = defaultdict(float), defaultdict(int)
    for line in path.read_text().splitlines():
        r = json.loads(line)
        sums[r["prompt"]] += {"policy": 1.0, "tie": 0.5}.get(r["winner"], 0.0)
        counts[r["prompt"]] += 1
    return {p: sums[p] / counts[p] for p in sums}


def cluster_bootstrap(diffs_by_context: list[list[float]], alphas: tuple[float, ...], resamples: int = 4000,
                      seed: int = 0) -> tuple[float, list[tuple[float, float]]]:
    """Mean paired difference and its percentile intervals (one per alpha), resampling contexts (seeds and
    other shared keys, the clusters) and, within each drawn context, its prompts: both levels of noise."""
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


def paired_differences(runs: list[dict], metric: str, keys: list[str]) -> list[dict]:
    """For each pair of strategies: the difference of `metric` between runs that share every other swept
    key (seed, beta, ...), pooled and per value of each non-seed key.

    With judged generations, the runs are paired prompt by prompt too (the same held-out prompts) and the
    interval is a cluster bootstrap over contexts and prompts; otherwise a t-interval over the paired runs.
    Every row's adjusted interval is Bonferroni-widened for all rows of the table, so any row that claims
    "excludes 0" carries the correction, not only the pooled ones."""
    if STRATEGY_KEY not in keys:
        return []
    others = [k for k in keys if k != STRATEGY_KEY]
    value, prompts = {}, {}
    for r in runs:
        if r["status"] == "finished" and metric in r["metrics"]:
            key = (r["overrides"][STRATEGY_KEY], tuple(r["overrides"].get(k) for k in others))
            value[key] = r["metrics"][metric]
            if metric == JUDGED:
                prompts[key] = per_prompt_outcomes(r["dir"])
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
            per_context = []
            for ctx in contexts:
                pa, pb = prompts[(a, ctx)], prompts[(b, ctx)]
                per_context.append([pb[p] - pa[p] for p in pa if p in pb])
            mean, (ci, adjusted) = cluster_bootstrap(per_context, (0.05, 0.05 / m))
            row.update(method="cluster bootstrap (contexts x prompts)", prompts=min(len(d) for d in per_context),
                       mean=mean, ci=list(ci), adjusted_ci=list(adjusted))
        else:
            diffs = [value[(b, ctx)] - value[(a, ctx)] for ctx in contexts]
            mean, lo, hi = t_interval(diffs)
            _, alo, ahi = t_interval(diffs, 1 - 0.05 / m)
            row.update(method="t over paired runs", mean=mean, ci=[lo, hi], adjusted_ci=[alo, ahi])
        row["excludes_zero"] = bool(row["adjusted_ci"][0] > 0 or row["adjusted_ci"][1] < 0)
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
        lines.append(f"**{winner}** beats **{loser}** on `{metric}` by {abs(d['mean']):.4f} "
                     f"(adjusted 95 % CI {lo:.4f} to {hi:.4f}, {unit})")
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


JUDGED = "generation/win_rate_vs_reference"


def default_metric(runs: list[dict]) -> str:
    """Judged generations when every finished run has them, else the truth (bundled world); never one of
    the compared signals' own labels, which would grade each strategy by its own rule."""
    finished = [r for r in runs if r["status"] == "finished"]
    for metric in (JUDGED, "truth_accuracy"):
        if finished and all(metric in r["metrics"] for r in finished):
            return metric
    candidates = sorted({k for r in finished for k, v in r["metrics"].items() if isinstance(v, (int, float))})
    raise SystemExit(f"error: --metric is required: not every run has {JUDGED} or truth_accuracy; allowed one of "
                     f"{', '.join(candidates[:12])}{' ...' if len(candidates) > 12 else ''}")


def sign_check(diffs: list[dict], runs: list[dict]) -> list[dict]:
    """Positive control in the bundled world: for each pair of strategies, does the judged difference have
    the sign of the difference in how often their training pairs agree with the truth?"""
    agreement = defaultdict(list)
    for r in runs:
        if r["status"] == "finished" and r.get("truth_agreement") is not None:
            agreement[r["overrides"].get(STRATEGY_KEY)].append(r["truth_agreement"])
    out = []
    for d in diffs:
        if d["scope"] == "all" and d["a"] in agreement and d["b"] in agreement:
            data_diff = statistics.fmean(agreement[d["b"]]) - statistics.fmean(agreement[d["a"]])
            # only a judged difference the statistics support is a ranking to check
            agrees = ((d["mean"] > 0) == (data_diff > 0)) if d["excludes_zero"] else None
            out.append({"a": d["a"], "b": d["b"], "metric_diff": d["mean"], "agreement_diff": round(data_diff, 4),
                        "agrees": agrees})
    return out


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
    diffs = paired_differences(runs, metric, keys)
    found = verdicts(diffs, metric)
    finished = [r for r in runs if r["status"] == "finished"]
    signals = sorted({k.split("/")[1] for r in finished for k in r["metrics"] if k.startswith("eval/")})

    md = [f"# Sweep report: `{sweep_dir.name}`", "",
          f"{len(runs)} runs: {len(finished)} finished, {sum(r['status'] == 'failed' for r in runs)} failed, "
          f"{sum(r['status'] == 'unfinished' for r in runs)} unfinished. Metric: `{metric}`. "
          f"Swept: {', '.join(f'`{k}`' for k in keys) or 'nothing'}.", "", "## Verdict", ""]
    codes = defaultdict(list)
    for r in finished:
        codes[r.get("code") or "unknown"].append(r["name"])
    if len(codes) > 1:
        md += [f"**Runs from {len(codes)} code versions**: differences between arms may be differences of code "
               "(see the table at the end).", ""]
    if found:
        md += [f"- {v}" for v in found]
    else:
        md.append("No verdict: no difference between strategies has an adjusted 95 % CI that excludes 0 "
                  "(more seeds, or the strategies really are this close).")
    checks = sign_check(diffs, runs)
    if checks:
        md += ["", "### Positive control: the judged ranking against the data-level truth", "",
               "| A | B | B − A judged | B − A agreement of training pairs with the truth | same sign |",
               "|---|---|---|---|---|"]
        md += [f"| {c['a']} | {c['b']} | {c['metric_diff']:+.4f} | {c['agreement_diff']:+.4f} | "
               f"{'no judged difference' if c['agrees'] is None else 'yes' if c['agrees'] else '**no**'} |"
               for c in checks]
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
               "| A | B | scope | n | prompts | mean diff | 95 % CI | adjusted CI | excludes 0 |",
               "|---|---|---|---|---|---|---|---|---|"]
        for d in diffs:
            md.append(f"| {d['a']} | {d['b']} | {d['scope']} | {d['n']} | {d.get('prompts', '')} | {d['mean']:+.4f} | "
                      f"[{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}] | [{d['adjusted_ci'][0]:+.4f}, {d['adjusted_ci'][1]:+.4f}] | "
                      f"{'yes' if d['excludes_zero'] else 'no'} |")
        method = sorted({d["method"] for d in diffs})
        md += ["", f"Intervals: {' and '.join(method)}. Adjusted CIs are Bonferroni-widened for all {len(diffs)} rows "
               "of this table; verdicts are written for the pooled (`all`) rows.", ""]
    if len(codes) > 1:
        md += ["## Code versions", "", "| commit | runs |", "|---|---|"]
        md += [f"| `{c[:12]}` | {len(names)}: {', '.join(f'`{n}`' for n in names[:4])}{' ...' if len(names) > 4 else ''} |"
               for c, names in sorted(codes.items())]
        md.append("")
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
                       if k != metric and all(k in m["metrics"] for r in rows for m in r["members"])), None)
        if margin:
            plot(rows, arm_keys, margin, out_dir / "margins.png", margin)
            plots.append("margins.png")
    md += [f"![{p}]({p})" for p in plots]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
    summary = {"sweep": str(sweep_dir), "metric": metric, "factors": keys, "verdicts": found, "sign_check": checks,
               "code_versions": {c: len(names) for c, names in codes.items()},
               "arms": [{k: v for k, v in r.items() if k != "members"} for r in rows], "differences": diffs,
               "runs": [{"name": r["name"], "status": r["status"], "error": r.get("error")} for r in runs],
               "plots": plots}
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m notus_lab.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir, e.g. outputs/sweeps/critique_vs_rating")
    parser.add_argument("--metric", help="a metrics.json key, flattened with '/' (default: the judged win rate "
                                         f"{JUDGED} when every run has it, else truth_accuracy)")
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
