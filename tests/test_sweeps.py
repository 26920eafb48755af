"""Sweeps end to end: a real local multirun (parallel launcher) with a failing arm, W&B groups read
back from the offline run files, idempotent relaunch, and the report's statistics."""

import json
import math
from pathlib import Path

import pytest
import yaml

from notus_lab.study import report as R
from notus_lab.study.runs import read_runs
from notus_lab.study.stats import t_interval

from conftest import cli
from wandb_records import run_record, summary

TINY = ("data.world.rows=200", "train.max_steps=4", "train.logging_steps=2", "train.eval_steps=2", "hardware.eval_batch_size=128")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """2 strategies x 2 seeds on the world, plus the same arms on a file with no usable row (they fail)."""
    tmp = tmp_path_factory.mktemp("sweep")
    bad = tmp / "bad.jsonl"
    bad.write_text("\n".join(['{"instruction": "x"}', "not json", '{"completions": 3}'] * 4) + "\n")
    args = ("notus_lab", "--multirun", "hydra/launcher=parallel", "+experiment=critique_vs_rating",
            "data=critique,mean_rating", "train.seed=1,2", "beta=0.1", f"data.source=world,{bad}", "judge=none", *TINY,
            "sweep_name=test_sweep", f"hydra.sweep.dir={tmp / 'sweep'}")
    first = cli(*args)
    return tmp / "sweep", args, first


@pytest.mark.slow
def test_a_failed_arm_does_not_lose_the_others(sweep):
    sweep_dir, _, first = sweep
    assert first.returncode != 0  # the sweep says something failed...
    runs = read_runs(sweep_dir)
    assert len(runs) == 8
    finished = [r for r in runs if r["status"] == "finished"]
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(finished) == 4 and all(r["overrides"]["data.source"] == "world" for r in finished)
    assert len(failed) == 4 and all("no training pairs survived" in r["error"] for r in failed)
    for r in finished:  # ...and the others are complete
        assert (r["dir"] / "model" / "model.safetensors").exists()
        m = r["metrics"]
        assert m["train/steps"] == 4 and m["torch_threads"] == 1  # parallel jobs get one thread each
        # cross-eval matrix: every model scored under every binarization of the experiment + truth
        for signal in ("critique", "critique_fixed", "critique_curated", "mean_rating", "truth"):
            assert f"eval/{signal}/rewards/accuracies" in m


@pytest.mark.slow
def test_every_arm_logs_to_the_sweep_group_in_wandb(sweep):
    sweep_dir, _, _ = sweep
    ids = set()
    for run_dir in (r["dir"] for r in read_runs(sweep_dir) if r["status"] == "finished"):
        files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1, run_dir
        record = run_record(files[0])
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        assert record.run_group == "test_sweep" and record.job_type == "train"
        assert {o.lstrip("+") for o in overrides if not o.startswith("sweep_name")} <= set(record.tags)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert summary(files[0])["truth_accuracy"] == pytest.approx(metrics["truth_accuracy"])
        ids.add(record.run_id)
    assert len(ids) == 4


@pytest.mark.slow
def test_relaunching_the_sweep_reruns_only_what_is_missing_or_failed(sweep):
    sweep_dir, args, _ = sweep
    finished = {r["dir"]: (r["dir"] / "metrics.json").stat().st_mtime_ns
                for r in read_runs(sweep_dir) if r["status"] == "finished"}
    again = cli(*args)
    assert again.returncode != 0  # the bad-data arms were retried and failed again
    assert (again.stdout + again.stderr).count("run already finished") == 4
    for run_dir, mtime in finished.items():
        assert (run_dir / "metrics.json").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_report_lists_arms_failures_and_plots(sweep):
    sweep_dir, _, _ = sweep
    out = cli("notus_lab.report", str(sweep_dir))
    assert out.returncode == 0, out.stderr[-2000:]
    text = (sweep_dir / "report.md").read_text()
    assert "4 finished, 4 failed" in text and text.count("no training pairs survived") == 4
    margins = text.split("### Cross-eval reward margins")[1].split("\n\n")[1].splitlines()
    assert margins[0].endswith("| critique margin | critique_curated margin | critique_fixed margin | mean_rating margin "
                               "| truth margin |") and len(margins) == 2 + 2  # header, rule, one row per finished arm
    assert (sweep_dir / "arms.png").stat().st_size > 5000 and (sweep_dir / "margins.png").exists()
    assert (sweep_dir / "forest.png").stat().st_size > 5000 and (sweep_dir / "curves.png").exists()
    data = json.loads((sweep_dir / "report.json").read_text())
    assert data["metric"] == "truth_accuracy" and {tuple(sorted(a["arm"].items())) for a in data["arms"]} == {
        (("data", "critique"), ("data.source", "world")), (("data", "mean_rating"), ("data.source", "world"))}


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


