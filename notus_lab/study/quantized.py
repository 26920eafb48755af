"""GGUF files across a study: does a quantization keep the quality of the models the study trained?

One run's table (notus_lab/judging/quantized.py) speaks for one trained model. Pooled over a study's runs, the
question becomes whether quantizing models trained this way changes their answers' quality. Each run's quantized
file is compared with that run's own f16 file, on the same prompts and sample seeds:

    d[u, p] = (mean outcome of prompt p's samples, quantized vs f16, in seed unit u) - 0.5

Runs that share a training seed are averaged into one seed unit, as the study's other comparisons do
(notus_lab/study/stats.py). The held-out prompts are shared by every run, so they are crossed with the seed
units. The interval is the study's own crossed seeds x prompts interval, with the seed part floored. Holm's
step-down over the file types keeps the family-wise error at 5 %. With one seed unit there is no seed part to
measure, so there is no interval: each run's own card then holds that file's table.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import numpy as np

from notus_lab.config.schema import GGUF_TYPES
from notus_lab.core.files import read_jsonl
from notus_lab.core.run_dir import RunDir
from notus_lab.judging.quantized import outcome
from notus_lab.models.gguf import BASELINE
from notus_lab.study.runs import SEED_KEYS
from notus_lab.study.stats import ALPHA, crossed_interval, holm, p_value


def answered(run_dir) -> dict[str, dict[tuple[str, int], float]]:
    """{file type: {(prompt, sample): judge score}} from a run's gguf/answers.jsonl (judged answers only)."""
    path = RunDir(run_dir).gguf_answers
    out: dict[str, dict] = defaultdict(dict)
    for r in read_jsonl(path) if path.exists() else []:
        if r.get("score") is not None:
            out[r["quantization"]][(r["prompt"], r["sample"])] = r["score"]
    return out


def per_prompt_vs_f16(scores: dict[str, dict]) -> dict[str, dict[str, float]]:
    """{file type: {prompt: mean outcome against f16 over the prompt's samples}} for one run."""
    base = scores.get(BASELINE, {})
    out = {}
    for name, own in scores.items():
        if name == BASELINE:
            continue
        by_prompt: dict[str, list[float]] = defaultdict(list)
        for key, s in own.items():
            if key in base:
                by_prompt[key[0]].append(outcome(s, base[key]))
        out[name] = {p: statistics.fmean(v) for p, v in by_prompt.items()}
    return out


def _mean(values: list[float], digits: int) -> float | None:
    return round(statistics.fmean(values), digits) if values else None


def _seed_unit(run: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in run["overrides"].items() if k in SEED_KEYS))


def quantization_rows(runs: list[dict]) -> list[dict]:
    """One row per quantized file type that some finished run judged (`pooled`), with Holm's verdict over the
    file types (`flagged`, and `adjusted_ci` at Holm's level)."""
    units: dict[str, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    files: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        if run["status"] != "finished":
            continue
        scores = answered(run["dir"])
        for name, prompts in per_prompt_vs_f16(scores).items():
            units[name][_seed_unit(run)].append(prompts)
            m = run["metrics"]
            files[name].append({k: m.get(f"gguf/files/{name}/{k}") for k in ("bytes", "tokens_per_s")})
    rows = []
    for name in sorted(units, key=list(GGUF_TYPES).index):  # llama.cpp's types, larger files first
        row = {"quantization": name, **pooled(list(units[name].values()))}
        row["mb"] = _mean([f["bytes"] / 1e6 for f in files[name] if f["bytes"]], 3)
        row["tokens_per_s"] = _mean([f["tokens_per_s"] for f in files[name] if f["tokens_per_s"]], 1)
        rows.append(row)
    return flag(rows)


def pooled(units: list[list[dict[str, float]]]) -> dict:
    """One file type's win rate against f16 over seed units x shared prompts. `units` is one list per seed unit of
    its runs' {prompt: mean outcome}. The interval is the crossed one of study/stats.py, None with one seed unit."""
    shared = sorted(set.intersection(*(set(p) for runs in units for p in runs)))
    row = {"runs": sum(map(len, units)), "seeds": len(units), "prompts": len(shared), "p_value": None}
    if not shared:
        return row
    d = np.array([np.mean([[run[p] for p in shared] for run in runs], axis=0) for runs in units]) - 0.5
    mean, [ci], ms = crossed_interval(d)
    row["win_rate"] = round(float(mean) + 0.5, 4)
    if len(units) > 1 and np.isfinite(ci[0]):
        row["ci"] = [round(float(ci[0]) + 0.5, 4), round(float(ci[1]) + 0.5, 4)]
        row["p_value"] = float(p_value(ms))
        row["matrix"] = d
    return row


def flag(rows: list[dict]) -> list[dict]:
    """Holm's step-down over the file types' rows, in place: `flagged`, `adjusted_alpha`, `adjusted_ci`."""
    holm(rows, ALPHA)
    for r in rows:
        r["flagged"] = r.pop("excludes_zero")
        r.pop("matrix", None)
        if "adjusted_ci" in r:
            r["adjusted_ci"] = [round(x + 0.5, 4) for x in r["adjusted_ci"]]
    return rows
