"""The published UltraFeedback sets as they are: rows built to each set's own schema (column names, chat
message lists, score columns, split names) are read with their scores, named in the report, trained on
end to end, and a split that is not there is one line listing the splits."""

import json

import pytest

from notus_lab.config.published_sets import KNOWN, default_split
from notus_lab.config.schema import DataConfig
from notus_lab.core.errors import ConfigError
from notus_lab.data.pairs import binarize
from notus_lab.data.sources import load_rows
from tests.helpers import cli
from tests.rows import completion, row

PROMPTS = [f"name a river near city {i}" for i in range(24)]


def chat(user, assistant):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def notus_v1_rows():  # argilla/ultrafeedback-binarized-preferences
    return [
        {
            "source": "evol_instruct",
            "instruction": p,
            "chosen_response": f"the good answer {i}",
            "chosen_avg_rating": 4.5,
            "chosen_model": "gpt-4",
            "rejected_response": f"a bad answer {i}",
            "rejected_avg_rating": 2.25 + (i % 3) * 0.5,
            "rejected_model": "alpaca-7b",
        }
        for i, p in enumerate(PROMPTS)
    ]


def cleaned_rows():  # argilla/ultrafeedback-binarized-preferences-cleaned
    return [
        {
            "source": "sharegpt",
            "prompt": p,
            "chosen": chat(p, f"the good answer {i}"),
            "chosen-rating": 5.0,
            "chosen-model": "gpt-4",
            "rejected": chat(p, f"a bad answer {i}"),
            "rejected-rating": 1.0 + i % 3,
            "rejected-model": "falcon-40b-instruct",
        }
        for i, p in enumerate(PROMPTS)
    ]


def h4_rows():  # HuggingFaceH4/ultrafeedback_binarized, train_prefs
    return [
        {
            "prompt": p,
            "prompt_id": f"{i:064x}",
            "chosen": chat(p, f"the good answer {i}"),
            "rejected": chat(p, f"a bad answer {i}"),
            "messages": chat(p, f"the good answer {i}"),
            "score_chosen": 8.0,
            "score_rejected": 8.0 if i % 4 == 0 else 4.0,
        }
        for i, p in enumerate(PROMPTS)
    ]


def openbmb_rows():  # openbmb/UltraFeedback at the fixed critique
    return [
        row(
            completion(f"the good answer {i}", ("5", "5", "4", "5"), 8.5, **{"fine-grained_score": 4.75}),
            completion(f"a bad answer {i}", ("2", "N/A", "2", "3"), 4.0, **{"fine-grained_score": 2.33}),
            instruction=p,
            source="flan_v2_niv2",
        )
        for i, p in enumerate(PROMPTS)
    ]


SETS = {
    "argilla_notus_v1": (notus_v1_rows, "prebinarized", (4.5, 2.25)),
    "argilla_cleaned": (cleaned_rows, "prebinarized", (5.0, 1.0)),
    "h4_ultrafeedback_binarized": (h4_rows, "prebinarized", (8.0, 8.0)),
    "openbmb_ultrafeedback": (openbmb_rows, "mean_rating", (4.75, 7 / 3)),
}


@pytest.mark.parametrize("schema", sorted(SETS))
def test_each_published_set_is_read_by_its_own_columns_with_its_scores(schema):
    make, strategy, first_scores = SETS[schema]
    pairs, report = binarize(
        make(), DataConfig(strategy=strategy, tie_policy="keep" if strategy == "prebinarized" else "drop")
    )
    assert report["schema"] == schema and report["pairs_out"] == len(PROMPTS) and report["rows_dropped"] == {}
    assert (pairs[0]["prompt"], pairs[0]["chosen"], pairs[0]["rejected"]) == (
        PROMPTS[0],
        "the good answer 0",
        "a bad answer 0",
    )
    assert (pairs[0]["score_chosen"], pairs[0]["score_rejected"]) == pytest.approx(first_scores)
    if schema == "h4_ultrafeedback_binarized":
        assert report["tie_pairs"] == 6  # H4 kept its ties; the scores show them


