"""What a sweep cost and what a design would cost: the report sums the compute every run recorded, prices a
--target-effect plan at the measured rates, and projects a 7B arm from FLOPs (labelled as a projection)."""

import pytest

from notus_lab.study import findings as R
from notus_lab.study.cost import dpo_flops_per_token
from tests.unit.test_sweep_report import plant

HOURS = {"critique": 0.010, "mean_rating": 0.014}  # CPU core-hours per run, planted


def costed_sweep(tmp_path):
    for seed, eps in zip((1, 2, 3), (0.0, 0.02, -0.01)):
        for data, shift in (("critique", 0.0), ("mean_rating", 0.05)):
            total_s, generate_s = 100.0, 25.0
            plant(
                tmp_path,
                f"{data}-{seed}",
                [f"data={data}", f"train.seed={seed}"],
                {
                    "truth_accuracy": 0.7 + shift + eps,
                    "generation": {"n_prompts": 300},
                    "timings_s": {"train": 60.0, "evaluate": 15.0, "generate": generate_s, "total": total_s},
                    "compute": {
                        "device": "cpu",
                        "kind": "x86_64",
                        "devices": 2,
                        "wall_s": total_s,
                        "device_hours": HOURS[data],
                        "unit": "CPU core-hours",
                    },
                },
            )
    return tmp_path


def test_the_report_gives_the_sweeps_total_and_where_the_time_went(tmp_path):
    out = R.write_report(costed_sweep(tmp_path))
    cost = out["cost"]
    assert cost["runs"] == 6 and cost["unit"] == "CPU core-hours"
    assert cost["total_device_hours"] == pytest.approx(3 * (0.010 + 0.014))
    assert cost["stage_seconds"] == {"train": 360.0, "generate": 150.0, "evaluate": 90.0}
    md = (tmp_path / "report.md").read_text()
    assert "## Cost" in md and "0.072 CPU core-hours" in md


def test_a_plan_is_priced_at_the_measured_rate_and_projected_at_7b(tmp_path):
    out = R.write_report(costed_sweep(tmp_path), target_effect=0.05)
    per_run = (0.010 + 0.014) / 2
    fixed, per_prompt = per_run * 0.75, per_run * 0.25 / 300  # generation took a quarter of each run's wall time
    # by hand: 61,619 pairs x 3 epochs x 2,048 tokens x 8 x 7.24e9 FLOPs = 2.1928e19, at 40 % of 8 x 312 TFLOP/s
    arm_hours = 2.19278e19 / (8 * 312e12 * 0.40) / 3600 * 8  # GPU-hours: 48.8
    reachable = [p for p in out["plan"] if p["prompts"] is not None]
    assert reachable
    for p in reachable:
        assert p["cost"] == pytest.approx(2 * p["seeds"] * (fixed + per_prompt * p["prompts"]), rel=1e-3)
        assert p["cost_7b_projected"] == pytest.approx(2 * p["seeds"] * arm_hours, abs=1)
    assert out["cost"]["projection"]["hardware"] == "a100_80gb_x8"
    md = (tmp_path / "report.md").read_text()
    assert "(projection)" in md and "a projection, not a measurement" in md


def test_the_projection_agrees_with_the_recorded_notus_run_and_names_the_mfu_that_reconciles_them(tmp_path):
    """Notus's card: ~12 h on 8 x A100-40GB = 96 GPU-hours, with ZeRO-3 offloading parameters and optimizer. At
    2 x 1,024 tokens a pair that is 2.1928e19 FLOPs / (96 h x 312 TFLOP/s) = 20.3 % MFU; a profile that does not
    offload is projected at the assumed 40 %: 48.8 GPU-hours."""
    offload = R.write_report(costed_sweep(tmp_path / "a"), target_effect=0.05, project_hardware="a100_40gb_x8_offload")[
        "cost"
    ]["projection"]
    plain = R.write_report(costed_sweep(tmp_path / "b"), target_effect=0.05)["cost"]["projection"]
    assert offload["per_arm_gpu_hours"] == pytest.approx(96.0, abs=0.1) and offload["mfu"] == pytest.approx(
        0.203, abs=1e-3
    )
    assert plain["per_arm_gpu_hours"] == pytest.approx(48.8, abs=0.1) and plain["mfu"] == 0.4
    assert "61,619 pairs (Notus v1's set less its 2,000 held out)" in plain["assumes"]
    assert "Notus's offloaded run implies ~20%" in plain["assumes"]


def test_the_flops_per_token_count_the_policy_and_the_reference():
    assert dpo_flops_per_token(1.0, "lora", reference=False) == 4 and dpo_flops_per_token(1.0, "full") == 8
    assert dpo_flops_per_token(0, "full", True, layers=2, hidden=3, seq=5) == 16 * 30
