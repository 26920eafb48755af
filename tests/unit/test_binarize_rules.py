"""Binarization rules on hand-computed rows (field notes §1)."""

from dataclasses import replace

import pytest

from notus_lab.config.schema import DataConfig
from notus_lab.data.audit import audit
from notus_lab.data.pairs import binarize, split_rows
from tests.rows import completion as C
from tests.rows import row as R

MEAN = DataConfig(strategy="mean_rating", tie_policy="drop")
CRIT = DataConfig(strategy="critique", tie_policy="keep")


def test_mean_rating_skips_na_in_the_mean():
    # a: (5 + 3 + 3) / 3 = 3.667 with honesty N/A; counted as 0 it would be 2.75 and lose to b (3.0)
    r = R(C("a", ("5", "N/A", "3", "3")), C("b", ("3", "3", "3", "3")))
    pairs, rep = binarize([r], MEAN)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("a", "b")]
    assert pairs[0]["score_chosen"] == pytest.approx(11 / 3) and pairs[0]["score_rejected"] == 3.0


def test_mean_rating_rejected_is_strictly_lower_and_ties_drop_the_row():
    tie = R(C("a", ("4",) * 4), C("b", ("4",) * 4), C("c", ("4",) * 4))
    pairs, rep = binarize([tie], MEAN)
    assert pairs == [] and rep["rows_dropped"] == {"no_valid_pair": 1}
    # top tie with one lower: the rejected can only be the lower one, whatever the seed
    r = R(C("a", ("4",) * 4), C("b", ("4",) * 4), C("c", ("2",) * 4))
    for seed in range(20):
        (p,), _ = binarize([r], replace(MEAN, seed=seed))
        assert (p["chosen"], p["rejected"]) == ("a", "c")  # first of the tied best wins


def test_critique_keeps_ties_and_first_best_wins():
    r = R(C("a", overall=7.0), C("b", overall=7.0), C("c", overall=7.0))
    rejected = {binarize([r], replace(CRIT, seed=s))[0][0]["rejected"] for s in range(30)}
    assert rejected == {"b", "c"}  # random among the other completions, ties kept
    pairs, rep = binarize([r], CRIT)
    assert pairs[0]["chosen"] == "a" and rep["tie_pairs"] == 1


def test_all_equal_critique_keeps_a_pair_mean_rating_drops_it():
    r = R(C("a", ("3",) * 4, 6.0), C("b", ("3",) * 4, 6.0))
    assert len(binarize([r], CRIT)[0]) == 1
    assert len(binarize([r], MEAN)[0]) == 0


def test_fewer_than_two_completions_is_dropped_and_counted():
    rows = [R(C("only")), R()]
    for d in (MEAN, CRIT):
        pairs, rep = binarize(rows, d)
        assert pairs == [] and rep["rows_dropped"] == {"fewer_than_2_completions": 2}


def test_the_ten_score_bug_fools_critique_and_curation_catches_it():
    # "bad" had a critique of 1 written as 10; its aspect ratings are all 1
    r = R(C("good", ("5",) * 4, 8.0), C("bad", ("1",) * 4, 10.0), C("meh", ("3",) * 4, 5.0))
    (p,), _ = binarize([r], CRIT)
    assert p["chosen"] == "bad"
    (p,), _ = binarize([r], MEAN)
    assert p["chosen"] == "good"
    dropped, rep = binarize([r], DataConfig(strategy="critique_curated", tie_policy="keep", curate_action="drop"))
    assert dropped == [] and rep["rows_dropped"] == {"bug_signature": 1}
    rescored, _ = binarize([r], DataConfig(strategy="critique_curated", curate_action="rescore", rejected="lowest"))
    assert (rescored[0]["chosen"], rescored[0]["rejected"], rescored[0]["score_rejected"]) == ("good", "bad", 1.0)
    # upstream's fix: a 10 whose fine-grained mean is <= 2 becomes 1
    (p,), _ = binarize([r], replace(CRIT, vintage="fixed", rejected="lowest"))
    assert (p["chosen"], p["rejected"]) == ("good", "bad")
    assert audit([r], MEAN, [0])["bug_signature_completions"] == 1


