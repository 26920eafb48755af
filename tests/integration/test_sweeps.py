"""Sweeps end to end: a real local multirun (parallel launcher) with a failing arm, W&B groups read
back from the offline run files, idempotent relaunch, and the report of the real sweep."""

import json

import pytest
import yaml

from notus_lab.study.runs import read_runs
from tests.helpers import cli
from tests.wandb_records import run_record, summary

pytestmark = pytest.mark.slow

TINY = (
    "data.world.rows=200",
    "train.max_steps=4",
    "train.logging_steps=2",
    "train.eval_steps=2",
    "hardware.eval_batch_size=128",
)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """2 strategies x 2 seeds on the world, plus the same arms on a file with no usable row (they fail)."""
    tmp = tmp_path_factory.mktemp("sweep")
    bad = tmp / "bad.jsonl"
    bad.write_text("\n".join(['{"instruction": "x"}', "not json", '{"completions": 3}'] * 4) + "\n")
    args = (
        "notus_lab",
        "--multirun",
        "hydra/launcher=parallel",
        "+experiment=critique_vs_rating",
        "data=critique,mean_rating",
        "train.seed=1,2",
        "beta=0.1",
        f"data.source=world,{bad}",
        "judge=none",
        *TINY,
        "sweep_name=test_sweep",
        f"hydra.sweep.dir={tmp / 'sweep'}",
    )
    first = cli(*args)
    return tmp / "sweep", args, first


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


def test_the_console_is_one_line_per_arm_and_ends_with_the_sweep_dir_and_the_next_command(sweep):
    """No launcher's `#k : overrides` lines, no "Error executing job" traceback: a failed arm is one line naming its
    failed.json, and the end says where the sweep is and what to run next."""
    sweep_dir, _, first = sweep
    lines = [line for line in first.stdout.splitlines() if line.strip()]
    assert "Traceback" not in first.stdout + first.stderr and "Error executing job" not in first.stdout + first.stderr
    assert not any(" : " in line and line.lstrip().startswith("#") for line in lines)
    arms = [line for line in lines if line.startswith("[")]
    assert len(arms) == 8 and sum("failed: " in line and "failed.json" in line for line in arms) == 4
    assert lines[-2] == f"sweep {sweep_dir}: 4 of 8 arm(s) finished, 4 failed (their failed.json says why)"
    assert lines[-1] == f"  next: python -m notus_lab.report {sweep_dir}"


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


def test_relaunching_the_sweep_reruns_only_what_is_missing_or_failed(sweep):
    sweep_dir, args, _ = sweep
    finished = {
        r["dir"]: (r["dir"] / "metrics.json").stat().st_mtime_ns
        for r in read_runs(sweep_dir)
        if r["status"] == "finished"
    }
    again = cli(*args)
    assert again.returncode != 0  # the bad-data arms were retried and failed again
    assert (again.stdout + again.stderr).count("run already finished") == 4
    for run_dir, mtime in finished.items():
        assert (run_dir / "metrics.json").stat().st_mtime_ns == mtime


def test_report_lists_arms_failures_and_plots(sweep):
    sweep_dir, _, _ = sweep
    out = cli("notus_lab.report", str(sweep_dir))
    assert out.returncode == 0, out.stderr[-2000:]
    text = (sweep_dir / "report.md").read_text()
    assert "4 finished, 4 failed" in text and text.count("no training pairs survived") == 4
    margins = text.split("### Cross-eval reward margins")[1].split("\n\n")[1].splitlines()
    assert (
        margins[0].endswith(
            "| critique margin | critique_curated margin | critique_fixed margin | mean_rating margin | truth margin |"
        )
        and len(margins) == 2 + 2
    )  # header, rule, one row per finished arm
    assert (sweep_dir / "arms.png").stat().st_size > 5000 and (sweep_dir / "margins.png").exists()
    assert (sweep_dir / "forest.png").stat().st_size > 5000 and (sweep_dir / "curves.png").exists()
    data = json.loads((sweep_dir / "report.json").read_text())
    assert data["metric"] == "truth_accuracy" and {tuple(sorted(a["arm"].items())) for a in data["arms"]} == {
        (("data", "critique"), ("data.source", "world")),
        (("data", "mean_rating"), ("data.source", "world")),
    }


def test_the_report_is_a_wandb_run_in_the_sweeps_group_with_its_tables_and_figures(sweep):
    from tests.wandb_records import run_record

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


def test_the_saved_wandb_report_reads_metrics_the_arms_logged_and_only_the_sweeps_group(sweep):
    from notus_lab.study.wandb_report import report_spec, study_settings
    from tests.wandb_records import history_keys, summary

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
