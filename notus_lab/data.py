"""Data stage: raw UltraFeedback-style rows -> held-out split -> preference pairs + a report.

Pure Python (no torch), so `python -m notus_lab.binarize` stays fast. Nothing is dropped silently:
every skipped row and completion is counted under a reason in the report.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

from notus_lab.config import ConfigError, DataConfig, looks_like_local_path
from notus_lab.published_sets import RAW, SCHEMAS, Schema, default_split, detect
from notus_lab.signals import bug_signature, number, signal_score

# ---------------------------------------------------------------------------------------------
# Loading


def load_rows(d: DataConfig) -> tuple[list, Counter]:
    """Rows from the bundled world, a local file/dir, or a hub id. Returns (rows, unreadable counts)."""
    unreadable: Counter = Counter()
    if d.source == "world":
        from notus_lab.world import generate_rows

        rows = list(generate_rows(d.world))
    elif looks_like_local_path(d.source):
        rows = _load_local(Path(os.path.expanduser(d.source)), d, unreadable)
    else:  # a hub id: the real path, exercised in tests against local files via the same loader
        import datasets

        split = d.split or default_split(d.source)
        try:
            ds = datasets.load_dataset(d.source, revision=d.revision, split=split)
        except ValueError as e:  # datasets: 'Unknown split "x". Should be one of [...]'
            if "split" not in str(e).lower():
                raise
            raise ConfigError(f"data.split={split!r} is invalid: {d.source} says: {str(e).splitlines()[0]}") from None
        rows = ds.to_list() if d.max_rows is None else ds.select(range(min(d.max_rows, len(ds)))).to_list()
    if d.max_rows is not None:
        rows = rows[: d.max_rows]
    return rows, unreadable


def _load_local(path: Path, d: DataConfig, unreadable: Counter) -> list:
    if path.is_dir():  # a `datasets` save_to_disk directory
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[_split_in(d, list(ds))]
        return ds.to_list()
    if path.suffix == ".parquet":
        import datasets

        return datasets.load_dataset("parquet", data_files=str(path), split="train").to_list()
    if path.suffix == ".json":
        with open(path, "rb") as f:
            data = json.load(f)
        if isinstance(data, dict):  # {"train": [...]} or {"data": [...]}
            data = data["data"] if "data" in data and not d.split else data[_split_in(d, list(data))]
        if not isinstance(data, list):
            raise ConfigError(f"data.source={str(path)!r} is invalid: allowed a JSON list of rows or jsonl")
        return data
    # jsonl, parsed line by line: datasets' JSON reader rejects rows whose types disagree, and a
    # real file with one bad line must lose that line, not the run.
    rows = []
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                unreadable["unparseable_json"] += 1
            if d.max_rows is not None and len(rows) >= d.max_rows:
                break
    return rows


def _split_in(d: DataConfig, available: list[str]) -> str:
    """The split to read from a local set whose split names are known; one line when it is not there."""
    split = d.split or default_split(d.source, available)
    if split not in available:
        raise ConfigError(f"data.split={split!r} is invalid: allowed one of {', '.join(available)}")
    return split


def check_shape(rows: list, source: str) -> None:
    """A file that is not UltraFeedback-shaped at all is a config error, not 100% dropped rows."""
    sample = [r for r in rows[:200] if isinstance(r, dict)]
    if not sample:
        raise ConfigError(f"data.source={source!r} is invalid: allowed rows that are JSON objects (none found)")
    for key in ("instruction", "completions"):
        if not any(key in r for r in sample):
            raise ConfigError(f"data.source={source!r} is invalid: rows lack the UltraFeedback field {key!r} "
                              f"(found {sorted(sample[0])[:8]}); use data=prebinarized for an already binarized set")


def pair_schema(rows: list, source: str) -> Schema:
    """The published set's schema (data=prebinarized), or one line listing the columns each one has."""
    schema = detect(rows)
    if schema is None:
        found = sorted(next((r for r in rows if isinstance(r, dict)), {}))[:8]
        raise ConfigError(f"data.source={source!r} is invalid: allowed rows with the columns of one of "
                          + "; ".join(f"{s.name} ({', '.join(s.marks)})" for s in SCHEMAS) + f" (found {found})")
    return schema


# ---------------------------------------------------------------------------------------------
# Held-out split: by prompt, once, before any strategy runs


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text.lower())).strip()


