"""The speed scripts run here on CPU (tiny shapes) and print what benchmarks/README.md reports.
They are smoke tests of the scripts, not speed assertions: the numbers live in benchmarks/."""

import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # trains or builds models: the full suite, not the fast tier


def test_mfu_benchmark_measures_every_mode_with_and_without_precomputed_reference(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "dpo_mfu.py"),
            "--shape",
            "tiny",
            "--length",
            "32",
            "--steps",
            "1",
            "--modes",
            "lora",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = re.findall(
        r"^\| (full|lora) \| (no|yes) \| [\d.]+ M \| (\d+) \| [\d.]+ \| ([\d.]+)% \| ([\d.]+) \|$", out.stdout, re.M
    )
    assert {(mode, pre) for mode, pre, *_ in rows} == {("lora", "no"), ("lora", "yes")}
    assert all(int(tps) > 0 and 0 < float(mfu) <= 100 and float(mem) > 0 for *_, tps, mfu, mem in rows)
    assert "matmul peak" in out.stdout  # (the full mode runs in the GPU check's dry run below)


def test_sweep_reuse_benchmark_times_both_sweeps_against_independent_runs(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "sweep_reuse.py"),
            "--rounds",
            "1",
            "--betas",
            "0.01,0.1",
            "data.world.rows=200",
            "train.max_steps=2",
            "eval.signals=[]",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    arms = re.findall(r"^\| 1 \| beta=([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out.stdout, re.M)
    assert [beta for beta, *_ in arms] == ["0.01", "0.1"]
    assert all(float(a) > 0 and float(b) > 0 for _, a, b in arms)
    ratios = dict(re.findall(r"^ratio (sweep|sweep with a process per arm) / independent = ([\d.]+)", out.stdout, re.M))
    assert set(ratios) == {"sweep", "sweep with a process per arm"} and all(float(r) > 0 for r in ratios.values())


def test_gpu_check_dry_run_runs_every_mode_and_a_generation_batch_through_notus_labs_code(tmp_path):
    """The GPU check's CPU rehearsal: the same code on a small shape, so the one command a GPU machine runs
    keeps working. It records what ran (attention, weights, optimizer class), not what was asked."""
    import json

    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_check.py"),
            "--dry-run",
            "--steps",
            "1",
            "--out",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [m["mode"] for m in report["modes"]] == ["full", "lora", "qlora"]
    assert all(
        "error" not in m
        and m["tokens_per_s"] > 0
        and m["attention"] == "sdpa"
        and m["optimizer"] == "AdamW"
        and m["preflight_estimate_gb"] > 0
        for m in report["modes"]
    ), report["modes"]
    assert report["generation"]["new_tokens"] > 0 and report["generation"]["decoding"]["temperature"] == 0.7
    assert "| qlora |" in (tmp_path / "gpu_check.md").read_text()
