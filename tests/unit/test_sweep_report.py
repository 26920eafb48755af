"""The report of a sweep: its statistics and its failures, on planted run dirs (no training)."""

import json
import math
from pathlib import Path

import pytest
import yaml

from notus_lab.core.intervals import t_interval
from notus_lab.study import findings as R
from tests.helpers import cli

# ---------------------------------------------------------------------------------------------
# Report statistics on planted sweeps: known answers, computed by hand


def plant(sweep_dir: Path, name: str, overrides: list[str], metrics: dict | None, error: str | None = None):
    run_dir = sweep_dir / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / "config.yaml").write_text("beta: 0.1\n")
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if error:
        (run_dir / "failed.json").write_text(json.dumps({"error": "OutOfMemoryError", "message": error}))


def planted_sweep(tmp_path, gap: float, noise: list[float], gap_noise=(0.01, -0.012, 0.004)):
    """Both strategies share each seed's noise; mean_rating's gap moves by `gap_noise` from seed to seed."""
    for beta in ("0.01", "0.1"):
        for seed, eps, wobble in zip((1, 2, 3), noise, gap_noise):
            for data, shift in (("critique", 0.0), ("mean_rating", gap + wobble)):
                acc = 0.7 + shift + eps + (0.01 if beta == "0.1" else 0)
                plant(
                    tmp_path,
                    f"{data}-{beta}-{seed}",
                    [f"data={data}", f"beta={beta}", f"train.seed={seed}"],
                    {"truth_accuracy": acc, "eval": {"truth": {"rewards/accuracies": acc, "rewards/margins": acc / 2}}},
                )
    return tmp_path


def test_t_interval_matches_a_hand_computation():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t(0.975, 2) x sd 1 / sqrt 3


def test_report_names_the_winner_when_the_ci_excludes_zero(tmp_path):
    # mean_rating is ~0.1 better in every (beta, seed) pair; seed noise is shared, so the pairing removes it
    out = R.write_report(planted_sweep(tmp_path, 0.1, [0.0, 0.03, -0.02]))
    assert out["verdicts"] and out["verdicts"][0].startswith("**mean_rating** beats **critique**")
    pooled = next(d for d in out["differences"] if d["scope"] == "all")
    assert pooled["n"] == 6 and pooled["mean"] == pytest.approx(0.1 + 0.002 / 3) and pooled["excludes_zero"]
    assert 0 < pooled["adjusted_ci"][0] < pooled["mean"] < pooled["adjusted_ci"][1]  # a real interval, not a point
    arm = next(a for a in out["arms"] if a["arm"] == {"beta": "0.1", "data": "mean_rating"})
    assert arm["n"] == 3 and arm["mean"] == pytest.approx(0.81 + 0.01 / 3 + 0.002 / 3)
    assert "**mean_rating** beats" in (tmp_path / "report.md").read_text()


def test_report_claims_no_winner_it_cannot_support(tmp_path):
    # no real gap: the paired differences are pure noise around zero
    sweep_dir = planted_sweep(tmp_path, 0.0, [0.0, 0.0, 0.0])
    for p in sweep_dir.glob("mean_rating-*"):  # per-pair noise of both signs
        m = json.loads((p / "metrics.json").read_text())
        m["truth_accuracy"] += 0.02 if p.name.endswith(("1", "3")) else -0.03
        (p / "metrics.json").write_text(json.dumps(m))
    out = R.write_report(sweep_dir)
    assert out["verdicts"] == []
    assert "No verdict" in (sweep_dir / "report.md").read_text()


def test_report_lists_failed_and_unfinished_runs(tmp_path):
    sweep_dir = planted_sweep(tmp_path, 0.1, [0.0, 0.01, 0.02])
    plant(sweep_dir, "oom", ["data=critique", "beta=0.5", "train.seed=1"], None, error="CUDA out of memory")
    plant(sweep_dir, "killed", ["data=critique", "beta=0.5", "train.seed=2"], None)
    out = R.write_report(sweep_dir)
    status = {r["name"]: r for r in out["runs"]}
    assert status["oom"]["status"] == "failed" and "out of memory" in status["oom"]["error"]
    assert status["killed"]["status"] == "unfinished"
    text = (sweep_dir / "report.md").read_text()
    assert "`oom` | failed | OutOfMemoryError: CUDA out of memory" in text and "`killed` | unfinished" in text


def test_a_sweep_where_nothing_finished_still_gets_a_report_of_what_failed(tmp_path):
    plant(tmp_path, "oom", ["data=critique", "train.seed=1"], None, error="CUDA out of memory")
    plant(tmp_path, "killed", ["data=mean_rating", "train.seed=1"], None)
    proc = cli("notus_lab.report", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (tmp_path / "report.md").read_text()
    assert "0 finished, 1 failed, 1 unfinished" in text and "`oom` | failed" in text and "`killed` | unfinished" in text


def test_the_rounds_table_shows_the_interval_each_decision_rests_on():
    from types import SimpleNamespace

    from notus_lab.study.render import rounds_section

    pair = {"a": "critique_fixed", "b": "mean_rating", "scope": "all", "mean": -0.0129, "alpha": 0.03, "reason": ""}
    state = {
        "settings": {"margin": 0.05, "alpha": 0.05, "spending": "obrien_fleming", "boundary": "joint",
                     "max_seeds": 6, "budget_hours": None},
        "rounds": [
            {"round": 1, "seeds": [1, 2, 3], "launched": ["x"] * 6, "device_hours": 3.0, "pairs": [
                {**pair, "interval": [-0.0527, 0.0269], "equivalence_interval": [-0.0461, 0.0203],
                 "decision": "equivalent"},
                {**pair, "b": "critique", "mean": 0.09, "interval": [0.061, 0.119],
                 "equivalence_interval": [0.066, 0.114], "decision": "b_wins"},
            ]},
        ],
    }  # fmt: skip
    text = "\n".join(rounds_section(SimpleNamespace(rounds=state)))
    assert "| interval the decision rests on |" in text
    assert "| equivalence bounds [-0.0461, +0.0203] |" in text and "-0.0527" not in text
    assert "| two-sided [+0.0610, +0.1190] |" in text and "+0.0660" not in text
