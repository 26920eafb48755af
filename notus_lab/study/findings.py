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
import statistics
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

from notus_lab.config.derived import world_size
from notus_lab.config.options import hardware_profile, load_option
from notus_lab.core.errors import invalid
from notus_lab.study import figures, render
from notus_lab.study.cost import (
    ASSUMED_MFU,
    NOTUS_EPOCHS,
    NOTUS_MAX_LENGTH,
    NOTUS_PAIRS,
    design_cost,
    projected_arm_gpu_hours,
    recorded_mfu,
    sweep_cost,
)
from notus_lab.study.effects import effects
from notus_lab.study.quantized import quantization_rows
from notus_lab.study.result import Report
from notus_lab.study.rounds import load as load_rounds
from notus_lab.study.runs import (
    SEED_KEYS,
    STRATEGY_KEY,
    default_metric,
    factors,
    has,
    mean_of,
    per_prompt_outcomes,
    read_runs,
)
from notus_lab.study.stats import (
    arm_interval,
    design_line,
    paired_differences,
    plan,
    verdicts,
)

PROJECT_HARDWARE = "a100_80gb_x8"  # where --target-effect plans are priced at 7B scale
COLLAPSE_DISTINCT, COLLAPSE_WORD, LONGER = 0.5, 0.3, 1.2  # degeneration and length flags (issue-free defaults)


def arm_table(runs: list[dict], metric: str, arm_keys: list[str]) -> list[dict]:
    by_arm = defaultdict(list)
    for r in runs:
        if has(r, metric):
            by_arm[tuple(r["overrides"].get(k) for k in arm_keys)].append(r)
    rows = []
    for arm, members in sorted(by_arm.items(), key=lambda kv: tuple(map(str, kv[0]))):
        level = arm_interval(
            [m["metrics"][metric] for m in members], [per_prompt_outcomes(m["dir"], metric) for m in members]
        )
        rows.append(
            {"arm": dict(zip(arm_keys, arm)), "n": len(members), **level, "members": members, "flags": flags(members)}
        )
    return rows


def flags(members: list[dict]) -> list[str]:
    """Reward hacking in plain sight: answers that collapse, or win by getting longer."""
    g = lambda key: mean_of(members, f"generation/{key}")  # noqa: E731
    out = []
    if g("policy_distinct_2") is not None and g("policy_distinct_2") < COLLAPSE_DISTINCT * g("reference_distinct_2"):
        out.append(
            f"collapse: distinct-2 {g('policy_distinct_2'):.2f} vs the reference's {g('reference_distinct_2'):.2f}"
        )
    if g("policy_top_word_share") is not None and g("policy_top_word_share") > COLLAPSE_WORD:
        out.append(f"one word is {g('policy_top_word_share'):.0%} of the output")
    if (
        g("policy_mean_tokens")
        and g("reference_mean_tokens")
        and g("policy_mean_tokens") > LONGER * g("reference_mean_tokens")
    ):
        out.append(
            f"{g('policy_mean_tokens') / g('reference_mean_tokens') - 1:.0%} longer than the reference: "
            "check a length-controlled win rate"
        )
    return out


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
            if (
                r["status"] == "finished"
                and r.get("truth_agreement") is not None
                and all(r["overrides"].get(k) == v for k, v in within.items())
            ):
                agreement[r["overrides"].get(STRATEGY_KEY)].append(r["truth_agreement"])
        if d["a"] in agreement and d["b"] in agreement:
            data_diff = statistics.fmean(agreement[d["b"]]) - statistics.fmean(agreement[d["a"]])
            # only a judged difference the statistics support is a ranking to check
            agrees = ((d["mean"] > 0) == (data_diff > 0)) if d["excludes_zero"] else None
            out.append(
                {
                    "a": d["a"],
                    "b": d["b"],
                    "scope": d["scope"],
                    "metric_diff": d["mean"],
                    "agreement_diff": round(data_diff, 4),
                    "agrees": agrees,
                }
            )
    return out


