"""The published UltraFeedback sets, read by their own column names.

data=prebinarized reads an already binarized set: its schema is recognised from the rows' keys, each pair
keeps the set's own scores (so data.min_margin and the audit see them), and data_report.json names the schema.
A hub id listed in KNOWN also sets the split read by default (H4's set has no `train` split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Schema:
    name: str
    marks: tuple[str, ...]  # columns that identify the set (all present)
    prompt: str
    chosen: str
    rejected: str
    score_chosen: Optional[str]
    score_rejected: Optional[str]
    about: str


# most specific first: H4's and argilla's cleaned set also have prompt/chosen/rejected
SCHEMAS = (
    Schema(
        "argilla_notus_v1",
        ("instruction", "chosen_response", "rejected_response"),
        "instruction",
        "chosen_response",
        "rejected_response",
        "chosen_avg_rating",
        "rejected_avg_rating",
        "argilla/ultrafeedback-binarized-preferences: Notus 7B v1's set (mean of the four ratings, a random "
        "strictly lower rejected; its card says some ties remain)",
    ),
    Schema(
        "argilla_cleaned",
        ("prompt", "chosen", "rejected", "chosen-rating"),
        "prompt",
        "chosen",
        "rejected",
        "chosen-rating",
        "rejected-rating",
        "argilla/ultrafeedback-binarized-preferences-cleaned: mean rating, ties and TruthfulQA removed",
    ),
    Schema(
        "h4_ultrafeedback_binarized",
        ("prompt", "prompt_id", "chosen", "rejected"),
        "prompt",
        "chosen",
        "rejected",
        "score_chosen",
        "score_rejected",
        "HuggingFaceH4/ultrafeedback_binarized: Zephyr 7B beta's set (critique overall_score, ties kept; its "
        "current version is rebuilt on the fixed critique with TruthfulQA removed)",
    ),
    Schema(
        "pairs",
        ("prompt", "chosen", "rejected"),
        "prompt",
        "chosen",
        "rejected",
        "score_chosen",
        "score_rejected",
        "prompt / chosen / rejected (text or chat messages), optional score_chosen / score_rejected: "
        "notus_lab's own pairs.jsonl, TRL's preference format",
    ),
)


RAW = "openbmb_ultrafeedback"  # instruction + completions: what the binarizing strategies read


# what a hub id implies: its default split, its schema, and a revision worth pinning
KNOWN = {
    "openbmb/UltraFeedback": {
        "split": "train",
        "schema": RAW,
        "revision": "40b436560ca83a8dba36114c22ab3c66e43f6d5e",
    },  # critique fixed (2023-12-29)
    "argilla/ultrafeedback-binarized-preferences": {"split": "train", "schema": "argilla_notus_v1"},
    "argilla/ultrafeedback-binarized-preferences-cleaned": {"split": "train", "schema": "argilla_cleaned"},
    "HuggingFaceH4/ultrafeedback_binarized": {"split": "train_prefs", "schema": "h4_ultrafeedback_binarized"},
}


def detect(rows: list) -> Optional[Schema]:
    """The schema whose identifying columns the first rows carry; None when no schema fits."""
    keys = set().union(*(r for r in rows[:200] if isinstance(r, dict))) if rows else set()
    return next((s for s in SCHEMAS if set(s.marks) <= keys), None)


def default_split(source: str, available: Optional[list[str]] = None) -> str:
    """The split to read when data.split is not set: the set's own (KNOWN), else `train`, else a
    `train_prefs` or the only split of the ones available."""
    if source in KNOWN:
        return KNOWN[source]["split"]
    if available and "train" not in available:
        for name in ("train_prefs",) + (tuple(available) if len(available) == 1 else ()):
            if name in available:
                return name
    return "train"


# Two corners of a signal x tie rule x rejected rule design (experiments/signal_vs_pair_rule.yaml): the rules the
# published sets were built with, as data.* values (tests/unit/test_binarize_rules.py checks them on hand-made rows)
CORNERS = {
    # HuggingFaceH4/ultrafeedback_binarized (Zephyr): best critique overall_score chosen, a random other rejected,
    # ties kept
    "H4/Zephyr": {"data": ("critique", "critique_fixed"), "data.tie_policy": ("keep",), "data.rejected": ("random",)},
    # argilla/ultrafeedback-binarized-preferences (Notus): best mean rating chosen, a random strictly lower rejected
    "argilla/Notus": {"data": ("mean_rating",), "data.tie_policy": ("drop",), "data.rejected": ("random",)},
}