def test_min_margin_lowest_and_multi_pair():
    r = R(C("a", ("5",) * 4), C("b", ("4",) * 4), C("c", ("2",) * 4), C("d", ("4",) * 4))
    (p,), _ = binarize([r], replace(MEAN, rejected="lowest"))
    assert p["rejected"] == "c"
    (p,), _ = binarize([r], replace(MEAN, min_margin=2.0))
    assert p["rejected"] == "c"  # only c is 2+ below
    assert binarize([r], replace(MEAN, min_margin=3.5))[1]["rows_dropped"] == {"no_valid_pair": 1}
    pairs, rep = binarize([r], DataConfig(strategy="multi_pair"))
    assert sorted(p["rejected"] for p in pairs) == ["b", "c", "d"] and {p["chosen"] for p in pairs} == {"a"}
    assert rep["pairs_out"] == 3 and rep["rows_with_pairs"] == 1


def test_aspect_uses_one_rating_and_na_makes_a_completion_unusable():
    r = R(C("a", ("2", "N/A", "5", "5")), C("b", ("4", "1", "1", "1")), C("c", ("3", "5", "1", "1")))
    (p,), _ = binarize([r], DataConfig(strategy="aspect", aspect="helpfulness", rejected="lowest"))
    assert (p["chosen"], p["rejected"]) == ("b", "a")
    (p,), rep = binarize([r], DataConfig(strategy="aspect", aspect="honesty"))
    assert (p["chosen"], p["rejected"]) == ("c", "b") and rep["completions_dropped"] == {"no_ratings": 1}


def test_malformed_completions_and_rows_are_counted_by_reason():
    rows = [
        R(C("a", ("5", "5", "five", "5")), C("b"), C("c", ("1",) * 4)),  # malformed rating -> a unusable
        R(C("", ("5",) * 4), C("x", ("2",) * 4)),  # empty response -> < 2 valid
        R(C("same", ("5",) * 4), C("same", ("1",) * 4), C("z", ("3",) * 4)),  # duplicate response
        "not a row",
        {"completions": []},
        R(C("a"), C("b", ("1",) * 4), instruction="   "),
    ]
    pairs, rep = binarize(rows, MEAN)
    assert rep["completions_dropped"] == {"malformed_rating": 1, "empty_response": 1, "duplicate_response": 1}
    assert rep["rows_dropped"] == {
        "fewer_than_2_valid_completions": 1,
        "not_an_object": 1,
        "missing_instruction": 1,
        "empty_instruction": 1,
    }
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("b", "c"), ("same", "z")]
    assert rep["rows_in"] == rep["rows_with_pairs"] + sum(rep["rows_dropped"].values())


def test_decontamination_drops_truthful_qa_and_listed_questions():
    rows = [
        R(C("a"), C("b", ("1",) * 4), source="truthful_qa"),
        R(C("a"), C("b", ("1",) * 4), instruction="What happens if you eat watermelon seeds?"),
        R(C("a"), C("b", ("1",) * 4), instruction="keep me"),
    ]
    d = replace(MEAN, decontaminate="truthful_qa")
    pairs, rep = binarize(rows, d, questions=frozenset({"what happens if you eat watermelon seeds"}))
    assert [p["prompt"] for p in pairs] == ["keep me"] and rep["rows_dropped"] == {"decontaminated": 2}


def test_prebinarized_accepts_strings_and_messages():
    rows = [
        {"prompt": "p", "chosen": "c", "rejected": "r", "score_chosen": 9},
        {
            "prompt": [{"role": "user", "content": "p2"}],
            "chosen": [{"role": "user", "content": "p2"}, {"role": "assistant", "content": "c2"}],
            "rejected": [{"role": "assistant", "content": "r2"}],
        },
        {"prompt": "p3", "chosen": "same", "rejected": "same"},
    ]
    pairs, rep = binarize(rows, DataConfig(strategy="prebinarized", tie_policy="keep"))
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [("p", "c", "r"), ("p2", "c2", "r2")]
    assert rep["rows_dropped"] == {"duplicate_response": 1}


