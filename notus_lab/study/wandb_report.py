"""The study on W&B: the sweep report logged as a run of its own (job_type=report) in the sweep's group,
and, online with wandb-workspaces installed, a saved W&B Report whose panels read the arms' runs.

Offline first: the report run's tables and images are files (`wandb sync` uploads them later)."""

from __future__ import annotations

from pathlib import Path

import yaml

from notus_lab.config.schema import WandbConfig
from notus_lab.core.tracking import start_wandb
from notus_lab.study.runs import SEED_KEYS, STRATEGY_KEY, generation_records, read_runs

SAMPLES_PER_ARM = 8


def study_settings(sweep_dir: Path) -> dict:
    """project, entity and group of the sweep's arms, from a run's saved config."""
    for config in sorted(Path(sweep_dir).glob("*/config.yaml")):
        cfg = yaml.safe_load(config.read_text()) or {}
        wandb_cfg = cfg.get("wandb", {})
        return {
            "project": wandb_cfg.get("project", "notus_lab"),
            "entity": wandb_cfg.get("entity"),
            "group": wandb_cfg.get("group") or cfg.get("sweep_name") or Path(sweep_dir).name,
        }
    return {"project": "notus_lab", "entity": None, "group": Path(sweep_dir).name}


def tables(summary: dict, runs: list[dict]) -> dict:
    """{name: (columns, rows)}: the arm table, the paired differences, the cross-eval matrix, and a sample
    of each arm's judged generations."""
    arm_keys = [k for k in (summary["arms"][0]["arm"] if summary["arms"] else {})]
    arms = (
        arm_keys + ["n", "mean", "ci_low", "ci_high", "flags"],
        [
            [a["arm"][k] for k in arm_keys] + [a["n"], a["mean"], *a["ci"], "; ".join(a["flags"])]
            for a in summary["arms"]
        ],
    )
    diffs = (
        [
            "a",
            "b",
            "scope",
            "seeds",
            "n",
            "prompts",
            "mean",
            "ci_low",
            "ci_high",
            "adjusted_low",
            "adjusted_high",
            "excludes_zero",
            "effect_size",
            "detectable",
        ],
        [
            [
                d["a"],
                d["b"],
                d["scope"],
                d["seeds"],
                d["n"],
                d.get("prompts"),
                d["mean"],
                *d["ci"],
                *d["adjusted_ci"],
                d["excludes_zero"],
                d.get("effect_size"),
                d.get("mde"),
            ]
            for d in summary["differences"]
        ],
    )
    finished, signals = [r for r in runs if r["status"] == "finished"], summary["signals"]
    cross = (
        ["run", STRATEGY_KEY] + signals,
        [
            [r["name"], r["overrides"].get(STRATEGY_KEY)]
            + [r["metrics"].get(f"eval/{s}/rewards/accuracies") for s in signals]
            for r in finished
        ],
    )
    samples = (
        ["run", STRATEGY_KEY, "prompt", "reference", "policy", "reference_score", "policy_score", "winner"],
        [
            [
                r["name"],
                r["overrides"].get(STRATEGY_KEY),
                g["prompt"],
                g["reference"],
                g["policy"],
                g["reference_score"],
                g["policy_score"],
                g["winner"],
            ]
            for r in finished
            for g in generation_records(r["dir"])[:SAMPLES_PER_ARM]
        ],
    )
    return {"arms": arms, "differences": diffs, "cross_eval": cross, "generations": samples}


def log_report(sweep_dir: Path, out_dir: Path, summary: dict, mode: str) -> str:
    """Log the report as a W&B run in the sweep's group; returns where its files are."""
    import wandb

    settings = study_settings(sweep_dir)
    runs = read_runs(sweep_dir)
    wandb_cfg = WandbConfig(mode=mode, project=settings["project"], entity=settings["entity"])
    run = start_wandb(
        wandb_cfg,
        Path(out_dir),
        {"metric": summary["metric"], "factors": summary["factors"]},
        [],
        settings["group"],
        job_type="report",
        name=f"report-{Path(sweep_dir).name}",
    )
    if run is None:
        return "not logged: W&B could not start (see the warning above)"
    payload = {name: wandb.Table(columns=columns, data=rows) for name, (columns, rows) in tables(summary, runs).items()}
    payload.update({f"figure_{Path(p).stem}": wandb.Image(str(out_dir / p)) for p in summary["plots"]})
    run.log(payload)
    run.summary.update(
        {"verdicts": "\n".join(summary["verdicts"]) or "no verdict", "design": summary.get("design") or ""}
    )
    if mode == "online":
        try:
            create_saved_report(report_spec(summary, settings))
        except ImportError:
            pass  # wandb-workspaces not installed: the report run is there all the same
    where = run.dir
    run.finish()
    return str(Path(where).parent)


def report_spec(summary: dict, settings: dict) -> dict:
    """The saved W&B Report as data: which panels, which metric keys, which runs (the sweep's group)."""
    as_config = lambda k: "config.data.strategy" if k == STRATEGY_KEY else f"config.{k}"  # noqa: E731  (a group: its option)
    groupby = [as_config(k) for k in summary["factors"] if k not in SEED_KEYS] or [as_config(STRATEGY_KEY)]
    signals = summary.get("signals") or []
    return {
        "project": settings["project"],
        "entity": settings["entity"],
        "title": f"{settings['group']}: {summary['metric']}",
        "description": "\n".join(summary["verdicts"]) or "No verdict (see the report run's tables).",
        "runset": {"filters": {"group": settings["group"], "job_type": "train"}, "groupby": groupby},
        "panels": [
            {
                "type": "bar",
                "title": "judged win rate by data x beta",
                "metrics": [summary["metric"]],
                "groupby": groupby,
            },
            {
                "type": "line",
                "title": "held-out loss by data (train.eval_steps)",
                "x": "train/global_step",
                "y": [f"eval/{s}_loss" for s in signals],
                "groupby": [as_config(STRATEGY_KEY)],
            },
            {
                "type": "line",
                "title": "training reward accuracy by data",
                "x": "train/global_step",
                "y": ["train/rewards/accuracies"],
                "groupby": [as_config(STRATEGY_KEY)],
            },
        ],
        "tables": ["arms", "differences", "cross_eval", "generations"],
    }


def create_saved_report(spec: dict) -> str:
    """Build the W&B Report from the spec with wandb-workspaces (online only)."""
    import wandb_workspaces.reports.v2 as wr

    def panel(p):
        if p["type"] == "bar":
            return wr.BarPlot(title=p["title"], metrics=p["metrics"], groupby=p["groupby"])
        return wr.LinePlot(title=p["title"], x=p["x"], y=p["y"], groupby=p["groupby"])

    runset = wr.Runset(
        project=spec["project"], entity=spec["entity"], filters=f"Group = '{spec['runset']['filters']['group']}'"
    )
    report = wr.Report(
        project=spec["project"],
        entity=spec["entity"],
        title=spec["title"],
        description=spec["description"],
        blocks=[wr.PanelGrid(runsets=[runset], panels=[panel(p) for p in spec["panels"]])],
    )
    report.save()
    return report.url
