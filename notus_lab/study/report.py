"""Report stage: a sweep dir -> report.md, report.json and figures, read from the run dirs alone.

    python -m notus_lab.report outputs/sweeps/critique_vs_rating [--metric M] [--target-effect D] [--wandb offline]

The metric is the judged win rate against the reference when every run has one, else truth_accuracy,
else --metric is required: never one of the compared signals' own labels. An arm is one setting of the
swept keys other than the seed: mean and 95 % t-interval over seeds, with its answers' length and
degeneration beside it. Pairs of data strategies are compared with the statistics of notus_lab/study/stats.py
(paired by seed and every other swept key, and prompt by prompt where the metric allows); a verdict line is
written only when a Bonferroni-adjusted interval excludes zero. Failed and unfinished arms are listed,
never dropped. `--wandb offline|online` also logs the report as a W&B run in the sweep's group.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from notus_lab.config.derived import world_size
from notus_lab.config.options import hardware_profile, load_option
from notus_lab.core.errors import ConfigError, invalid
from notus_lab.study import figures
from notus_lab.study.cost import (
    ASSUMED_MFU,
    NOTUS_EPOCHS,
    NOTUS_MAX_LENGTH,
    NOTUS_PAIRS,
    design_cost,
    projected_arm_gpu_hours,
    sweep_cost,
)
from notus_lab.study.runs import JUDGED, SEED_KEYS, STRATEGY_KEY, factors, has, per_prompt_outcomes, read_runs
from notus_lab.study.stats import arm_interval, design_line, paired_differences, plan, verdicts

PROJECT_HARDWARE = "a100_80gb_x8"  # where --target-effect plans are priced at 7B scale
COLLAPSE_DISTINCT, COLLAPSE_WORD, LONGER = 0.5, 0.3, 1.2  # degeneration and length flags (issue-free defaults)


def arm_table(runs: list[dict], metric: str, arm_keys: list[str]) -> list[dict]:
    by_arm = defaultdict(list)
    for r in runs:
        if has(r, metric):
            by_arm[tuple(r["overrides"].get(k) for k in arm_keys)].append(r)
    rows = []
    for arm, members in sorted(by_arm.items(), key=lambda kv: tuple(map(str, kv[0]))):
        level = arm_interval([m["metrics"][metric] for m in members],
                             [per_prompt_outcomes(m["dir"], metric) for m in members])
        rows.append({"arm": dict(zip(arm_keys, arm)), "n": len(members), **level, "members": members,
                     "flags": flags(members)})
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
    raise ConfigError(f"--metric is required: not every run has {JUDGED} or truth_accuracy; allowed one of "
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
    verdict = ("yes" if d["excludes_zero"] else "no") if d["pooled"] else "— (describes a pooled row)"
    p = "" if d.get("p_value") is None else f"{d['p_value']:.2g}"
    return (f"| {d['a']} | {d['b']} | {d['scope']} | {d['seeds']} | {d['n']} | {d.get('prompts', '')} | "
            f"{d['mean']:+.4f} | {_ci(d['ci'])} | {p} | {_ci(d['adjusted_ci'])} | {verdict} | {size} | {mde} |")


def write_report(sweep_dir: Path, metric: str | None = None, out_dir: Path | None = None,
                 target_effect: float | None = None, project_hardware: str = PROJECT_HARDWARE) -> dict:
    """report.md, report.json and the figures for one sweep dir; returns report.json's content."""
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir or sweep_dir)
    s = study(sweep_dir, metric, target_effect, project_hardware)
    md = (header(s) + verdict_section(s) + plan_section(s) + sign_check_section(s) + arms_section(s)
          + cross_eval_section(s) + differences_section(s) + cost_section(s) + code_versions_section(s)
          + problems_section(s))
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = draw_figures(s, out_dir)
    md += [f"![{p}]({p})" for p in plots]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
    summary = {"sweep": str(sweep_dir), "metric": s["metric"], "factors": s["keys"], "signals": s["signals"],
               "verdicts": s["found"], "sign_check": s["checks"], "design": s["design"], "plan": s["plan"],
               "cost": s["cost"], "code_versions": {c: len(names) for c, names in s["codes"].items()},
               "arms": [{k: v for k, v in r.items() if k != "members"} for r in s["rows"]], "differences": s["diffs"],
               "runs": [{"name": r["name"], "status": r["status"], "error": r.get("error")} for r in s["runs"]],
               "plots": plots}
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def study(sweep_dir: Path, metric: str | None, target_effect: float | None, project_hardware: str) -> dict:
    """Every number the report writes, read from the sweep's run dirs."""
    runs = read_runs(sweep_dir)
    if not runs:
        raise invalid("sweep_dir", str(sweep_dir), "a directory of notus_lab run dirs (each with config.yaml)")
    metric = metric or default_metric(runs)
    keys = factors(runs)
    arm_keys = [k for k in keys if k not in SEED_KEYS]
    rows = arm_table(runs, metric, arm_keys)
    diffs = paired_differences(runs, metric, keys)
    finished = [r for r in runs if r["status"] == "finished"]
    codes = defaultdict(list)
    for r in finished:
        codes[r.get("code") or "unknown"].append(r["name"])
    cost = sweep_cost(finished)
    needed = plan(diffs, target_effect) if target_effect else []
    if needed and cost:
        price_plan(needed, cost, arms=max(len(rows), 1), project_hardware=project_hardware)
    return {"name": sweep_dir.name, "runs": runs, "finished": finished, "metric": metric, "keys": keys,
            "arm_keys": arm_keys, "rows": rows, "diffs": diffs, "found": verdicts(diffs, metric),
            "design": design_line(diffs), "plan": needed, "target_effect": target_effect, "cost": cost,
            "checks": sign_check(diffs, runs), "codes": codes,
            "signals": sorted({k.split("/")[1] for r in finished for k in r["metrics"] if k.startswith("eval/")}),
            "judged": any("generation/policy_mean_tokens" in r["metrics"] for r in finished)}


