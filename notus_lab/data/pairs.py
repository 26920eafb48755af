"""Binarizing: raw UltraFeedback-style rows -> a held-out split -> (chosen, rejected) pairs under a strategy.
Every skipped row and completion is counted under a reason."""

from __future__ import annotations

import random
from collections import Counter
from typing import Iterable, Optional

from notus_lab.config.published_sets import RAW, Schema
from notus_lab.config.schema import DataConfig
from notus_lab.config.strategies import strategy
from notus_lab.core.errors import invalid
from notus_lab.data.signals import bug_signature, number, signal_score
from notus_lab.data.sources import normalize, pair_schema


def split_rows(rows: list, test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of (train, held-out) rows. The same prompts are held out whatever the strategy."""
    keys = [
        normalize(r["instruction"]) if isinstance(r, dict) and isinstance(r.get("instruction"), str) else None
        for r in rows
    ]
    prompts = sorted({k for k in keys if k})
    n_test = int(test_size) if test_size >= 1 else int(round(len(prompts) * test_size))
    random.Random(seed).shuffle(prompts)
    held_out = set(prompts[:n_test])
    train_idx = [i for i, k in enumerate(keys) if k not in held_out]
    test_idx = [i for i, k in enumerate(keys) if k in held_out]
    return train_idx, test_idx


def _row_problem(row, d: DataConfig, questions: frozenset) -> Optional[str]:
    if not isinstance(row, dict):
        return "not_an_object"
    instruction = row.get("instruction")
    if not isinstance(instruction, str):
        return "missing_instruction"
    if not instruction.strip():
        return "empty_instruction"
    if not isinstance(row.get("completions"), list):
        return "missing_completions"
    if d.decontaminate == "truthful_qa" and (row.get("source") == "truthful_qa" or normalize(instruction) in questions):
        return "decontaminated"
    return None


def usable_scores(row: dict, d: DataConfig, signal: str, dropped: Counter) -> list:
    """Score per completion (None where unusable, with the reason counted in `dropped`)."""
    scores, seen = [], set()
    for c in row["completions"]:
        if not isinstance(c, dict):
            why, score = "malformed_completion", None
        elif not isinstance(c.get("response"), str) or not c["response"].strip():
            why, score = "empty_response", None
        elif c["response"] in seen:
            why, score = "duplicate_response", None
        else:
            seen.add(c["response"])
            score, why = signal_score(c, d, signal)
        if why:
            dropped[why] += 1
        scores.append(score)
    return scores


def select_pairs(scores: list, d: DataConfig, rng_key: str, all_lower: bool) -> list[tuple[int, int]]:
    """(chosen, rejected) completion indices. Chosen = highest score, the first one on a tie."""
    valid = [i for i, s in enumerate(scores) if s is not None]
    best = max(valid, key=lambda i: (scores[i], -i))
    top = scores[best]
    candidates = [
        j
        for j in valid
        if j != best and top - scores[j] >= d.min_margin and (d.tie_policy == "keep" or scores[j] < top)
    ]
    if not candidates:
        return []
    if all_lower:
        return [(best, j) for j in candidates]
    if d.rejected == "lowest":
        return [(best, min(candidates, key=lambda j: (scores[j], j)))]
    if len(candidates) == 1:
        return [(best, candidates[0])]
    # seeded by the prompt itself: a row binarizes the same way whatever rows surround it
    return [(best, random.Random(f"{d.seed}:{rng_key}").choice(candidates))]


def binarize(
    rows: list, d: DataConfig, indices: Optional[Iterable[int]] = None, questions: frozenset = frozenset()
) -> tuple[list[dict], dict]:
    """Pairs for `d.strategy` from raw rows, and the counts that explain them."""
    kind = strategy(d.strategy)
    if kind.prebinarized:
        return _prebinarized(rows, indices, pair_schema(rows, d.source), d)
    dropped, completions_dropped, per_source = Counter(), Counter(), {}
    signal = kind.signal
    pairs, ties, n_in = [], 0, 0
    for i in range(len(rows)) if indices is None else indices:
        n_in += 1
        row = rows[i]
        why = _row_problem(row, d, questions)
        src = row.get("source", "unknown") if isinstance(row, dict) else "unknown"
        src = src if isinstance(src, str) else "unknown"
        counts = per_source.setdefault(src, {"rows_in": 0, "pairs_out": 0})
        counts["rows_in"] += 1
        if why:
            dropped[why] += 1
            continue
        completions = row["completions"]
        scores = usable_scores(row, d, signal, completions_dropped)
        if kind.curated and d.curate_action == "rescore":
            scores = [
                1.0 if s is not None and bug_signature(c, d.curate_threshold) else s
                for s, c in zip(scores, completions)
            ]
        if sum(s is not None for s in scores) < 2:
            dropped["fewer_than_2_completions" if len(completions) < 2 else "fewer_than_2_valid_completions"] += 1
            continue
        if kind.curated and d.curate_action == "drop":
            best = max((k for k, s in enumerate(scores) if s is not None), key=lambda k: (scores[k], -k))
            if bug_signature(completions[best], d.curate_threshold):
                dropped["bug_signature"] += 1
                continue
        chosen_rejected = select_pairs(scores, d, row["instruction"], all_lower=kind.every_lower)
        if not chosen_rejected:
            dropped["no_valid_pair"] += 1
            continue
        for c, r in chosen_rejected:
            ties += scores[c] == scores[r]
            pairs.append(
                {
                    "prompt": row["instruction"],
                    "chosen": completions[c]["response"],
                    "rejected": completions[r]["response"],
                    "score_chosen": scores[c],
                    "score_rejected": scores[r],
                    "row_index": i,
                    "chosen_index": c,
                    "rejected_index": r,
                    "source": src,
                }
            )
        counts["pairs_out"] += len(chosen_rejected)
    report = {
        "strategy": d.strategy,
        "schema": RAW,
        "rows_in": n_in,
        "pairs_out": len(pairs),
        "rows_with_pairs": n_in - sum(dropped.values()),
        "rows_dropped": dict(sorted(dropped.items())),
        "completions_dropped": dict(sorted(completions_dropped.items())),
        "tie_pairs": ties,
        "per_source": dict(sorted(per_source.items())),
    }
    return pairs, report


def _messages_text(x) -> Optional[str]:
    """A prebinarized field as text: a string, or the last message of a chat list."""
    if isinstance(x, str):
        return x if x.strip() else None
    if isinstance(x, list) and x and isinstance(x[-1], dict) and isinstance(x[-1].get("content"), str):
        return x[-1]["content"] if x[-1]["content"].strip() else None
    return None


def _prebinarized(rows: list, indices, schema: Schema, d: DataConfig) -> tuple[list[dict], dict]:
    """The set's own pairs, with the pair rules that read scores (data.tie_policy=drop, data.min_margin) applied
    where the set carries them; refused in one line where it does not."""
    dropped, pairs = Counter(), []
    idx = range(len(rows)) if indices is None else list(indices)
    for i in idx:
        row = rows[i]
        if not isinstance(row, dict):
            dropped["not_an_object"] += 1
            continue
        prompt = _messages_text(row.get(schema.prompt))
        chosen, rejected = _messages_text(row.get(schema.chosen)), _messages_text(row.get(schema.rejected))
        if prompt is None:
            dropped["missing_prompt"] += 1
        elif chosen is None or rejected is None:
            dropped["empty_response"] += 1
        elif chosen == rejected:
            dropped["duplicate_response"] += 1
        else:
            pairs.append(
                {
                    "prompt": prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "score_chosen": number(row.get(schema.score_chosen)),
                    "score_rejected": number(row.get(schema.score_rejected)),
                    "row_index": i,
                    "source": row.get("source", "unknown"),
                }
            )
    scored = [p for p in pairs if p["score_chosen"] is not None and p["score_rejected"] is not None]
    ties_in = sum(p["score_chosen"] == p["score_rejected"] for p in scored)
    rules = [
        (key, value)
        for key, value, on in (
            ("data.tie_policy", d.tie_policy, d.tie_policy == "drop"),
            ("data.min_margin", d.min_margin, d.min_margin > 0),
        )
        if on
    ]
    if rules and not scored:
        key, value = rules[0]
        raise invalid(
            key,
            value,
            "keep" if key == "data.tie_policy" else "0",
            why=f"this set ({schema.name}) carries no chosen/rejected scores to apply it to",
        )
    if rules:
        kept = []
        for p in pairs:
            if p["score_chosen"] is None or p["score_rejected"] is None:
                dropped["no_scores"] += 1
            elif d.tie_policy == "drop" and p["score_chosen"] == p["score_rejected"]:
                dropped["tie"] += 1
            elif p["score_chosen"] - p["score_rejected"] < d.min_margin:
                dropped["below_min_margin"] += 1
            else:
                kept.append(p)
        pairs = kept
    return pairs, {
        "strategy": "prebinarized",
        "schema": schema.name,
        "rows_in": len(idx),
        "pairs_out": len(pairs),
        "rows_dropped": dict(sorted(dropped.items())),
        "completions_dropped": {},
        "tie_pairs": sum(
            p["score_chosen"] == p["score_rejected"]
            for p in pairs
            if p["score_chosen"] is not None and p["score_rejected"] is not None
        ),
        "tie_pairs_in_set": ties_in,
        "scored_pairs": len(scored),
    }


def as_data_config(d) -> DataConfig:
    """A plain dataclass (fast attribute access in the per-row loops) from Hydra's DictConfig."""
    if isinstance(d, DataConfig):
        return d
    from omegaconf import OmegaConf

    return OmegaConf.to_object(d)


def prompt_text(row, column: str = "instruction") -> Optional[str]:
    """A row's prompt as text: the instruction, or a published set's prompt column (text or chat messages)."""
    if not isinstance(row, dict):
        return None
    text = _messages_text(row.get(column))
    return text if isinstance(text, str) and text.strip() else None


def prompt_column(rows: list, d: DataConfig) -> str:
    return pair_schema(rows, d.source).prompt if strategy(d.strategy).prebinarized else "instruction"


def split_for(rows: list, d: DataConfig) -> tuple[list[int], list[int]]:
    """The run's held-out split (prebinarized pairs are split by their prompt text, like raw rows)."""
    if strategy(d.strategy).prebinarized:
        column = prompt_column(rows, d)
        rows = [{"instruction": prompt_text(r, column) or ""} if isinstance(r, dict) else None for r in rows]
    return split_rows(rows, d.test_size, d.split_seed)


def prompt_texts(rows: list, indices: list[int], d: DataConfig) -> list[str]:
    """The prompts of these rows as text, each once, in order."""
    column = prompt_column(rows, d)
    return list(dict.fromkeys(p for i in indices if (p := prompt_text(rows[i], column))))
