"""Reading rows: the bundled world, a local file or datasets dir, or a hub dataset, each checked for the
shape a strategy needs. Unreadable rows are counted, never dropped silently."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Optional

from notus_lab.config.derived import looks_like_local_path
from notus_lab.config.published_sets import SCHEMAS, Schema, default_split, detect
from notus_lab.config.schema import DataConfig
from notus_lab.core.errors import invalid
from notus_lab.data.world import generate_rows


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text.lower())).strip()


def load_rows(d: DataConfig) -> tuple[list, Counter]:
    """Rows from the bundled world, a local file/dir, or a hub id. Returns (rows, unreadable counts)."""
    unreadable: Counter = Counter()
    if d.source == "world":
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
            raise invalid("data.split", split, why=f"{d.source} says: {str(e).splitlines()[0]}") from None
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
            raise invalid("data.source", str(path), "a JSON list of rows or jsonl")
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
        raise invalid("data.split", split, f"one of {', '.join(available)}")
    return split


def check_shape(rows: list, source: str) -> None:
    """A file that is not UltraFeedback-shaped at all is a config error, not 100% dropped rows."""
    sample = [r for r in rows[:200] if isinstance(r, dict)]
    if not sample:
        raise invalid("data.source", source, "rows that are JSON objects (none found)")
    for key in ("instruction", "completions"):
        if not any(key in r for r in sample):
            raise invalid(
                "data.source",
                source,
                "data=prebinarized for an already binarized set",
                why=f"rows lack the UltraFeedback field {key!r} (found {sorted(sample[0])[:8]})",
            )


def pair_schema(rows: list, source: str) -> Schema:
    """The published set's schema (data=prebinarized), or one line listing the columns each one has."""
    schema = detect(rows)
    if schema is None:
        found = sorted(next((r for r in rows if isinstance(r, dict)), {}))[:8]
        raise invalid(
            "data.source",
            source,
            "rows with the columns of one of "
            + "; ".join(f"{s.name} ({', '.join(s.marks)})" for s in SCHEMAS)
            + f" (found {found})",
        )
    return schema


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
