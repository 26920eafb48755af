"""Report stage: a sweep dir -> report.md, report.json and figures, read from the run dirs alone.

    python -m notus_lab.report outputs/sweeps/critique_vs_rating [--metric M] [--target-effect D] [--wandb offline]

The metric is the judged win rate against the reference when every run has one, else truth_accuracy,
else --metric is required: never one of the compared signals' own labels. An arm is one setting of the
swept keys other than the seed: mean and 95 % t-interval over seeds, with its answers' length and
degeneration beside it. Pairs of data strategies are compared with the statistics of notus_lab/stats.py
(paired by seed and every other swept key, and prompt by prompt where the metric allows); a verdict line is
written only when a Bonferroni-adjusted interval excludes zero. Failed and unfinished arms are listed,
never dropped. `--wandb offline|online` also logs the report as a W&B run in the sweep's group.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from notus_lab import figures
from notus_lab.console import refuse
from notus_lab.runs import JUDGED, SEED_KEYS, STRATEGY_KEY, factors, has, read_runs
from notus_lab.stats import design_line, paired_differences, plan, t_interval, verdicts

COLLAPSE_DISTINCT, COLLAPSE_WORD, LONGER = 0.5, 0.3, 1.2  # degeneration and length flags (issue-free defaults)


def arm_table(runs: list[dict], metric: str, arm_keys: list[str]) -> list[dict]:
    by_arm = defaultdict(list)
    for r in runs:
        if has(r, metric):
            by_arm[tuple(r["overrides"].get(k) for k in arm_keys)].append(r)
    rows = []
    for arm, members in sorted(by_arm.items(), key=lambda kv: tuple(map(str, kv[0]))):
        mean, lo, hi = t_interval([m["metrics"][metric] for m in members])
        rows.append({"arm": dict(zip(arm_keys, arm)), "n": len(members), "mean": mean, "ci": [lo, hi],
                     "members": members, "flags": flags(members)})
    return rows


def _arm_mean(members: list[dict], key: str):
    vals = [m["metrics"][key] for m in members if isinstance(m["metrics"].get(key), (int, float))]
    return statistics.fmean(vals) if vals else None


def flags(members: list[dict]) -> list[str]:
    """Reward hacking in plain sight: answers that collapse, or win by getting longer."""
    g = lambda key: _arm_mean(members, f"generation/{key}")  # noqa: E731
    out = []
    if g("policy_distinct_2") is not None and g("policy_distinct_2") < COLLAPSE_DISTINCT * g("reference_distinct_2"):
        out.append(f"collapse: distinct-2 {g('policy_distinct_2'):.2f} vs the reference's {g('reference_distinct_2'):.2f}")
    if g("policy_top_word_share") is not None and g("policy_top_word_share") > COLLAPSE_WORD:
        out.append(f"one word is {g('policy_top_word_share'):.0%} of the output")
    if g("policy_mean_tokens") and g("reference_mean_tokens") and g("policy_mean_tokens") > LONGER * g("reference_mean_tokens"):
        out.append(f"{g('policy_mean_tokens') / g('reference_mean_tokens') - 1:.0%} longer than the reference: "
                   "check a length-controlled win rate")
    return out


def _fmt(mean: float, ci) -> str:
    if any(math.isnan(x) for x in ci):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {(ci[1] - ci[0]) / 2:.4f}"


def cross_eval_mean(row: dict, signal: str, key: str):
    """Mean over an arm's seeds of one held-out metric under one eval signal (None if no run has it)."""
    return _arm_mean(row["members"], f"eval/{signal}/{key}")


def default_metric(runs: list[dict]) -> str:
    """Judged generations when every finished run has them, else the truth (bundled world); never one of
    the compared signals' own labels, which would grade each strategy by its own rule."""
    finished = [r for r in runs if r["status"] == "finished"]
    if not finished:  # nothing to compare yet: the report lists what failed or is unfinished
        return JUDGED
    for metric in (JUDGED, "truth_accuracy"):
        if all(has(r, metric) for r in finished):
            return metric
    candidates = sorted({k for r in finished for k, v in r["metrics"].items() if isinstance(v, (int, float))})
    raise SystemExit(f"error: --metric is required: not every run has {JUDGED} or truth_accuracy; allowed one of "
                     f"{', '.join(candidates[:12])}{' ...' if len(candidates) > 12 else ''}")


