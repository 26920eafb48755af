"""A run's data: rows -> split -> train pairs, held-out pairs under every eval signal, held-out prompts,
and the report of what was dropped and why."""

from __future__ import annotations

import time
from typing import Optional

from notus_lab.config.schema import DataConfig
from notus_lab.config.strategies import strategy
from notus_lab.core.keys import streamed_key
from notus_lab.data.audit import audit, has_truth, truth_agreement, truth_pairs
from notus_lab.data.pairs import as_data_config, binarize, prompt_texts, split_for
from notus_lab.data.sources import check_shape, load_questions, load_rows


def prepare(
    d: DataConfig, eval_sets: Optional[dict] = None, points: Optional[list] = None, audit_rows: bool = True
) -> dict:
    """Raw rows -> train pairs, held-out pairs, and the report with per-stage timings.

    The held-out prompts are labelled by the run's own rule and by every binarization in `eval_sets`
    ({name: DataConfig}, see config.eval_data_configs), plus the world's truth where it is known.
    `points` collects the audit's plot data; `audit_rows=False` skips the audit (ranks other than 0 only
    need the pairs)."""
    d = as_data_config(d)
    timings = {}
    t = time.perf_counter()
    rows, unreadable = load_rows(d)
    timings["load_s"] = time.perf_counter() - t
    if strategy(d.strategy).binarizes:
        check_shape(rows, d.source)
    t = time.perf_counter()
    questions = load_questions(d.decontaminate_questions)
    train_idx, test_idx = split_for(rows, d)
    train_pairs, report = binarize(rows, d, train_idx, questions)
    test_pairs, test_report = binarize(rows, d, test_idx, questions)
    # held-out: every model is scored on the same prompts under each binarization (the cross-eval matrix)

    eval_pairs = {}
    if strategy(d.strategy).binarizes and eval_sets:
        for name, e in eval_sets.items():
            eval_pairs[name] = test_pairs if e == d else binarize(rows, e, test_idx, questions)[0]
        if truth := truth_pairs(rows, test_idx):
            eval_pairs["truth"] = truth
    if d.strategy not in eval_pairs:  # the run's own rule, as trained on (ties and all)
        eval_pairs[d.strategy] = test_pairs
    timings["binarize_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if strategy(d.strategy).binarizes and audit_rows:
        report.update(audit(rows, d, range(len(rows)), points))
    timings["audit_s"] = time.perf_counter() - t
    report["rows_unreadable"] = dict(unreadable)
    report["held_out"] = {
        "prompts_rows": len(test_idx),
        "train_rows": len(train_idx),
        "rows_in": test_report["rows_in"],
        "pairs_out": test_report["pairs_out"],
        "rows_dropped": test_report["rows_dropped"],
        "pairs": {k: len(v) for k, v in eval_pairs.items()},
    }
    if audit_rows and has_truth(rows):  # the bundled world
        # how often each signal's held-out pairs prefer the truly better completion: the data-level answer
        report["truth_agreement"] = {
            "train": truth_agreement(rows, train_pairs),
            **{name: truth_agreement(rows, pairs) for name, pairs in eval_pairs.items() if name != "truth"},
        }
    report["timings"] = {k: round(v, 3) for k, v in timings.items()}
    return {
        "rows": rows,
        "train_pairs": train_pairs,
        "test_pairs": test_pairs,
        "eval_pairs": eval_pairs,
        "held_out_prompts": prompt_texts(rows, test_idx, d),
        "report": report,
    }


def fingerprint_rows(rows: list) -> str:
    return streamed_key(rows)


def held_out_prompts(d) -> list[str]:
    """A run's held-out prompts as text, each once, in split order (what judged generations answer),
    re-derived from its data config: same rows, same split."""
    d = as_data_config(d)
    rows, _ = load_rows(d)
    return prompt_texts(rows, split_for(rows, d)[1], d)
