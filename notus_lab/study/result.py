"""The report as data: what notus_lab/study/findings.py computes from a sweep's run dirs, and what render.py,
figures.py and wandb_report.py turn into report.md, report.json, plots and a W&B run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Report:
    """Every number a sweep's report shows, computed from its run dirs (and rounds.json for a sequential study);
    notus_lab/study/render.py turns it into report.md and report.json, figures.py into plots, wandb_report.py
    into a W&B run."""

    sweep_dir: Path
    runs: list[dict]
    metric: str
    keys: list[str]  # swept keys
    arm_keys: list[str]  # swept keys but the seed: an arm is one setting of these
    rows: list[dict]  # the arm table
    diffs: list[dict]  # paired differences (stats.compare)
    found: list[str]  # the fixed design's verdict lines
    design: str | None  # what the pooled rows' design can detect
    plan: list[dict]  # seeds x prompts for --target-effect, priced
    target_effect: float | None
    cost: dict | None  # what the sweep cost (study/cost.py)
    checks: list[dict]  # positive control in the bundled world
    codes: dict  # code version -> run names
    signals: list[str]  # eval signals the runs were scored under
    judged: bool  # the runs have judged generations
    rounds: dict | None = None  # a sequential study's rounds.json
    effects: dict | None = None  # factorial effects of the data knobs (study/effects.py)
    quantized: list[dict] = field(default_factory=list)  # GGUF files against each run's f16 (study/quantized.py)
    plots: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.sweep_dir.name

    @property
    def finished(self) -> list[dict]:
        return [r for r in self.runs if r["status"] == "finished"]
