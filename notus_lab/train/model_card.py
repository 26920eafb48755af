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
{gguf_section(metrics.get("gguf"))}"""


def _win(h: dict | None, ci: str = "ci") -> str:
    if h is None:
        return "—"
    shown = f" [{h[ci][0]:.3f}, {h[ci][1]:.3f}]" if h[ci] else " (no interval: every prompt the same)"
    return f"{h['win_rate']:.3f}{shown}"


def gguf_section(g: dict | None) -> str:
    """The GGUF files (python -m notus_lab.export, export.gguf): what each holds and the quality it keeps."""
    if not g:
        return ""
    files = g["files"]
    first = next(iter(files.values()))["file"].removeprefix("gguf/")
    judged = "judge_score" in next(iter(files.values()))
    rows = "\n".join(
        f"| `{f['file'].removeprefix('gguf/')}` | {f['bytes'] / 1e6:.2f} | {f['tokens_per_s']} | "
        + (
            f"{'baseline' if f['vs_f16'] is None else _win(f['vs_f16'])} | "
            f"{'—' if f['vs_f16'] is None else ('**flagged** ' if f['vs_f16']['differs'] else 'no ') + _win(f['vs_f16'], 'adjusted_ci')} | "
            f"{f['judge_score']:.4f} | "
            f"{_win(f['vs_reference'])} | {f['same_text_as_f16']:.3f} | "
            if judged
            else "not judged (judge=none) | — | — | — | — | "
        )
        + ", ".join(f"{k} {v}" for k, v in f["tensor_types"].items())
        + " |"
        for f in files.values()
    )
    d = g["settings"]["decoding"]
    return f"""
## GGUF files (llama.cpp)
Converted by llama.cpp's `convert_hf_to_gguf.py` and quantized by its `llama_model_quantize` (llama-cpp-python {g["settings"]["llama_cpp_python"]}). Each file carries the tokenizer (the run's token ids on {files[g["baseline"]]["tokenizer_check"]["texts"]} held-out texts, checked) and the chat template, which llama.cpp applies.

Each file answered the {g["n_prompts"]} held-out prompts x {d["samples_per_prompt"] if d["do_sample"] else 1} on the CPU ({g["settings"]["threads"]} threads) with the run's decoding (temperature {d["temperature"]}, top_p {d["top_p"]}, {d["max_new_tokens"]} new tokens, {"sampled" if d["do_sample"] else "greedy"}); judge: **{g["settings"]["judge"]}**. Win rates count a tie half; the 95 % intervals are over prompts. A file is **flagged** where the quantization measurably changed the answers' quality against f16: Holm's step-down over the {len(files) - 1} quantized file(s) keeps the family-wise error at 5 %, and the flag's interval is at Holm's level (it excludes 0.5 exactly when flagged). The SFT reference column compares with the reference's answers the run was judged against; the run's own win rate drew the policy with the reference's random numbers, these files with their own, so the two are not the same number.

| file | MB | tokens/s | win rate vs f16 (95 %) | flagged (Holm) | judge score | win rate vs SFT reference | same text as f16 | tensor types |
|---|---|---|---|---|---|---|---|---|
{rows}

Run them:

```sh
llama-cli -m {first} -cnv        # llama.cpp: the chat template comes from the file
python -c "from llama_cpp import Llama; print(Llama('{first}').create_chat_completion([{{'role': 'user', 'content': 'hello'}}]))"
```
"""
