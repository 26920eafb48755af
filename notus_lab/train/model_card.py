"""The model card (README.md in the run dir): base, data, hyper-parameters, held-out and judged results."""

from __future__ import annotations

from pathlib import Path


def model_card(cfg, metrics: dict, report: dict) -> str:
    eval_rows = "\n".join(
        f"| {name} | {m.get('rewards/accuracies', float('nan')):.4f} | {m.get('rewards/margins', float('nan')):.4f} "
        f"| {m.get('loss', float('nan')):.4f} |"
        for name, m in metrics["eval"].items()
    )
    base = cfg.base.name if cfg.base.name != "tiny" else "tiny (an SFT model built locally by notus_lab)"
    g = metrics.get("generation")
    judged = (
        "No judged generations (judge=none)."
        if g is None
        else (
            f"The policy and its reference (the SFT base) answered {g['n_prompts']} held-out prompts x "
            f"{g['samples_per_prompt']} samples with the same decoding; judge: **{g['judge']}**.\n\n"
            "| | judge score | distinct-2 | mean tokens |\n|---|---|---|---|\n"
            f"| policy | {g['policy_score']:.4f} | {g['policy_distinct_2']:.3f} | {g['policy_mean_tokens']:.1f} |\n"
            f"| reference | {g['reference_score']:.4f} | {g['reference_distinct_2']:.3f} | {g['reference_mean_tokens']:.1f} |\n\n"
            f"Win rate vs the reference: **{g['win_rate_vs_reference']:.4f}** ({g['wins']} wins, {g['losses']} losses, "
            f"{g['ties']} ties; a tie counts half). Every pair is in generations.jsonl."
        )
    )
    return f"""---
library_name: transformers
tags: [dpo, trl, notus_lab, {cfg.data.strategy}]
base_model: {cfg.base.name}
---
# {Path(cfg.run_name or "notus_lab run").name}

DPO fine-tune of **{base}** trained with [TRL](https://github.com/huggingface/trl) `DPOTrainer` by notus_lab.

## Data
- source: `{cfg.data.source}`, binarization: **{cfg.data.strategy}** (rejected: {cfg.data.rejected}, ties: {cfg.data.tie_policy}, min margin: {cfg.data.min_margin})
- rows in: {report["rows_in"]}, training pairs: {report["pairs_out"]}, rows dropped: {report["rows_dropped"]}

## Hyper-parameters
| knob | value |
|---|---|
| adaptation | {cfg.model.adapter} (quantization: {cfg.model.quantization}) |
| beta / loss | {cfg.beta} / {cfg.loss_type} |
| optimizer | {cfg.optimizer.name}, lr {cfg.optimizer.lr}, {cfg.optimizer.scheduler}, warmup {cfg.optimizer.warmup_ratio} |
| global batch | {cfg.train.global_batch_size} = {cfg.hardware.per_device_batch_size} per device x {metrics["gradient_accumulation_steps"]} accumulation x {metrics["world_size"]} processes |
| epochs / max_length / max_prompt_length | {cfg.train.epochs} / {cfg.train.max_length} / {cfg.train.max_prompt_length} |
| seed | {cfg.train.seed} |

## Judged generations
{judged}

## Held-out reward metrics (a training diagnostic; same prompts for every strategy)
| eval pairs | rewards/accuracies | rewards/margins | loss |
|---|---|---|---|
{eval_rows}
"""