def write_report(
    sweep_dir: Path,
    metric: str | None = None,
    out_dir: Path | None = None,
    target_effect: float | None = None,
    project_hardware: str = PROJECT_HARDWARE,
) -> dict:
    """report.md, report.json and the figures for one sweep dir; returns report.json's content."""
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir or sweep_dir)
    s = build(sweep_dir, metric, target_effect, project_hardware)
    out_dir.mkdir(parents=True, exist_ok=True)
    s.plots = figures.draw(s, out_dir)
    (out_dir / "report.md").write_text(render.markdown(s))
    summary = render.summary(s)
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def build(sweep_dir: Path, metric: str | None, target_effect: float | None, project_hardware: str) -> Report:
    """Every number the report writes, read from the sweep's run dirs."""
    runs = read_runs(sweep_dir)
    if not runs:
        raise invalid("sweep_dir", str(sweep_dir), "a directory of notus_lab run dirs (each with config.yaml)")
    state = load_rounds(sweep_dir)
    if state and state["rounds"]:  # a sequential study: its own arms, decided by its own metric
        names = {n for r in state["rounds"] for n in r["arms"]}
        runs = [r for r in runs if r["name"] in names] or runs
        metric = metric or state["rounds"][-1]["metric"]
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
    return Report(
        sweep_dir=sweep_dir,
        runs=runs,
        metric=metric,
        keys=keys,
        arm_keys=arm_keys,
        rows=rows,
        diffs=diffs,
        found=verdicts(diffs, metric),
        design=design_line(diffs),
        plan=needed,
        target_effect=target_effect,
        cost=cost,
        checks=sign_check(diffs, runs),
        codes=dict(codes),
        signals=sorted({k.split("/")[1] for r in finished for k in r["metrics"] if k.startswith("eval/")}),
        judged=any("generation/policy_mean_tokens" in r["metrics"] for r in finished),
        rounds=state,
        effects=effects(runs, metric, keys),
        quantized=quantization_rows(runs),
    )


def price_plan(needed: list[dict], cost: dict, arms: int, project_hardware: str) -> None:
    """Each design's cost: at this sweep's measured rate (its own device), and projected to 7B arms of the
    Notus recipe on `project_hardware` (FLOPs at an assumed MFU: a projection, never a measurement)."""

    hw = hardware_profile(project_hardware)
    shape = load_option("base", "zephyr_sft_full").base.shape  # a `@package _global_` option
    offloaded = OmegaConf.select(hw, "deepspeed.zero_optimization.offload_param.device") in ("cpu", "nvme")
    # an offloading profile runs as Notus did: at the MFU its recorded hours imply; the others at the assumed MFU
    recorded = recorded_mfu(shape.num_parameters)
    mfu = recorded if offloaded else ASSUMED_MFU
    why = (
        "what Notus's recorded ~96 GPU-hours a run imply with ZeRO-3 offload"
        if offloaded
        else f"assumed without offload; Notus's offloaded run implies ~{recorded:.0%}"
    )
    per_arm = (
        projected_arm_gpu_hours(shape.num_parameters, world_size(hw), hw.peak_tflops, mfu=mfu)
        if hw.peak_tflops
        else None
    )
    for p in needed:
        if p["prompts"] is None:
            p["cost"] = p["cost_7b_projected"] = None
            continue
        p["cost"] = float(f"{design_cost(cost, arms, p['seeds'], p['prompts']):.4g}")
        p["cost_7b_projected"] = round(arms * p["seeds"] * per_arm) if per_arm else None
    cost["projection"] = {
        "hardware": project_hardware,
        "per_arm_gpu_hours": round(per_arm, 1) if per_arm else None,
        "mfu": round(mfu, 3),
        "assumes": f"training only (generating and judging the prompts comes on top): full DPO "
        f"with a reference, {NOTUS_PAIRS:,} pairs (Notus v1's set less its 2,000 held "
        f"out) x {NOTUS_EPOCHS} epochs, 2 x {NOTUS_MAX_LENGTH} tokens per pair (an upper "
        f"bound), MFU {mfu:.0%} ({why})",
    }