def price_plan(needed: list[dict], cost: dict, arms: int, project_hardware: str) -> None:
    """Each design's cost: at this sweep's measured rate (its own device), and projected to 7B arms of the
    Notus recipe on `project_hardware` (FLOPs at an assumed MFU: a projection, never a measurement)."""

    hw = hardware_profile(project_hardware)
    shape = load_option("base", "zephyr_sft_full").base.shape  # a `@package _global_` option
    per_arm = projected_arm_gpu_hours(shape.num_parameters, world_size(hw), hw.peak_tflops) \
        if hw.peak_tflops else None
    for p in needed:
        if p["prompts"] is None:
            p["cost"] = p["cost_7b_projected"] = None
            continue
        p["cost"] = float(f"{design_cost(cost, arms, p['seeds'], p['prompts']):.4g}")
        p["cost_7b_projected"] = round(arms * p["seeds"] * per_arm) if per_arm else None
    cost["projection"] = {"hardware": project_hardware, "per_arm_gpu_hours": round(per_arm, 1) if per_arm else None,
                          "assumes": f"training only (generating and judging the prompts comes on top): full DPO with a reference, {NOTUS_PAIRS:,} pairs x {NOTUS_EPOCHS} epochs, "
                                     f"2 x {NOTUS_MAX_LENGTH} tokens per pair (an upper bound), MFU {ASSUMED_MFU:.0%}"}


def header(s: dict) -> list[str]:
    runs = s["runs"]
    return [f"# Sweep report: `{s['name']}`", "",
            f"{len(runs)} runs: {len(s['finished'])} finished, {sum(r['status'] == 'failed' for r in runs)} failed, "
            f"{sum(r['status'] == 'unfinished' for r in runs)} unfinished. The metric that decides: `{s['metric']}`. "
            f"Swept: {', '.join(f'`{k}`' for k in s['keys']) or 'nothing'}.", ""]


def verdict_section(s: dict) -> list[str]:
    md = ["## Verdict", ""]
    if len(s["codes"]) > 1:
        md += [f"**Runs from {len(s['codes'])} code versions**: differences between arms may be differences of code "
               "(see the table at the end).", ""]
    if s["found"]:
        md += [f"- {v}" for v in s["found"]]
    else:
        md.append("No verdict: no difference between strategies has a Holm-adjusted 95 % CI that excludes 0 "
                  "(more seeds or prompts, or the strategies really are this close).")
    flagged = [(r, f) for r in s["rows"] for f in r["flags"]]
    if flagged:
        md += ["", "**Flags** (reward hacking in plain sight):"]
        md += [f"- {', '.join(f'{k}={v}' for k, v in r['arm'].items())}: {f}" for r, f in flagged]
    if s["design"]:
        md += ["", s["design"]]
    return md


