"""Real lm-evaluation-harness on the bundled world's own tasks (shipped YAMLs, TaskManager(include_path=...)):
on the tiny base, and on a trained LoRA run (its adapter applied as trained) through notus_lab.evaluate."""

import json

import pytest

from tests.helpers import QUICK, compose

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.slow

FAKE_HF_TOKEN = "hf" + "_" + "FAKE" * 7 + "654321"


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    from notus_lab.train.pipeline import run

    run_dir = tmp_path_factory.mktemp("sweep") / "lora"
    run(compose("model=lora", *QUICK), run_dir)
    return run_dir


def test_the_tiny_base_through_lm_eval_on_the_world_tasks(tmp_path, monkeypatch):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from notus_lab.judging.lm_eval_run import world_task_dir
    from notus_lab.models.loading import base_path

    cfg = compose(*QUICK)
    tm = TaskManager(include_path=str(world_task_dir(cfg, tmp_path)))
    lm = HFLM(pretrained=base_path(cfg.base), device="cpu", batch_size=8)
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=["world_choice", "world_truth"],
        limit=20,
        task_manager=tm,
        log_samples=True,
        apply_chat_template=True,
        bootstrap_iters=0,
    )
    assert 0.0 <= out["results"]["world_choice"]["acc,none"] <= 1.0
    assert 0.0 <= out["results"]["world_truth"]["truth,none"] <= 1.0
    assert len(out["samples"]["world_choice"]) == 20


def test_evaluate_a_lora_run_records_results_samples_versions_and_compute(lora_run, monkeypatch, capsys):
    from notus_lab import evaluate
    from notus_lab.core.run_dir import RunDir
    from notus_lab.study.runs import per_prompt_outcomes, read_runs

    monkeypatch.setenv("HF_TOKEN", FAKE_HF_TOKEN)
    evaluate.main([str(lora_run), "--tasks", "world_choice,world_truth", "--limit", "30"])
    out = capsys.readouterr().out
    assert "world_choice (0-shot, n=30" in out and "world_truth" in out
    rd = RunDir(lora_run)
    results = json.loads(rd.lm_eval.read_text())
    assert results["adapter"] is True and results["lm_eval_version"].startswith("0.4")
    assert results["tasks"]["world_choice"]["settings"] == {
        "shots": 0,
        "limit": 30,
        "apply_chat_template": True,
        "fewshot_as_multiturn": True,
    }
    assert results["tasks"]["world_choice"]["version"] == 1.0
    assert set(results["tasks"]["world_choice"]["metrics"]) >= {"acc", "acc_stderr", "acc_norm"}
    assert results["compute"]["device_hours"] > 0
    samples = rd.lm_eval_samples.read_text().splitlines()
    assert len(samples) == 60 and all(json.loads(s)["prompt_hash"] for s in samples)
    for p in (rd.lm_eval, rd.lm_eval_samples):
        assert FAKE_HF_TOKEN not in p.read_text()
    # idempotent: the same settings are not rerun
    before = rd.lm_eval.stat().st_mtime_ns
    evaluate.ensure_evaluated(lora_run, "world_choice", limit=30)
    assert rd.lm_eval.stat().st_mtime_ns == before
    # the report reads it as a metric and per question
    (run,) = read_runs(lora_run.parent)
    assert 0 <= run["metrics"]["lm_eval/world_choice/acc"] <= 1
    per = per_prompt_outcomes(lora_run, "lm_eval/world_truth/truth")
    assert len(per) == 30 and all(k.startswith("world_truth:") for k in per)
