"""The report, rendered: report.md's sections and report.json from the `Report` that notus_lab/study/findings.py
computes (the figures: notus_lab/study/figures.py; W&B: notus_lab/study/wandb_report.py). Nothing here computes a
statistic: every number comes from the Report."""

from __future__ import annotations

import math

from notus_lab.study.benchmarks_table import benchmarks_section
from notus_lab.study.result import Report
from notus_lab.study.runs import mean_of


def quantized_section(s: Report) -> list[str]:
    """GGUF files against each run's own f16, pooled over the study's seed units x shared prompts."""
    if not s.quantized:
        return []
    md = [
        "## GGUF files (each run's quantized file against its own f16)",
        "",
        "Pooled over seed units x the prompts every run answered, with the crossed interval. A file type is flagged "
        "where Holm's step-down over the file types rejects an even match (0.5): quantizing models trained this way "
        "changes their answers' quality. Each run's own table is in its model card.",
        "",
        "| file type | runs (seed units) x prompts | mean MB | mean tokens/s | win rate vs f16 | 95 % CI "
        "| Holm-adjusted CI | flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in s.quantized:
        ci = (
            f"{r['ci'][0]:.4f} to {r['ci'][1]:.4f}"
            if r.get("ci")
            else "none: one seed unit"
            if r["seeds"] < 2
            else "none"
        )
        adjusted = f"{r['adjusted_ci'][0]:.4f} to {r['adjusted_ci'][1]:.4f}" if r.get("adjusted_ci") else "—"
        win = f"{r['win_rate']:.4f}" if "win_rate" in r else "—"
        md.append(
            f"| `{r['quantization']}` | {r['runs']} ({r['seeds']}) x {r['prompts']} | {r['mb']} | {r['tokens_per_s']} "
            f"| {win} | {ci} | {adjusted} | {'**yes**' if r['flagged'] else 'no'} |"
        )
    return md + [""]


def markdown(s: Report) -> str:
    md = (
        header(s)
        + verdict_section(s)
        + rounds_section(s)
        + effects_section(s)
        + plan_section(s)
        + sign_check_section(s)
        + arms_section(s)
        + benchmarks_section(s.rows)
        + quantized_section(s)
        + cross_eval_section(s)
        + differences_section(s)
        + cost_section(s)
        + code_versions_section(s)
        + problems_section(s)
    )
    md += [f"![{p}]({p})" for p in s.plots]
    return "\n".join(md) + "\n"


def summary(s: Report) -> dict:
    """report.json's content."""
    return {
        "sweep": str(s.sweep_dir),
        "metric": s.metric,
        "factors": s.keys,
        "signals": s.signals,
        "verdicts": s.found,
        "sign_check": s.checks,
        "design": s.design,
        "plan": s.plan,
        "cost": s.cost,
        "code_versions": {c: len(names) for c, names in s.codes.items()},
        "arms": [{k: v for k, v in r.items() if k != "members"} for r in s.rows],
        "differences": s.diffs,
        "runs": [{"name": r["name"], "status": r["status"], "error": r.get("error")} for r in s.runs],
        "rounds": s.rounds,
        "effects": s.effects,
        "gguf": s.quantized,
        "plots": s.plots,
    }


def cross_eval_mean(row: dict, signal: str, key: str):
    """Mean over an arm's seeds of one held-out metric under one eval signal (None if no run has it)."""
    return mean_of(row["members"], f"eval/{signal}/{key}")


def _fmt(mean: float, ci) -> str:
    if any(math.isnan(x) for x in ci):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {(ci[1] - ci[0]) / 2:.4f}"


def _ci(ci) -> str:
    return "n/a" if ci[0] is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def difference_line(d: dict) -> str:
    size = "" if d.get("effect_size") is None else f"{d['effect_size']:+.2f}"
    mde = "" if d.get("mde") is None else f"{d['mde']:.4f}"
    verdict = ("yes" if d["excludes_zero"] else "no") if d["pooled"] else "— (describes a pooled row)"
    p = "" if d.get("p_value") is None else f"{d['p_value']:.2g}"
    return (
        f"| {d['a']} | {d['b']} | {d['scope']} | {d['seeds']} | {d['n']} | {d.get('prompts', '')} | "
        f"{d['mean']:+.4f} | {_ci(d['ci'])} | {p} | {_ci(d['adjusted_ci'])} | {verdict} | {size} | {mde} |"
    )


def header(s: Report) -> list[str]:
    runs = s.runs
    return [
        f"# Sweep report: `{s.name}`",
        "",
        f"{len(runs)} runs: {len(s.finished)} finished, {sum(r['status'] == 'failed' for r in runs)} failed, "
        f"{sum(r['status'] == 'unfinished' for r in runs)} unfinished. The metric that decides: `{s.metric}`. "
        f"Swept: {', '.join(f'`{k}`' for k in s.keys) or 'nothing'}.",
        "",
    ]


def verdict_section(s: Report) -> list[str]:
    md = ["## Verdict", ""]
    if len(s.codes) > 1:
        md += [
            f"**Runs from {len(s.codes)} code versions**: differences between arms may be differences of code "
            "(see the table at the end).",
            "",
        ]
    if s.rounds and s.rounds["rounds"]:  # a sequential study: its looks decide, at the alpha each one spent
        state, last = s.rounds, s.rounds["rounds"][-1]
        outcome = state["outcome"] or "running"
        md += [
            f"A sequential study (hydra/sweeper=sequential), **{outcome}** after {len(state['rounds'])} round(s) "
            f"and {len(last['seeds'])} seeds; margin ±{state['settings']['margin']:g} on `{last['metric']}`:",
            "",
        ]
        md += [f"- {v}" for v in sequential_verdicts(state)]
        missing = sorted({n for r in state["rounds"] for n in r["missing"]})
        if missing:
            md += [
                "",
                f"{len(missing)} arm(s) failed twice and are missing: the statistics use the seeds each pair "
                f"has (an unbalanced design): {', '.join(f'`{n}`' for n in missing[:6])}",
            ]
        md += [
            "",
            "The paired differences further down are the fixed-design view of the same runs: they ignore that "
            "the study looked after every round, so their verdicts are not the study's.",
        ]
    elif s.found:
        md += [f"- {v}" for v in s.found]
    elif not decided_effects(s):
        md.append(
            "No verdict: no difference between strategies has a Holm-adjusted 95 % CI that excludes 0 "
            "(more seeds or prompts, or the strategies really are this close)."
        )
    else:
        md.append("No difference between strategies has a Holm-adjusted 95 % CI that excludes 0; the factorial does:")
    effect_lines = decided_effects(s)
    if effect_lines:
        if s.found or (s.rounds and s.rounds["rounds"]):
            md += ["", "Factorial effects decided (see Effects):"]
        md += [f"- {v}" for v in effect_lines]
    flagged = [(r, f) for r in s.rows for f in r["flags"]]
    if flagged:
        md += ["", "**Flags** (reward hacking in plain sight):"]
        md += [f"- {', '.join(f'{k}={v}' for k, v in r['arm'].items())}: {f}" for r, f in flagged]
    if s.design:
        md += ["", s.design]
    return md


def sequential_verdicts(state: dict | None) -> list[str]:
    """What the study concluded, one line per pair, for every outcome."""
    if not state or not state["rounds"]:
        return []
    margin, last = state["settings"]["margin"], state["rounds"][-1]
    lines = [
        f"**{u['strategy']}**{'' if u['scope'] == 'all' else ' at ' + u['scope']} was not measured: {u['reason']}"
        + (" (given up: fix the cause, then a new sweep_name)" if u["given_up"] else "")
        for u in last.get("unmeasured", [])
    ]
    if not last["pairs"]:
        lines.append("no pair of strategies was measured, so nothing is decided")
    for r in last["pairs"]:
        where = "" if r["scope"] == "all" else f" at {r['scope']}"
        interval = "" if r["interval"] is None else f" [{r['interval'][0]:+.4f}, {r['interval'][1]:+.4f}]"
        if r["decision"] in ("a_wins", "b_wins"):
            win, lose = (r["b"], r["a"]) if r["decision"] == "b_wins" else (r["a"], r["b"])
            lines.append(
                f"**{win}** beats **{lose}**{where} by {abs(r['mean']):.4f} (B − A{interval}, alpha "
                f"{r['alpha']:.2g} at that look, {r['seeds']} seeds)"
            )
        elif r["decision"] == "equivalent":
            lines.append(
                f"**{r['a']}** and **{r['b']}**{where} are equivalent within ±{margin:g} (B − A = "
                f"{r['mean']:+.4f}; {r['reason']})"
            )
        elif r["decision"] == "futile":
            lines.append(f"**{r['a']}** vs **{r['b']}**{where}: futile: {r['reason']}")
        elif r["decision"] == "dropped":
            lines.append(f"**{r['a']}** vs **{r['b']}**{where}: not decided, {r['reason']}")
        else:
            why = {"budget": "the budget", "max_seeds": "max_seeds"}.get(state["outcome"], "this round")
            lines.append(
                f"**{r['a']}** vs **{r['b']}**{where}: undecided at {why} (B − A = {r['mean']:+.4f}"
                f"{interval}; a difference of about {r.get('detectable', float('nan')):.4f} was detectable)"
            )
    return lines


def rests_on(p: dict) -> str:
    """The interval a pair's decision rests on, labelled: the equivalence bounds for "equivalent" (two one-sided
    tests: the 1 − 2 alpha interval inside ±margin), else the two-sided interval."""
    eq = p.get("equivalence_interval")
    if p["decision"] == "equivalent" and eq is not None:
        return f"equivalence bounds [{eq[0]:+.4f}, {eq[1]:+.4f}]"
    if p["interval"] is None:
        return ""
    return f"two-sided [{p['interval'][0]:+.4f}, {p['interval'][1]:+.4f}]"


def rounds_section(s: Report) -> list[str]:
    """Per round: the seeds, the arms launched, each pair's interval and alpha, the decision, the cost so far."""
    if not (s.rounds and s.rounds["rounds"]):
        return []
    settings = s.rounds["settings"]
    budget = "" if settings["budget_hours"] is None else f", budget {settings['budget_hours']:g} device-h"
    md = [
        "",
        "## Rounds",
        "",
        f"Margin ±{settings['margin']:g}, alpha {settings['alpha']} over every look and pair "
        f"({settings['spending'].replace('_', '-')} spending, {settings['boundary']} boundaries), at most "
        f"{settings['max_seeds']} seeds{budget} "
        "(notus_lab/study/sequential.py).",
        "",
        "The interval column is the one each decision rests on: for `equivalent`, the equivalence bounds "
        "(the two one-sided tests' interval, inside ±margin); otherwise the two-sided interval of B − A.",
        "",
        "| round | seeds | arms launched | A | B | scope | B − A | interval the decision rests on | alpha | "
        "decision | why "
        "| device-h so far |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s.rounds["rounds"]:
        head = [str(r["round"]), ",".join(map(str, r["seeds"])), str(len(r["launched"]))]
        for i, p in enumerate(r["pairs"] or [{}]):
            cells = head if i == 0 else ["", "", ""]
            if not p:
                md.append(
                    "| "
                    + " | ".join(
                        cells + ["", "", "", "", "", "", "no pair has 2 finished seeds", "", f"{r['device_hours']:.3g}"]
                    )
                    + " |"
                )
                continue
            interval = rests_on(p)
            carried = " (earlier)" if p.get("carried") else ""
            md.append(
                "| "
                + " | ".join(
                    cells
                    + [
                        p["a"],
                        p["b"],
                        p["scope"],
                        f"{p['mean']:+.4f}",
                        interval,
                        f"{p['alpha']:.2g}",
                        p["decision"] + carried,
                        p["reason"],
                        f"{r['device_hours']:.3g}" if i == 0 else "",
                    ]
                )
                + " |"
            )
    return md + [""]


def decided_effects(s: Report) -> list[str]:
    """One verdict line per decided factorial effect (its Bonferroni-adjusted CI excludes 0)."""
    e = s.effects
    if not e or not e["rows"]:
        return []
    caveat = " (fixed-design: the study looked after every round)" if s.rounds and s.rounds["rounds"] else ""
    return [
        f"**{r['factor']}**: {r['contrast'][1]} − {r['contrast'][0]} = {r['mean']:+.4f}, adjusted CI "
        f"{_ci(r['adjusted_ci'])} on {r['seeds']} seeds{caveat}"
        for r in e["rows"]
        if r["decided"]
    ]


def effects_section(s: Report) -> list[str]:
    """What each data knob does: main effects and two-way interactions, and the published corners' decomposition."""
    e = s.effects
    if not e:
        return []
    md = ["", "## Effects", ""]
    sequential = bool(s.rounds and s.rounds["rounds"])
    if sequential:
        md += [
            "Fixed-design view (descriptive): these intervals ignore that the sequential study looked after every "
            "round, so a decided row here is not the study's decision; the study's decisions are in Rounds.",
            "",
        ]
    missing = e.get("missing") or []
    gaps = (
        [
            f"Missing cells ({len(missing)}): {'; '.join(missing)}. Each effect uses the seeds at which every cell "
            "it weighs has a finished arm (its seeds column); an effect that weighs a cell with no arm at all is "
            "left out.",
            "",
        ]
        if missing
        else []
    )
    if not e["rows"]:
        return md + gaps + [f"No effects: {e['note']}.", ""]
    md += (
        [
            f"The sweep crosses {', '.join(f'`{f}`' for f in e['factors'])}: each effect is high − low, averaged over "
            f"the other factors' cells, on up to {e['seeds']} seeds"
            f"{' x the shared prompts' if e['per_prompt'] else ''} "
            f"(notus_lab/study/effects.py). An interaction A x B is half of (A's effect at B's high level − at its low "
            f"level). Adjusted: Bonferroni over the {len(e['rows'])} effects.",
            "",
        ]
        + gaps
        + [
            "| factor | low | high | effect | seeds | 95 % CI | adjusted CI | decided |",
            "|---|---|---|---|---|---|---|---|",
        ]
    )
    md += [
        f"| {r['factor']} | {r['contrast'][0]} | {r['contrast'][1]} | {r['mean']:+.4f} | {r['seeds']} | "
        f"{_ci(r['ci'])} | {_ci(r['adjusted_ci'])} | "
        f"{('**yes**' + (' (descriptive)' if sequential else '')) if r['decided'] else 'no'} |"
        for r in e["rows"]
    ]
    if e.get("decomposition_note"):
        md += ["", e["decomposition_note"][0].upper() + e["decomposition_note"][1:] + "."]
    d = e.get("decomposition")
    if d:
        parts = []
        for p in d["parts"][:-1]:
            if p["ci"] is None:
                parts.append(f"{p['part']} {p['mean']:+.4f} ({p['note']})")
            else:
                what = f" ({p['from']} → {p['to']})" if "from" in p else ""
                parts.append(f"{p['part']}{what} {p['mean']:+.4f} {_ci(p['ci'])}")
        total = d["parts"][-1]
        md += [
            "",
            f"**Decomposition**: {d['to']} − {d['from']} = {total['mean']:+.4f} {_ci(total['ci'])} = "
            + " + ".join(parts)
            + ".",
        ]
    return md + [""]


def plan_section(s: Report) -> list[str]:
    if not s.plan:
        return []
    cost = s.cost or {}
    projection = cost.get("projection") or {}
    priced = "cost" in s.plan[0]
    md = ["", f"To detect a difference of {s.target_effect:g} (80 % power, same adjustment):", ""]
    md += [
        "| seeds | shared prompts (every seed answers the same) |"
        + (
            f" cost here ({cost['unit']}) | projected 7B cost on {projection.get('hardware')} (GPU-hours) |"
            if priced
            else ""
        ),
        "|---|---|" + ("---|---|" if priced else ""),
    ]
    for p in s.plan:
        cells = [
            str(p["seeds"]),
            str(p["prompts"]) if p["prompts"] is not None else "not reachable: seed noise alone is larger",
        ]
        if priced:
            cells += [
                "" if p["cost"] is None else f"{p['cost']:.3g}",
                "" if p["cost_7b_projected"] is None else f"{p['cost_7b_projected']:,} (projection)",
            ]
        md.append("| " + " | ".join(cells) + " |")
    if priced:
        md += [
            "",
            f"Cost here: {len(s.rows)} arms x seeds runs at this sweep's measured rate per run (training "
            f"fixed, generation and judging per prompt). The 7B column is a projection, not a measurement: "
            f"{projection.get('per_arm_gpu_hours')} GPU-hours per arm, assuming {projection.get('assumes')}.",
        ]
    return md


def sign_check_section(s: Report) -> list[str]:
    if not s.checks:
        return []
    md = [
        "",
        "### Positive control: the judged ranking against the data-level truth",
        "",
        "| A | B | scope | B − A judged | B − A agreement of training pairs with the truth | same sign |",
        "|---|---|---|---|---|---|",
    ]
    return md + [
        f"| {c['a']} | {c['b']} | {c['scope']} | {c['metric_diff']:+.4f} | {c['agreement_diff']:+.4f} | "
        f"{'no judged difference' if c['agrees'] is None else 'yes' if c['agrees'] else '**no**'} |"
        for c in s.checks
    ]


def arms_section(s: Report) -> list[str]:
    arm_keys, signals, metric = s.arm_keys, s.signals, s.metric
    length_cols = ["policy tokens", "reference tokens", "distinct-2"] if s.judged else []
    where = "over seeds x shared prompts" if any(r.get("prompts") for r in s.rows) else "over seeds"
    md = [
        "",
        f"## `{metric}` per arm (mean ± 95 % CI half-width {where})",
        "",
        "| " + " | ".join(arm_keys + ["n", metric] + length_cols + [f"eval {x} acc" for x in signals]) + " |",
        "|" + "---|" * (len(arm_keys) + 2 + len(length_cols) + len(signals)),
    ]
    for r in s.rows:
        cells = [str(r["arm"][k]) for k in arm_keys] + [str(r["n"]), _fmt(r["mean"], r["ci"])]
        if s.judged:
            cells += [
                ""
                if (v := mean_of(r["members"], f"generation/{k}")) is None
                else f"{v:.1f}"
                if "tokens" in k
                else f"{v:.3f}"
                for k in ("policy_mean_tokens", "reference_mean_tokens", "policy_distinct_2")
            ]
        cells += ["" if (m := cross_eval_mean(r, x, "rewards/accuracies")) is None else f"{m:.3f}" for x in signals]
        md.append("| " + " | ".join(cells) + " |")
    return md + [
        "",
        "The `eval <signal> acc` columns are the cross-eval matrix: every model scored on the same held-out "
        "prompts labelled by each binarization (mean over seeds): a diagnostic, not the verdict.",
        "",
    ]


def cross_eval_section(s: Report) -> list[str]:
    arm_keys, signals = s.arm_keys, s.signals
    if not (s.rows and signals):
        return []
    md = [
        "### Cross-eval reward margins (mean over seeds)",
        "",
        "| " + " | ".join(arm_keys) + " | " + " | ".join(f"{x} margin" for x in signals) + " |",
        "|" + "---|" * (len(arm_keys) + len(signals)),
    ]
    for r in s.rows:
        means = [cross_eval_mean(r, x, "rewards/margins") for x in signals]
        md.append(
            "| "
            + " | ".join(str(r["arm"][k]) for k in arm_keys)
            + " | "
            + " | ".join("" if m is None else f"{m:.3f}" for m in means)
            + " |"
        )
    return md + [""]


def differences_section(s: Report) -> list[str]:
    diffs = s.diffs
    if not diffs:
        return []
    md = [
        "## Paired differences (B − A, paired by every other swept key)",
        "",
        "| A | B | scope | seeds | paired runs | prompts | mean diff | 95 % CI | p | Holm-adjusted CI | verdict | "
        "effect size | detectable |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    md += [difference_line(d) for d in diffs]
    family = sum(d["pooled"] for d in diffs)
    return md + [
        "",
        f"Intervals: {' and '.join(sorted({d['method'] for d in diffs}))} (notus_lab/study/stats.py): seed "
        "noise with seeds − 1 degrees of freedom (never below the residual's own part), the prompts' shared "
        "lean with prompts − 1, contexts of one seed averaged first. Verdicts come only from the "
        f"{family} pooled row{'s' if family != 1 else ''} (`all`, or one value of a key that changes the world "
        "or the judge, which are never pooled): Holm's step-down procedure over their p-values keeps the "
        "family-wise error at 0.05, and a row's adjusted CI is at its Holm step's alpha. Rows scoped to one "
        "value of another key describe where a pooled difference lives and claim nothing. Effect size: the "
        "mean difference over the per-prompt standard deviation (seed, prompt and residual components). "
        "Detectable: the smallest difference this design finds with 80 % power at Holm's first step, from "
        "the same interval.",
        "",
    ]


def cost_section(s: Report) -> list[str]:
    """What the sweep cost, from the compute each run recorded."""
    c = s.cost
    if not c:
        return []
    stages = ", ".join(f"{k} {v:g} s" for k, v in c["stage_seconds"].items())
    return [
        "## Cost",
        "",
        f"{c['runs']} finished runs used **{c['total_device_hours']:.4g} {c['unit']}** in all "
        f"({c['per_run_device_hours']:.4g} per run; {', '.join(c['kinds'])}). Wall seconds by stage, summed "
        f"over runs: {stages}.",
        "",
    ]


def code_versions_section(s: Report) -> list[str]:
    if len(s.codes) <= 1:
        return []
    md = ["## Code versions", "", "| code version (a hash of notus_lab's sources) | runs |", "|---|---|"]
    md += [
        f"| `{c[:12]}` | {len(names)}: {', '.join(f'`{n}`' for n in names[:4])}{' ...' if len(names) > 4 else ''} |"
        for c, names in sorted(s.codes.items())
    ]
    return md + [""]


def problems_section(s: Report) -> list[str]:
    problems = [r for r in s.runs if r["status"] != "finished"]
    if not problems:
        return []
    md = ["## Failed or unfinished runs", "", "| run | status | error |", "|---|---|---|"]
    md += [
        f"| `{r['name']}` | {r['status']} | {r.get('error', 'no metrics.json yet: rerun the sweep to resume it')} |"
        for r in problems
    ]
    return md + [""]