def plan_section(s: dict) -> list[str]:
    if not s["plan"]:
        return []
    cost = s["cost"] or {}
    projection = cost.get("projection") or {}
    priced = "cost" in s["plan"][0]
    md = ["", f"To detect a difference of {s['target_effect']:g} (80 % power, same adjustment):", ""]
    md += ["| seeds | shared prompts (every seed answers the same) |"
           + (f" cost here ({cost['unit']}) | projected 7B cost on {projection.get('hardware')} (GPU-hours) |" if priced else ""),
           "|---|---|" + ("---|---|" if priced else "")]
    for p in s["plan"]:
        cells = [str(p["seeds"]), str(p["prompts"]) if p["prompts"] is not None else "not reachable: seed noise alone is larger"]
        if priced:
            cells += ["" if p["cost"] is None else f"{p['cost']:.3g}",
                      "" if p["cost_7b_projected"] is None else f"{p['cost_7b_projected']:,} (projection)"]
        md.append("| " + " | ".join(cells) + " |")
    if priced:
        md += ["", f"Cost here: {len(s['rows'])} arms x seeds runs at this sweep's measured rate per run (training "
               f"fixed, generation and judging per prompt). The 7B column is a projection, not a measurement: "
               f"{projection.get('per_arm_gpu_hours')} GPU-hours per arm, assuming {projection.get('assumes')}."]
    return md


def sign_check_section(s: dict) -> list[str]:
    if not s["checks"]:
        return []
    md = ["", "### Positive control: the judged ranking against the data-level truth", "",
          "| A | B | scope | B − A judged | B − A agreement of training pairs with the truth | same sign |",
          "|---|---|---|---|---|---|"]
    return md + [f"| {c['a']} | {c['b']} | {c['scope']} | {c['metric_diff']:+.4f} | {c['agreement_diff']:+.4f} | "
                 f"{'no judged difference' if c['agrees'] is None else 'yes' if c['agrees'] else '**no**'} |"
                 for c in s["checks"]]


def arms_section(s: dict) -> list[str]:
    arm_keys, signals, metric = s["arm_keys"], s["signals"], s["metric"]
    length_cols = ["policy tokens", "reference tokens", "distinct-2"] if s["judged"] else []
    where = "over seeds x shared prompts" if any(r.get("prompts") for r in s["rows"]) else "over seeds"
    md = ["", f"## `{metric}` per arm (mean ± 95 % CI half-width {where})", "",
          "| " + " | ".join(arm_keys + ["n", metric] + length_cols + [f"eval {x} acc" for x in signals]) + " |",
          "|" + "---|" * (len(arm_keys) + 2 + len(length_cols) + len(signals))]
    for r in s["rows"]:
        cells = [str(r["arm"][k]) for k in arm_keys] + [str(r["n"]), _fmt(r["mean"], r["ci"])]
        if s["judged"]:
            cells += ["" if (v := _arm_mean(r["members"], f"generation/{k}")) is None else f"{v:.1f}" if "tokens" in k
                      else f"{v:.3f}" for k in ("policy_mean_tokens", "reference_mean_tokens", "policy_distinct_2")]
        cells += ["" if (m := cross_eval_mean(r, x, "rewards/accuracies")) is None else f"{m:.3f}" for x in signals]
        md.append("| " + " | ".join(cells) + " |")
    return md + ["", "The `eval <signal> acc` columns are the cross-eval matrix: every model scored on the same held-out "
                 "prompts labelled by each binarization (mean over seeds): a diagnostic, not the verdict.", ""]


def cross_eval_section(s: dict) -> list[str]:
    arm_keys, signals = s["arm_keys"], s["signals"]
    if not (s["rows"] and signals):
        return []
    md = ["### Cross-eval reward margins (mean over seeds)", "",
          "| " + " | ".join(arm_keys) + " | " + " | ".join(f"{x} margin" for x in signals) + " |",
          "|" + "---|" * (len(arm_keys) + len(signals))]
    for r in s["rows"]:
        means = [cross_eval_mean(r, x, "rewards/margins") for x in signals]
        md.append("| " + " | ".join(str(r["arm"][k]) for k in arm_keys) + " | "
                  + " | ".join("" if m is None else f"{m:.3f}" for m in means) + " |")
    return md + [""]


