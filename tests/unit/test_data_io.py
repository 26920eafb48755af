"""Loading from local files, the hub path, the binarize CLI and its outputs."""

import json

import datasets
import pytest

from notus_lab.config.schema import DataConfig, WorldConfig
from notus_lab.core.errors import ConfigError
from notus_lab.data.pairs import binarize
from notus_lab.data.prepare import prepare
from notus_lab.data.sources import load_rows
from notus_lab.data.world import generate_rows
from tests.helpers import cli

WORLD = WorldConfig(rows=200)


@pytest.fixture(scope="module")
def world_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    rows = list(generate_rows(WORLD))
    with open(d / "uf.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write("{not json\n")  # a broken line is counted, not fatal
    (d / "uf.json").write_text(json.dumps(rows))
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(d / "uf.parquet"))
    ds.save_to_disk(str(d / "uf_dir"))
    return d, rows


@pytest.mark.parametrize("name", ["uf.jsonl", "uf.json", "uf.parquet", "uf_dir"])
def test_local_sources_give_the_same_pairs_as_the_world(world_files, name):
    d, rows = world_files
    expected, _ = binarize(rows, DataConfig(strategy="mean_rating"))
    loaded, unreadable = load_rows(DataConfig(strategy="mean_rating", source=str(d / name)))
    got, _ = binarize(loaded, DataConfig(strategy="mean_rating"))
    assert got == expected
    assert unreadable == ({"unparseable_json": 1} if name == "uf.jsonl" else {})


def test_hub_source_passes_the_pinned_revision_and_split(monkeypatch, world_files):
    _, rows = world_files
    calls = []

    def fake_load_dataset(path, revision=None, split=None, **kw):  # the hub is unreachable here
        calls.append((path, revision, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    got, _ = load_rows(
        DataConfig(
            strategy="critique",
            source="openbmb/UltraFeedback",
            revision="40b436560ca83a8dba36114c22ab3c66e43f6d5e",
            max_rows=50,
        )
    )
    assert calls == [("openbmb/UltraFeedback", "40b436560ca83a8dba36114c22ab3c66e43f6d5e", "train")] and len(got) == 50


def test_a_file_that_is_not_ultrafeedback_is_one_clear_error(tmp_path):
    f = tmp_path / "other.jsonl"
    f.write_text('{"text": "hello"}\n' * 5)
    with pytest.raises(ConfigError, match="lack the UltraFeedback field 'instruction'"):
        prepare(DataConfig(strategy="mean_rating", source=str(f)))


def test_binarize_cli_writes_pairs_report_summary_and_plot(world_files, tmp_path):
    d, rows = world_files
    proc = cli(
        "notus_lab.binarize", "data=critique", f"data.source={d / 'uf.jsonl'}", f"out={tmp_path}", "format=parquet"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert set(pairs[0]) >= {"prompt", "chosen", "rejected", "score_chosen", "score_rejected", "row_index", "split"}
    assert all(rows[p["row_index"]]["instruction"] == p["prompt"] for p in pairs)
    report = json.loads((tmp_path / "data_report.json").read_text())
    assert report["pairs_out"] + report["held_out"]["pairs_out"] == len(pairs)
    assert report["rows_unreadable"] == {"unparseable_json": 1}
    assert "critique vs mean_rating" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "scores.png").read_bytes()[:4] == b"\x89PNG"
    trl = datasets.load_dataset("parquet", data_files=str(tmp_path / "pairs.parquet"), split="train")
    assert trl[0]["chosen"][0]["role"] == "assistant" and len(trl) == len(pairs)


def test_binarize_cli_decontaminates_and_saves_a_datasets_dir(world_files, tmp_path):
    d, rows = world_files
    questions = tmp_path / "truthfulqa_questions.txt"
    target = next(r["instruction"] for r in rows if r["source"] != "truthful_qa")
    questions.write_text(target.upper() + "\n")  # matched after normalization
    n_tqa = sum(r["source"] == "truthful_qa" for r in rows)
    n_match = sum(r["instruction"] == target and r["source"] != "truthful_qa" for r in rows)
    out = tmp_path / "out"
    proc = cli(
        "notus_lab.binarize",
        f"data.source={d / 'uf.json'}",
        "data.decontaminate=truthful_qa",
        f"data.decontaminate_questions={questions}",
        f"out={out}",
        "format=datasets",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "data_report.json").read_text())
    dropped = report["rows_dropped"].get("decontaminated", 0) + report["held_out"]["rows_dropped"].get(
        "decontaminated", 0
    )
    assert n_tqa > 0 and dropped == n_tqa + n_match
    saved = datasets.load_from_disk(str(out / "pairs_dataset"))
    assert len(saved) == report["pairs_out"] + report["held_out"]["pairs_out"]
    assert target not in {p[0]["content"] for p in saved["prompt"]}