def planted_sweep(tmp_path, gap: float, noise: list[float]):
    for beta in ("0.01", "0.1"):
        for seed, eps in zip((1, 2, 3), noise):
            for data, shift in (("critique", 0.0), ("mean_rating", gap)):
                acc = 0.7 + shift + eps + (0.01 if beta == "0.1" else 0)
                plant(tmp_path, f"{data}-{beta}-{seed}", [f"data={data}", f"beta={beta}", f"train.seed={seed}"],
                      {"truth_accuracy": acc, "eval": {"truth": {"rewards/accuracies": acc, "rewards/margins": acc / 2}}})
    return tmp_path


def test_t_interval_matches_a_hand_computation():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t(0.975, 2) x sd 1 / sqrt 3


def test_report_names_the_winner_when_the_ci_excludes_zero(tmp_path):
    # mean_rating is 0.1 better in every (beta, seed) pair; seed noise is shared, so the pairing removes it
    out = R.write_report(planted_sweep(tmp_path, 0.1, [0.0, 0.03, -0.02]))
    assert out["verdicts"] and out["verdicts"][0].startswith("**mean_rating** beats **critique**")
    pooled = next(d for d in out["differences"] if d["scope"] == "all")
    assert pooled["n"] == 6 and pooled["mean"] == pytest.approx(0.1) and pooled["excludes_zero"]
    arm = next(a for a in out["arms"] if a["arm"] == {"beta": "0.1", "data": "mean_rating"})
    assert arm["n"] == 3 and arm["mean"] == pytest.approx(0.81 + 0.01 / 3)
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


@pytest.mark.slow
def test_the_report_is_a_wandb_run_in_the_sweeps_group_with_its_tables_and_figures(sweep):
    from wandb_records import run_record

    sweep_dir, _, _ = sweep
    out = cli("notus_lab.report", str(sweep_dir), "--wandb", "offline")
    assert out.returncode == 0, out.stderr[-2000:]
    (run_dir,) = list((sweep_dir / "wandb").glob("offline-run-*"))
    record = run_record(next(run_dir.glob("run-*.wandb")))
    assert record.run_group == "test_sweep" and record.job_type == "report"
    media = run_dir / "files" / "media"
    tables = {p.name.rsplit("_", 2)[0]: json.loads(p.read_text()) for p in (media / "table").glob("*.table.json")}
    assert set(tables) == {"arms", "differences", "cross_eval", "generations"}
    assert len(tables["arms"]["data"]) == 2 and tables["arms"]["columns"][:2] == ["data", "data.source"]
    assert len(tables["cross_eval"]["data"]) == 4  # one row per finished run
    images = {p.name.rsplit("_", 2)[0] for p in (media / "images").glob("*.png")}
    assert {"figure_forest", "figure_arms", "figure_margins", "figure_curves"} <= images


@pytest.mark.slow
def test_the_saved_wandb_report_reads_metrics_the_arms_logged_and_only_the_sweeps_group(sweep):
    from notus_lab.study.wandb_report import report_spec, study_settings
    from wandb_records import history_keys, summary

    sweep_dir, _, _ = sweep
    cli("notus_lab.report", str(sweep_dir))
    spec = report_spec(json.loads((sweep_dir / "report.json").read_text()), study_settings(sweep_dir))
    assert spec["runset"]["filters"] == {"group": "test_sweep", "job_type": "train"}
    logged = set()
    for r in read_runs(sweep_dir):
        if r["status"] == "finished":
            (wb,) = (r["dir"] / "wandb").glob("offline-run-*/run-*.wandb")
            logged |= set(summary(wb)) | history_keys(wb)
    for panel in spec["panels"]:
        for key in panel.get("metrics", []) + panel.get("y", []) + [panel.get("x")] * ("x" in panel):
            assert key in logged, (panel["title"], key)
    assert spec["panels"][0]["groupby"] == ["config.data.strategy", "config.data.source"]