def test_min_margin_and_tie_policy_apply_to_a_published_sets_own_ratings():
    """A new user's case: 10 pairs, 5 of them ties, `min_margin=3 tie_policy=drop` used to keep all 10."""
    rows = [
        {
            "prompt": f"q{i}",
            "prompt_id": f"{i:064x}",
            "chosen": chat(f"q{i}", f"good {i}"),
            "rejected": chat(f"q{i}", f"bad {i}"),
            "score_chosen": 8.0,
            "score_rejected": 8.0 if i < 5 else 8.0 - i,
        }
        for i in range(10)
    ]  # margins: 0 for q0-q4, then 5, 6, 7, 8
    rows[9]["score_rejected"] = 6.0  # and 2 for q9: under 3
    pairs, report = binarize(rows, DataConfig(strategy="prebinarized", min_margin=3, tie_policy="drop"))
    assert [p["prompt"] for p in pairs] == ["q5", "q6", "q7", "q8"]
    assert report["rows_dropped"] == {"below_min_margin": 1, "tie": 5} and report["pairs_out"] == 4
    assert report["tie_pairs_in_set"] == 5 and report["tie_pairs"] == 0
    kept, report = binarize(rows, DataConfig(strategy="prebinarized", tie_policy="keep"))  # as published
    assert len(kept) == 10 and report["rows_dropped"] == {} and report["tie_pairs"] == 5
    margins = [
        p["score_chosen"] - p["score_rejected"]
        for p in binarize(notus_v1_rows(), DataConfig(strategy="prebinarized", min_margin=1.5, tie_policy="keep"))[0]
    ]
    assert sorted(set(margins)) == [1.75, 2.25]  # argilla's own ratings: 1.25 is under the margin


def test_pair_rules_on_a_set_without_scores_are_refused_in_one_line():
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(4)]
    with pytest.raises(ConfigError) as e:
        binarize(rows, DataConfig(strategy="prebinarized", source="pairs.jsonl", tie_policy="drop"))
    assert str(e.value) == (
        "data.tie_policy='drop' is invalid: this set (pairs) carries no chosen/rejected scores to "
        "apply it to; allowed keep"
    )
    with pytest.raises(ConfigError, match=r"^data.min_margin=1 is invalid: this set \(pairs\) carries no"):
        binarize(rows, DataConfig(strategy="prebinarized", source="pairs.jsonl", tie_policy="keep", min_margin=1))
    assert len(binarize(rows, DataConfig(strategy="prebinarized", source="pairs.jsonl", tie_policy="keep"))[0]) == 4


def test_rows_of_no_known_schema_are_one_line_naming_the_schemas():
    with pytest.raises(ConfigError) as e:
        binarize([{"question": "q", "answer": "a"}], DataConfig(strategy="prebinarized", source="x.jsonl"))
    assert "argilla_notus_v1 (instruction, chosen_response, rejected_response)" in str(e.value)
    assert "found ['answer', 'question']" in str(e.value) and "\n" not in str(e.value)


def test_a_sets_default_split_is_its_own():
    assert default_split("HuggingFaceH4/ultrafeedback_binarized") == "train_prefs"
    assert default_split("argilla/ultrafeedback-binarized-preferences") == "train"
    assert default_split("my/set", ["train_prefs", "test_prefs", "train_sft"]) == "train_prefs"
    assert default_split("my/set", ["only"]) == "only" and default_split("my/set", ["a", "b"]) == "train"
    assert KNOWN["openbmb/UltraFeedback"]["revision"].startswith("40b43656")


def test_the_hub_split_defaults_to_the_sets_own_and_a_missing_split_is_one_line(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, revision=None, split=None, **kw):  # the hub is unreachable here
        calls.append(split)
        if split not in ("train_prefs", "test_prefs"):
            raise ValueError(f"Unknown split \"{split}\". Should be one of ['train_prefs', 'test_prefs'].")
        return datasets.Dataset.from_list(h4_rows())

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows, _ = load_rows(DataConfig(strategy="prebinarized", source="HuggingFaceH4/ultrafeedback_binarized"))
    assert calls == ["train_prefs"] and len(rows) == len(PROMPTS)
    with pytest.raises(ConfigError) as e:
        load_rows(DataConfig(strategy="prebinarized", source="HuggingFaceH4/ultrafeedback_binarized", split="train"))
    assert str(e.value).startswith("data.split='train' is invalid:") and "'train_prefs', 'test_prefs'" in str(e.value)


@pytest.fixture(scope="module")
def h4_dir(tmp_path_factory):
    import datasets

    path = tmp_path_factory.mktemp("h4") / "ultrafeedback_binarized"
    datasets.DatasetDict(
        {"train_prefs": datasets.Dataset.from_list(h4_rows()), "test_prefs": datasets.Dataset.from_list(h4_rows()[:4])}
    ).save_to_disk(str(path))
    return path


def test_a_local_split_that_is_not_there_is_refused_before_anything_loads(h4_dir):
    proc = cli("notus_lab.binarize", "data=prebinarized", f"data.source={h4_dir}", "data.split=train")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: data.split='train' is invalid: allowed one of train_prefs, test_prefs"


def test_a_local_datasetdict_of_h4_reads_train_prefs_by_default(h4_dir, tmp_path):
    proc = cli("notus_lab.binarize", "data=prebinarized", f"data.source={h4_dir}", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "data_report.json").read_text())
    assert report["schema"] == "h4_ultrafeedback_binarized" and report["rows_in"] == len(PROMPTS) - 2  # 2 held out