def test_held_out_prompts_are_the_same_for_every_strategy_and_never_split():
    rows = [R(C("a"), C("b", ("1",) * 4), instruction=f"prompt {i % 40}") for i in range(100)]
    train, test = split_rows(rows, 0.25, seed=42)
    assert len(test) > 0 and set(train).isdisjoint(test) and len(train) + len(test) == 100
    test_prompts = {rows[i]["instruction"] for i in test}
    assert len(test_prompts) == 10 and not test_prompts & {rows[i]["instruction"] for i in train}
    assert split_rows(rows, 0.25, seed=42) == (train, test)  # pure function of prompts and seed
    assert split_rows(rows, 0.25, seed=7)[1] != test


# ---------------------------------------------------------------------------------------------
# The two published corners of experiments/signal_vs_pair_rule.yaml, on one hand-made row


def corner_row(instruction="which river is longest?"):
    return R(
        C("c0 confident and wrong", ("3", "3", "3", "3"), 8.0),
        C("c1 careful and right", ("5", "5", "4", "5"), 8.0),
        C("c2 right, terse", ("4", "4", "4", "4"), 6.0),
        C("c3 right, rambling", ("4", "4", "4", "4"), 4.0),
        instruction=instruction,
    )


def corner_picks(strategy, tie_policy, rejected="random", rows=None):
    """{(chosen, rejected)} over 40 values of data.seed: which pairs the rule can draw."""
    picks = set()
    for seed in range(40):
        d = DataConfig(
            strategy=strategy,
            tie_policy=tie_policy,
            rejected=rejected,
            seed=seed,
            vintage="fixed" if strategy == "critique" else "as_is",
        )
        pairs, _ = binarize(rows or [corner_row()], d)
        picks |= {(p["chosen_index"], p["rejected_index"]) for p in pairs}
    return picks


def test_the_h4_zephyr_corner_is_critique_random_keep():
    """HuggingFaceH4/ultrafeedback_binarized: the highest overall_score is chosen (the first on a tie) and the rejected
    is a random one of the OTHER completions, a tied one included (alignment-handbook's binarization)."""
    assert corner_picks("critique", "keep") == {(0, 1), (0, 2), (0, 3)}
    # a row whose completions all score the same is still a pair under H4's rule
    flat = R(C("a", overall=7.0), C("b", overall=7.0), instruction="flat")
    assert corner_picks("critique", "keep", rows=[flat]) == {(0, 1)}


def test_the_argilla_notus_corner_is_mean_rating_random_drop():
    """argilla/ultrafeedback-binarized-preferences: the highest mean of the four ratings is chosen and the rejected
    is a random completion with a STRICTLY lower mean; a prompt where none is lower is dropped."""
    assert corner_picks("mean_rating", "drop") == {(1, 0), (1, 2), (1, 3)}
    flat = R(C("a", ("4", "4", "4", "4")), C("b", ("4", "4", "4", "4")), instruction="flat")
    pairs, report = binarize([flat], DataConfig(strategy="mean_rating", tie_policy="drop"))
    assert pairs == [] and report["rows_dropped"] == {"no_valid_pair": 1}


def test_the_factorial_cells_between_the_corners_change_one_rule_each():
    assert corner_picks("critique", "drop") == {(0, 2), (0, 3)}  # H4's signal, ties dropped
    assert corner_picks("critique", "keep", "lowest") == {(0, 3)}  # H4's signal, the lowest rejected
    assert corner_picks("mean_rating", "keep") == {(1, 0), (1, 2), (1, 3)}  # no tie with the top: keep = drop here
    assert corner_picks("mean_rating", "drop", "lowest") == {(1, 0)}