def sign_check(diffs: list[dict], runs: list[dict]) -> list[dict]:
    """Positive control in the bundled world: for each pooled pair of strategies, does the judged difference
    have the sign of the difference in how often their training pairs agree with the truth (in the same
    world, where a world key was swept)?"""
    out = []
    for d in diffs:
        if not d["pooled"]:
            continue
        within = dict(part.split("=", 1) for part in d["scope"].split(", ")) if d["scope"] != "all" else {}
        agreement = defaultdict(list)
        for r in runs:
            if (r["status"] == "finished" and r.get("truth_agreement") is not None
                    and all(r["overrides"].get(k) == v for k, v in within.items())):
                agreement[r["overrides"].get(STRATEGY_KEY)].append(r["truth_agreement"])
        if d["a"] in agreement and d["b"] in agreement:
            data_diff = statistics.fmean(agreement[d["b"]]) - statistics.fmean(agreement[d["a"]])
            # only a judged difference the statistics support is a ranking to check
            agrees = ((d["mean"] > 0) == (data_diff > 0)) if d["excludes_zero"] else None
            out.append({"a": d["a"], "b": d["b"], "scope": d["scope"], "metric_diff": d["mean"],
                        "agreement_diff": round(data_diff, 4), "agrees": agrees})
    return out


def _ci(ci) -> str:
    return "n/a" if ci[0] is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def difference_line(d: dict) -> str:
    size = "" if d.get("effect_size") is None else f"{d['effect_size']:+.2f}"
    mde = "" if d.get("mde") is None else f"{d['mde']:.4f}"
    return (f"| {d['a']} | {d['b']} | {d['scope']} | {d['seeds']} | {d['n']} | {d.get('prompts', '')} | "
            f"{d['mean']:+.4f} | {_ci(d['ci'])} | {_ci(d['adjusted_ci'])} | {'yes' if d['excludes_zero'] else 'no'} | "
            f"{size} | {mde} |")


