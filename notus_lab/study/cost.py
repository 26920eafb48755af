"""What a study cost, and what a design would cost: summed from the compute every run records
(metrics.json["compute"], ["timings_s"]), and projected to a 7B arm from FLOPs, a hardware profile's peak and
an MFU (labelled as a projection: measure the MFU with benchmarks/gpu_check.py on the GPU).
"""

from __future__ import annotations

import statistics
from collections import defaultdict

# The pairs each 7B recipe trains on, per epoch, with the set they come from:
# - Notus 7B v1: argilla/ultrafeedback-binarized-preferences, 63,619 rows, less the 2,000 Notus held out;
# - Zephyr 7B beta: HuggingFaceH4/ultrafeedback_binarized at the revision experiments/zephyr_7b_beta.yaml pins
#   (the Zephyr era: train_test_split(test_size=2000, seed=42) of its rows -> 61,966 train pairs); the set's 2024
#   re-upload (fixed critique, TruthfulQA removed) has 61,135 in train_prefs.
NOTUS_PAIRS, ZEPHYR_PAIRS, H4_2024_PAIRS = 61_619, 61_966, 61_135
NOTUS_EPOCHS, NOTUS_MAX_LENGTH = 3, 1024
# What one Notus-scale arm cost as recorded: Notus 7B v1's model card, about 12 h on 8 x A100-40GB with ZeRO-3
# offloading parameters and optimizer to the CPU. At 2 x 1024 tokens a pair (an upper bound) that is ~20 % MFU
# (`recorded_mfu`); the 40 % assumed for profiles that do not offload is benchmarks/README's GPU target, until
# benchmarks/gpu_check.py measures it.
NOTUS_ARM_GPU_HOURS = 96
ASSUMED_MFU = 0.40


def run_cost(run: dict) -> dict | None:
    """One finished run's device-hours, split into what does not grow with the judged prompts (training,
    evaluation) and what does (generating and judging), per prompt."""
    m = run.get("metrics") or {}
    hours = m.get("compute/device_hours")
    if not isinstance(hours, (int, float)):
        return None
    total_s = m.get("compute/wall_s") or m.get("timings_s/total") or 0.0
    generate_s = m.get("timings_s/generate") or 0.0
    share = generate_s / total_s if total_s else 0.0
    prompts = m.get("generation/n_prompts") or 0
    return {
        "device_hours": hours,
        "unit": m.get("compute/unit"),
        "kind": m.get("compute/kind"),
        "devices": m.get("compute/devices"),
        "fixed_hours": hours * (1 - share),
        "per_prompt_hours": hours * share / prompts if prompts else 0.0,
        "prompts": prompts,
    }


def stage_seconds(runs: list[dict]) -> dict[str, float]:
    """Wall seconds per stage (data, model, train, evaluate, save, generate, reference_precompute), summed."""
    out = defaultdict(float)
    for r in runs:
        for k, v in (r.get("metrics") or {}).items():
            if k.startswith("timings_s/") and k != "timings_s/total" and isinstance(v, (int, float)):
                out[k.split("/", 1)[1]] += v
    return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def sweep_cost(runs: list[dict]) -> dict | None:
    """The sweep's total compute, its mean per run, and where the wall time went."""
    costs = [c for r in runs if (c := run_cost(r))]
    if not costs:
        return None
    units = sorted({c["unit"] for c in costs if c["unit"]})
    return {
        "runs": len(costs),
        "unit": " + ".join(units) or "device-hours",
        "kinds": sorted({c["kind"] for c in costs if c["kind"]}),
        "total_device_hours": round(sum(c["device_hours"] for c in costs), 4),
        "per_run_device_hours": round(statistics.fmean(c["device_hours"] for c in costs), 4),
        "fixed_hours": statistics.fmean(c["fixed_hours"] for c in costs),
        "per_prompt_hours": statistics.fmean(c["per_prompt_hours"] for c in costs),
        "stage_seconds": stage_seconds(runs),
    }


def design_cost(cost: dict, arms: int, seeds: int, prompts: int) -> float:
    """Device-hours of `arms` x `seeds` runs each judged on `prompts` prompts, at this sweep's measured rates."""
    return arms * seeds * (cost["fixed_hours"] + cost["per_prompt_hours"] * prompts)


def dpo_flops_per_token(
    n_params: float, adapter: str, reference: bool = True, layers: int = 0, hidden: int = 0, seq: float = 0
) -> float:
    """Model FLOPs per trained token, attention counted as in PaLM's appendix B (l layers, h hidden, s tokens
    per sequence; 0 leaves it out): the policy's forward and backward (6N + 12lhs full; 4N + 8lhs with a frozen
    base under LoRA: activations only), plus the reference's forward (2N + 4lhs) unless its log-probs are
    precomputed. N excludes the input embedding (a lookup)."""
    attn = layers * hidden * seq
    policy = 6 * n_params + 12 * attn if adapter == "full" else 4 * n_params + 8 * attn
    return policy + (2 * n_params + 4 * attn if reference else 0)


A100_PEAK_TFLOPS = 312  # bf16 dense, what Notus's 8 x A100-40GB had


def recorded_mfu(n_params: float, pairs: int = NOTUS_PAIRS) -> float:
    """The MFU Notus's recorded 96 GPU-hours imply for its recipe at 2 x 1024 tokens a pair: an upper bound, as
    real pairs are shorter."""
    at_full = projected_arm_gpu_hours(n_params, 8, A100_PEAK_TFLOPS, pairs=pairs, mfu=1.0)
    return at_full / NOTUS_ARM_GPU_HOURS


def projected_arm_gpu_hours(
    n_params: float,
    gpus: int,
    peak_tflops: float,
    adapter: str = "full",
    pairs: int = NOTUS_PAIRS,
    epochs: float = NOTUS_EPOCHS,
    tokens_per_pair: int = 2 * NOTUS_MAX_LENGTH,
    mfu: float = ASSUMED_MFU,
) -> float:
    """GPU-hours of one arm: its FLOPs over `gpus` GPUs at `mfu` of their bf16 peak. tokens_per_pair
    counts the chosen and the rejected sequence (2 x max_length is an upper bound)."""
    flops = pairs * epochs * tokens_per_pair * dpo_flops_per_token(n_params, adapter)
    return flops / (gpus * peak_tflops * 1e12 * mfu) * gpus / 3600
