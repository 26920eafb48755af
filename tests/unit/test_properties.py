"""Invariants over generated rows (hypothesis), malformed ones mixed in."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from notus_lab.config.schema import DataConfig
from notus_lab.data.pairs import binarize

RATING = st.one_of(
    st.sampled_from(["1", "2", "3", "4", "5", "N/A"]),
    st.sampled_from(["five", "", "0", "7", "nan"]),
    st.integers(-2, 7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
)
SCORE = st.one_of(st.floats(1, 10), st.sampled_from([10.0, 1.0]), st.floats(allow_nan=True), st.text(max_size=3))
completion = st.fixed_dictionaries(
    {
        "response": st.one_of(st.sampled_from(["a", "b", "c", "d", "e"]), st.text(max_size=4)),
        "overall_score": SCORE,
        "annotations": st.fixed_dictionaries(
            {
                a: st.fixed_dictionaries({"Rating": RATING})
                for a in ("helpfulness", "honesty", "instruction_following", "truthfulness")
            }
        ),
    }
)
row = st.fixed_dictionaries(
    {"instruction": st.text(min_size=1, max_size=6), "completions": st.lists(completion, max_size=5)}
)
any_row = st.one_of(row, row, row, st.none(), st.integers(), st.fixed_dictionaries({"instruction": st.integers()}))
STRATEGIES = [
    DataConfig(strategy="mean_rating"),
    DataConfig(strategy="critique", tie_policy="keep"),
    DataConfig(strategy="multi_pair"),
    DataConfig(strategy="aspect", aspect="honesty"),
    DataConfig(strategy="critique_curated", tie_policy="keep"),
    DataConfig(strategy="mean_rating", rejected="lowest", min_margin=1.0),
]


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(any_row, max_size=12), which=st.integers(0, len(STRATEGIES) - 1))
def test_pairs_respect_the_rules_and_counts_add_up(rows, which):
    d = STRATEGIES[which]
    pairs, rep = binarize(rows, d)
    assert rep["rows_in"] == len(rows) == rep["rows_with_pairs"] + sum(rep["rows_dropped"].values())
    assert rep["pairs_out"] == len(pairs)
    for p in pairs:
        assert p["chosen"] != p["rejected"] and p["chosen_index"] != p["rejected_index"]
        if d.tie_policy == "drop":
            assert p["score_chosen"] > p["score_rejected"]
        else:
            assert p["score_chosen"] >= p["score_rejected"]
        assert p["score_chosen"] - p["score_rejected"] >= d.min_margin


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(any_row, min_size=1, max_size=10), which=st.integers(0, len(STRATEGIES) - 1))
def test_a_row_binarizes_the_same_alone_or_among_others(rows, which):
    d = replace(STRATEGIES[which], seed=3)
    together, _ = binarize(rows, d)
    alone = []
    for i, r in enumerate(rows):
        for p in binarize([r], d)[0]:
            alone.append({**p, "row_index": i})
    assert together == alone