def differences_section(s: dict) -> list[str]:
    diffs = s["diffs"]
    if not diffs:
        return []
    md = ["## Paired differences (B − A, paired by every other swept key)", "",
          "| A | B | scope | seeds | paired runs | prompts | mean diff | 95 % CI | p | Holm-adjusted CI | verdict | "
          "effect size | detectable |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    md += [difference_line(d) for d in diffs]
    family = sum(d["pooled"] for d in diffs)
    return md + ["", f"Intervals: {' and '.join(sorted({d['method'] for d in diffs}))} (notus_lab/study/stats.py): seed "
                 "noise with seeds − 1 degrees of freedom (never below the residual's own part), the prompts' shared "
                 "lean with prompts − 1, contexts of one seed averaged first. Verdicts come only from the "
                 f"{family} pooled row{'s' if family != 1 else ''} (`all`, or one value of a key that changes the world "
                 "or the judge, which are never pooled): Holm's step-down procedure over their p-values keeps the "
                 "family-wise error at 0.05, and a row's adjusted CI is at its Holm step's alpha. Rows scoped to one "
                 "value of another key describe where a pooled difference lives and claim nothing. Effect size: the "
                 "mean difference over the per-prompt standard deviation (seed, prompt and residual components). "
                 "Detectable: the smallest difference this design finds with 80 % power at Holm's first step, from "
                 "the same interval.", ""]


def cost_section(s: dict) -> list[str]:
    """What the sweep cost, from the compute each run recorded."""
    c = s["cost"]
    if not c:
        return []
    stages = ", ".join(f"{k} {v:g} s" for k, v in c["stage_seconds"].items())
    return ["## Cost", "",
            f"{c['runs']} finished runs used **{c['total_device_hours']:.4g} {c['unit']}** in all "
            f"({c['per_run_device_hours']:.4g} per run; {', '.join(c['kinds'])}). Wall seconds by stage, summed "
            f"over runs: {stages}.", ""]


def code_versions_section(s: dict) -> list[str]:
    if len(s["codes"]) <= 1:
        return []
    md = ["## Code versions", "", "| code version (a hash of notus_lab's sources) | runs |", "|---|---|"]
    md += [f"| `{c[:12]}` | {len(names)}: {', '.join(f'`{n}`' for n in names[:4])}{' ...' if len(names) > 4 else ''} |"
           for c, names in sorted(s["codes"].items())]
    return md + [""]


def problems_section(s: dict) -> list[str]:
    problems = [r for r in s["runs"] if r["status"] != "finished"]
    if not problems:
        return []
    md = ["## Failed or unfinished runs", "", "| run | status | error |", "|---|---|---|"]
    md += [f"| `{r['name']}` | {r['status']} | {r.get('error', 'no metrics.json yet: rerun the sweep to resume it')} |"
           for r in problems]
    return md + [""]


def draw_figures(s: dict, out_dir: Path) -> list[str]:
    """forest.png (paired differences), arms.png and margins.png (per arm), curves.png (eval curves)."""
    rows, metric, plots = s["rows"], s["metric"], []
    if s["diffs"]:
        figures.forest(s["diffs"], metric, out_dir / "forest.png")
        plots.append("forest.png")
    if rows:
        figures.arms(rows, s["arm_keys"], metric, out_dir / "arms.png", own=True)
        plots.append("arms.png")
        margin = next((k for k in ("eval/truth/rewards/margins", metric.replace("accuracies", "margins"))
                       if k != metric and all(k in m["metrics"] for r in rows for m in r["members"])), None)
        if margin:
            figures.arms(rows, s["arm_keys"], margin, out_dir / "margins.png", own=False)
            plots.append("margins.png")
    curve_signal = "truth" if "truth" in s["signals"] else next(iter(s["signals"]), None)
    if curve_signal and figures.curves(s["finished"], curve_signal, out_dir / "curves.png"):
        plots.append("curves.png")
    return plots