def write_report(sweep_dir: Path, metric: str | None = None, out_dir: Path | None = None,
                 target_effect: float | None = None) -> dict:
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
    design = design_line(diffs)
    needed = plan(diffs, target_effect) if target_effect else []
    finished = [r for r in runs if r["status"] == "finished"]
    signals = sorted({k.split("/")[1] for r in finished for k in r["metrics"] if k.startswith("eval/")})
    judged = any("generation/policy_mean_tokens" in r["metrics"] for r in finished)

    md = [f"# Sweep report: `{sweep_dir.name}`", "",
          f"{len(runs)} runs: {len(finished)} finished, {sum(r['status'] == 'failed' for r in runs)} failed, "
          f"{sum(r['status'] == 'unfinished' for r in runs)} unfinished. The metric that decides: `{metric}`. "
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
                  "(more seeds or prompts, or the strategies really are this close).")
    flagged = [(r, f) for r in rows for f in r["flags"]]
    if flagged:
        md += ["", "**Flags** (reward hacking in plain sight):"]
        md += [f"- {', '.join(f'{k}={v}' for k, v in r['arm'].items())}: {f}" for r, f in flagged]
    if design:
        md += ["", design]
    if needed:
        md += ["", f"To detect a difference of {target_effect:g} (80 % power, same adjustment):", "",
               "| seeds | shared prompts (every seed answers the same) |", "|---|---|"]
        md += [f"| {p['seeds']} | {p['prompts'] if p['prompts'] is not None else 'not reachable: seed noise alone is larger'} |"
               for p in needed]
    checks = sign_check(diffs, runs)
    if checks:
        md += ["", "### Positive control: the judged ranking against the data-level truth", "",
               "| A | B | scope | B − A judged | B − A agreement of training pairs with the truth | same sign |",
               "|---|---|---|---|---|---|"]
        md += [f"| {c['a']} | {c['b']} | {c['scope']} | {c['metric_diff']:+.4f} | {c['agreement_diff']:+.4f} | "
               f"{'no judged difference' if c['agrees'] is None else 'yes' if c['agrees'] else '**no**'} |"
               for c in checks]
    length_cols = ["policy tokens", "reference tokens", "distinct-2"] if judged else []
    md += ["", f"## `{metric}` per arm (mean ± 95 % CI half-width over seeds)", "",
           "| " + " | ".join(arm_keys + ["n", metric] + length_cols + [f"eval {s} acc" for s in signals]) + " |",
           "|" + "---|" * (len(arm_keys) + 2 + len(length_cols) + len(signals))]
    for r in rows:
        cells = [str(r["arm"][k]) for k in arm_keys] + [str(r["n"]), _fmt(r["mean"], r["ci"])]
        if judged:
            cells += ["" if (v := _arm_mean(r["members"], f"generation/{k}")) is None else f"{v:.1f}" if "tokens" in k
                      else f"{v:.3f}" for k in ("policy_mean_tokens", "reference_mean_tokens", "policy_distinct_2")]
        cells += ["" if (m := cross_eval_mean(r, s, "rewards/accuracies")) is None else f"{m:.3f}" for s in signals]
        md.append("| " + " | ".join(cells) + " |")
    md += ["", "The `eval <signal> acc` columns are the cross-eval matrix: every model scored on the same held-out "
           "prompts labelled by each binarization (mean over seeds): a diagnostic, not the verdict.", ""]
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
               "| A | B | scope | seeds | paired runs | prompts | mean diff | 95 % CI | adjusted CI | excludes 0 | "
               "effect size | detectable |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        md += [difference_line(d) for d in diffs]
        md += ["", f"Intervals: {' and '.join(sorted({d['method'] for d in diffs}))} (notus_lab/stats.py): seed "
               "noise with seeds − 1 degrees of freedom, the prompts' shared lean with prompts − 1, contexts of one "
               f"seed averaged first. Adjusted CIs are Bonferroni-widened for all {len(diffs)} rows of this table; "
               "verdicts are written for the pooled rows (`all`, or one value of a key that changes the world or the "
               "judge, which are never pooled). Effect size: the mean difference over the per-prompt standard "
               "deviation (seed, prompt and residual components). Detectable: the smallest difference this design "
               "finds with 80 % power, from the same model and distribution.", ""]
    if len(codes) > 1:
        md += ["## Code versions", "", "| code version (a hash of notus_lab's sources) | runs |", "|---|---|"]
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
    if diffs:
        figures.forest(diffs, metric, out_dir / "forest.png")
        plots.append("forest.png")
    if rows:
        figures.arms(rows, arm_keys, metric, out_dir / "arms.png", metric)
        plots.append("arms.png")
        margin = next((k for k in ("eval/truth/rewards/margins", metric.replace("accuracies", "margins"))
                       if k != metric and all(k in m["metrics"] for r in rows for m in r["members"])), None)
        if margin:
            figures.arms(rows, arm_keys, margin, out_dir / "margins.png", margin)
            plots.append("margins.png")
    curve_signal = "truth" if "truth" in signals else next(iter(signals), None)
    if curve_signal and figures.curves(finished, curve_signal, out_dir / "curves.png"):
        plots.append("curves.png")
    md += [f"![{p}]({p})" for p in plots]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
    summary = {"sweep": str(sweep_dir), "metric": metric, "factors": keys, "signals": signals, "verdicts": found,
               "sign_check": checks,
               "design": design, "plan": needed, "code_versions": {c: len(names) for c, names in codes.items()},
               "arms": [{k: v for k, v in r.items() if k != "members"} for r in rows], "differences": diffs,
               "runs": [{"name": r["name"], "status": r["status"], "error": r.get("error")} for r in runs],
               "plots": plots}
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m notus_lab.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir, e.g. outputs/sweeps/critique_vs_rating")
    parser.add_argument("--metric", help="a metrics.json key, flattened with '/' (default: the judged win rate "
                                         f"{JUDGED} when every run has it, else truth_accuracy); external judges: "
                                         "alpaca_eval/win_rate, alpaca_eval/length_controlled_winrate, mt_bench/score, "
                                         "mt_bench_pair/win_rate")
    parser.add_argument("--target-effect", type=float, help="also print the seeds and prompts needed to detect it")
    parser.add_argument("--wandb", choices=("offline", "online", "disabled"), default="disabled",
                        help="log the report as a W&B run (job_type=report) in the sweep's group")
    parser.add_argument("--out", type=Path, help="where report.md goes (default: the sweep dir)")
    args = parser.parse_args(argv)
    problems = [("sweep_dir", args.sweep_dir, "an existing sweep directory")] if not args.sweep_dir.is_dir() else []
    if args.target_effect is not None and not args.target_effect > 0:
        problems.append(("--target-effect", args.target_effect, "a number > 0"))
    refuse(problems)
    summary = write_report(args.sweep_dir, args.metric, args.out, args.target_effect)
    out = Path(args.out or args.sweep_dir)
    print((out / "report.md").read_text())
    if args.wandb != "disabled":
        from notus_lab.wandb_report import log_report

        where = log_report(args.sweep_dir, out, summary, args.wandb)
        print(f"W&B report run: {where}")
    failed = [r for r in summary["runs"] if r["status"] != "finished"]
    if failed:
        print(f"{len(failed)} run(s) failed or unfinished: see the table above", file=sys.stderr)


if __name__ == "__main__":
    main()
