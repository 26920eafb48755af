"""The report's table of every benchmark, chat and academic, one column per arm: the judged generations and the
external chat judges (AlpacaEval, MT-Bench) beside lm-evaluation-harness's tasks (`python -m notus_lab.evaluate`),
with the Open LLM average as its own row where the preset ran. Each cell is the mean over the arm's seeds and its
95 % t half-width over seeds; the paired seeds x questions verdict on one of them is `--metric lm_eval/<task>/<m>`.
"""

from __future__ import annotations

import math
import statistics

import yaml

from notus_lab.core.run_dir import RunDir

CHAT = (
    ("judged win rate vs reference", "generation/win_rate_vs_reference"),
    ("AlpacaEval win rate", "alpaca_eval/win_rate"),
    ("AlpacaEval LC win rate", "alpaca_eval/length_controlled_winrate"),
    ("MT-Bench score", "mt_bench/score"),
)
OPEN_LLM_AVERAGE = "lm_eval/open_llm_average"
# the Notus 7B v1 model card's own warning, for TruthfulQA where the training data were not decontaminated
TRUTHFULQA_WARNING = (
    "UltraFeedback holds TruthfulQA prompts: without data.decontaminate the TruthfulQA score may be contaminated "
    "(the Notus 7B v1 card's warning)"
)


def _interval(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    from scipy.stats import t

    return mean, t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def _decontaminated(run: dict) -> bool | None:
    path = RunDir(run["dir"]).config
    if not path.exists():
        return None
    return bool(((yaml.safe_load(path.read_text()) or {}).get("data") or {}).get("decontaminate"))


def lm_eval_metrics(runs: list[dict]) -> list[str]:
    """Every lm_eval/<task>/<metric> a finished run records (stderr columns left out), the average last."""
    keys = {
        k
        for r in runs
        for k, v in (r.get("metrics") or {}).items()
        if k.startswith("lm_eval/") and not k.endswith("_stderr") and isinstance(v, (int, float))
    }
    return sorted(keys - {OPEN_LLM_AVERAGE}) + ([OPEN_LLM_AVERAGE] if OPEN_LLM_AVERAGE in keys else [])


def benchmarks_table(rows: list[dict]) -> dict:
    """{"arms": [arm label], "rows": [{"benchmark", "metric", "family", "cells": [(mean, half_width, n) | None],
    "warning"}]} over the report's arm rows (each with `arm` and `members`); only benchmarks some arm records."""
    members = [m for r in rows for m in r["members"]]
    found = [(label, key, "chat") for label, key in CHAT]
    found += [
        ("Open LLM average" if k == OPEN_LLM_AVERAGE else k.split("/", 1)[1], k, "academic")
        for k in lm_eval_metrics(members)
    ]
    out = []
    for label, key, family in found:
        cells = []
        for r in rows:
            values = [float(m["metrics"][key]) for m in r["members"] if isinstance(m["metrics"].get(key), (int, float))]
            cells.append((*_interval(values), len(values)) if values else None)
        if not any(cells):
            continue
        warning = None
        if key.startswith("lm_eval/truthfulqa") and any(_decontaminated(m) is False for m in members):
            warning = TRUTHFULQA_WARNING
        out.append({"benchmark": label, "metric": key, "family": family, "cells": cells, "warning": warning})
    arms = [", ".join(f"{k}={v}" for k, v in r["arm"].items()) or "all" for r in rows]
    return {"arms": arms, "rows": out}


def benchmarks_section(rows: list[dict]) -> list[str]:
    """report.md's "Benchmarks" section; nothing when no arm has an lm-eval result."""
    table = benchmarks_table(rows)
    if not any(r["family"] == "academic" for r in table["rows"]):
        return []
    md = [
        "",
        "## Benchmarks (mean over seeds ± 95 % t half-width over seeds)",
        "",
        "| benchmark | `--metric` | " + " | ".join(table["arms"]) + " |",
        "|---|---|" + "---|" * len(table["arms"]),
    ]
    for r in table["rows"]:
        cells = [
            "" if c is None else f"{c[0]:.3f}" + ("" if c[1] is None else f" ± {c[1]:.3f}") + f" (n={c[2]})"
            for c in r["cells"]
        ]
        name = r["benchmark"] + (" ⚠" if r["warning"] else "")
        md.append(f"| {name} | `{r['metric']}` | " + " | ".join(cells) + " |")
    md += ["", *[f"⚠ {r['benchmark']}: {r['warning']}" for r in table["rows"] if r["warning"]]]
    md += [
        "",
        "A paired verdict on one of these (question by question over seeds, the crossed seeds x questions "
        "interval): `python -m notus_lab.report <sweep> --metric lm_eval/<task>/<metric>`.",
        "",
    ]
    return md