def split_rows(rows: list, test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of (train, held-out) rows. The same prompts are held out whatever the strategy."""
    keys = [normalize(r["instruction"]) if isinstance(r, dict) and isinstance(r.get("instruction"), str)
            else None for r in rows]
    prompts = sorted({k for k in keys if k})
    n_test = int(test_size) if test_size >= 1 else int(round(len(prompts) * test_size))
    random.Random(seed).shuffle(prompts)
    held_out = set(prompts[:n_test])
    train_idx = [i for i, k in enumerate(keys) if k not in held_out]
    test_idx = [i for i, k in enumerate(keys) if k in held_out]
    return train_idx, test_idx


# ---------------------------------------------------------------------------------------------
# Binarization


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
    candidates = [j for j in valid if j != best and top - scores[j] >= d.min_margin
                  and (d.tie_policy == "keep" or scores[j] < top)]
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


def binarize(rows: list, d: DataConfig, indices: Optional[Iterable[int]] = None,
             questions: frozenset = frozenset()) -> tuple[list[dict], dict]:
    """Pairs for `d.strategy` from raw rows, and the counts that explain them."""
    if d.strategy == "prebinarized":
        return _prebinarized(rows, indices, pair_schema(rows, d.source))
    dropped, completions_dropped, per_source = Counter(), Counter(), {}
    signal = "mean_rating" if d.strategy == "multi_pair" else d.strategy
    pairs, ties, n_in = [], 0, 0
    for i in (range(len(rows)) if indices is None else indices):
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
        if d.strategy == "critique_curated" and d.curate_action == "rescore":
            scores = [1.0 if s is not None and bug_signature(c, d.curate_threshold) else s
                      for s, c in zip(scores, completions)]
        if sum(s is not None for s in scores) < 2:
            dropped["fewer_than_2_completions" if len(completions) < 2 else "fewer_than_2_valid_completions"] += 1
            continue
        if d.strategy == "critique_curated" and d.curate_action == "drop":
            best = max((k for k, s in enumerate(scores) if s is not None), key=lambda k: (scores[k], -k))
            if bug_signature(completions[best], d.curate_threshold):
                dropped["bug_signature"] += 1
                continue
        chosen_rejected = select_pairs(scores, d, row["instruction"], all_lower=d.strategy == "multi_pair")
        if not chosen_rejected:
            dropped["no_valid_pair"] += 1
            continue
        for c, r in chosen_rejected:
            ties += scores[c] == scores[r]
            pairs.append({
                "prompt": row["instruction"], "chosen": completions[c]["response"],
                "rejected": completions[r]["response"], "score_chosen": scores[c], "score_rejected": scores[r],
                "row_index": i, "chosen_index": c, "rejected_index": r, "source": src,
            })
        counts["pairs_out"] += len(chosen_rejected)
    report = {
        "strategy": d.strategy, "schema": RAW, "rows_in": n_in, "pairs_out": len(pairs),
        "rows_with_pairs": n_in - sum(dropped.values()), "rows_dropped": dict(sorted(dropped.items())),
        "completions_dropped": dict(sorted(completions_dropped.items())), "tie_pairs": ties,
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


def _prebinarized(rows: list, indices, schema: Schema) -> tuple[list[dict], dict]:
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
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                          "score_chosen": number(row.get(schema.score_chosen)),
                          "score_rejected": number(row.get(schema.score_rejected)), "row_index": i,
                          "source": row.get("source", "unknown")})
    scored = [p for p in pairs if p["score_chosen"] is not None and p["score_rejected"] is not None]
    return pairs, {"strategy": "prebinarized", "schema": schema.name, "rows_in": len(idx), "pairs_out": len(pairs),
                   "rows_dropped": dict(sorted(dropped.items())), "completions_dropped": {},
                   "tie_pairs": sum(p["score_chosen"] == p["score_rejected"] for p in scored),
                   "scored_pairs": len(scored)}


def load_questions(path: Optional[str]) -> frozenset:
    """Questions to decontaminate against: one per line, or jsonl with a `question` field."""
    if not path:
        return frozenset()
    out = set()
    with open(os.path.expanduser(path), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    line = json.loads(line).get("question", "")
                except ValueError:
                    pass
            if line:
                out.add(normalize(line))
    return frozenset(out)


# ---------------------------------------------------------------------------------------------
# The whole stage


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
    return pair_schema(rows, d.source).prompt if d.strategy == "prebinarized" else "instruction"


def split_for(rows: list, d: DataConfig) -> tuple[list[int], list[int]]:
    """The run's held-out split (prebinarized pairs are split by their prompt text, like raw rows)."""
    if d.strategy == "prebinarized":
        column = prompt_column(rows, d)
        rows = [{"instruction": prompt_text(r, column) or ""} if isinstance(r, dict) else None for r in rows]
    return split_rows(rows, d.test_size, d.split_seed)


def held_out_prompts(rows: list, test_idx: list[int], d: DataConfig) -> list[str]:
    """The held-out prompts as text, each once, in split order: what judged generations answer."""
    column = prompt_column(rows, d)
    return list(dict.fromkeys(p for i in test_idx if (p := prompt_text(rows[i], column))))


def prepare(d: DataConfig, eval_sets: Optional[dict] = None, points: Optional[list] = None,
            audit_rows: bool = True) -> dict:
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
    if d.strategy != "prebinarized":
        check_shape(rows, d.source)
    t = time.perf_counter()
    questions = load_questions(d.decontaminate_questions)
    train_idx, test_idx = split_for(rows, d)
    train_pairs, report = binarize(rows, d, train_idx, questions)
    test_pairs, test_report = binarize(rows, d, test_idx, questions)
    # held-out: every model is scored on the same prompts under each binarization (the cross-eval matrix)
    from notus_lab.audit import audit, has_truth, truth_agreement, truth_pairs

    eval_pairs = {}
    if d.strategy != "prebinarized" and eval_sets:
        for name, e in eval_sets.items():
            eval_pairs[name] = test_pairs if e == d else binarize(rows, e, test_idx, questions)[0]
        if truth := truth_pairs(rows, test_idx):
            eval_pairs["truth"] = truth
    if d.strategy not in eval_pairs:  # the run's own rule, as trained on (ties and all)
        eval_pairs[d.strategy] = test_pairs
    timings["binarize_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if d.strategy != "prebinarized" and audit_rows:
        report.update(audit(rows, d, range(len(rows)), points))
    timings["audit_s"] = time.perf_counter() - t
    report["rows_unreadable"] = dict(unreadable)
    report["held_out"] = {"prompts_rows": len(test_idx), "train_rows": len(train_idx),
                          "rows_in": test_report["rows_in"], "pairs_out": test_report["pairs_out"],
                          "rows_dropped": test_report["rows_dropped"],
                          "pairs": {k: len(v) for k, v in eval_pairs.items()}}
    if audit_rows and has_truth(rows):  # the bundled world
        # how often each signal's held-out pairs prefer the truly better completion: the data-level answer
        report["truth_agreement"] = {"train": truth_agreement(rows, train_pairs),
                                     **{name: truth_agreement(rows, pairs) for name, pairs in eval_pairs.items()
                                        if name != "truth"}}
    report["timings"] = {k: round(v, 3) for k, v in timings.items()}
    return {"rows": rows, "train_pairs": train_pairs, "test_pairs": test_pairs, "eval_pairs": eval_pairs,
            "held_out_prompts": held_out_prompts(rows, test_idx, d), "report": report}


def fingerprint_rows(rows: list) -> str:
    import hashlib

    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def truncated_prompts(pairs: list[dict], tokenizer, max_prompt_length: int, max_length: int | None) -> list[str]:
    """The recipes' rule (TRL 0.7, which Zephyr and Notus trained with; truncation_mode keep_end): a prompt
    keeps its last `max_prompt_length` tokens only when prompt + the longer answer exceed `max_length`; a
    long prompt with short answers is kept whole. (TRL 1.x dropped max_prompt_length.)"""
    prompts = [p["prompt"] for p in pairs]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    if max_length is None:
        longer = [0] * len(pairs)
    else:
        chosen = tokenizer([p["chosen"] for p in pairs], add_special_tokens=False)["input_ids"]
        rejected = tokenizer([p["rejected"] for p in pairs], add_special_tokens=False)["input_ids"]
        longer = [max(len(c), len(r)) for c, r in zip(chosen, rejected)]
    return [tokenizer.decode(ids[-max_prompt_length:])
            if len(ids) > max_prompt_length and (max_length is None or len(ids) + n > max_length) else p
            for p, ids, n in zip(prompts, prompt_ids, longer)]


def to_preference_dataset(pairs: list[dict], tokenizer, max_prompt_length: int, max_length: int | None = None):
    """TRL's conversational preference format, prompts truncated by the recipes' rule (truncated_prompts)."""
    import datasets

    prompts = truncated_prompts(pairs, tokenizer, max_prompt_length, max_length)
    return datasets.Dataset.from_dict({
        "prompt": [[{"role": "system", "content": ""}, {"role": "user", "content": p}] for p in prompts],
        "chosen": [[{"role": "assistant", "content": p["chosen"]}] for p in pairs],
        "rejected": [[{"role": "assistant", "content": p["rejected"]}] for p in pairs],
    })


def cached_preference_dataset(pairs: list[dict], tokenizer, max_prompt_length: int, max_length: int | None,
                              cache_dir: Path, salt: str):
    """`to_preference_dataset`, saved once under a key of its content (the pairs, the tokenizer, the prompt
    truncation, and `salt`: everything else that changes what TRL computes from it, such as max_length,
    precision and the base model). Loaded from disk, the dataset has cache files and a stable fingerprint,
    so TRL's tokenization and its precomputed reference log-probs are computed once and reused by every arm
    that shares the key (a beta, loss, seed or optimizer sweep) and never by one that does not."""
    import hashlib
    import shutil
    import tempfile

    import datasets

    h = hashlib.sha256()
    h.update(tokenizer.backend_tokenizer.to_str().encode() if hasattr(tokenizer, "backend_tokenizer") else b"")
    h.update(str(getattr(tokenizer, "chat_template", "")).encode())
    h.update(f"{max_prompt_length}|{max_length}|{salt}".encode())
    for p in pairs:
        h.update(json.dumps([p["prompt"], p["chosen"], p["rejected"]]).encode())
    target = Path(os.path.expanduser(cache_dir)) / h.hexdigest()[:20]
    if not (target / "dataset_info.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        to_preference_dataset(pairs, tokenizer, max_prompt_length, max_length).save_to_disk(str(tmp))
        try:
            os.replace(tmp, target)  # atomic: a reader never sees half a dataset
        except OSError:  # another arm saved the same content first
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(target))
