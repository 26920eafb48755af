"""The bundled world: calibrated to real UltraFeedback rows (README "The bundled world": 50 rows of
openbmb/UltraFeedback at revision 40b43656), texts independent of the
annotation knobs, a truth that any text can be scored by, and an answer that depends on a knob real data
cannot pin down."""

import pytest

from notus_lab.config.schema import DataConfig, WorldConfig
from notus_lab.data.audit import audit, truth_agreement
from notus_lab.data.pairs import binarize
from notus_lab.data.world import GOOD_FOR, TOPICS, generate_rows, prompt_topics, text_quality

# real rows (50 prompts x 4 completions, fixed vintage) and each figure's 95 % interval at that sample size
REAL = {
    "chosen_differs": (0.50, 0.36, 0.64),
    "critique_vs_mean_rating_correlation": (0.78, 0.72, 0.83),
    "top_critique_tied": (0.40, 0.27, 0.54),
    "top_mean_rating_tied": (0.18, 0.09, 0.31),
    "aspect_correlation": (0.71, 0.66, 0.76),
    "critique_half_points": (0.34, 0.28, 0.41),
}
MEAN = DataConfig(strategy="mean_rating")


def statistics_of(world: WorldConfig) -> dict:
    rows = list(generate_rows(world))
    found = audit(rows, MEAN, range(len(rows)))
    return {"chosen_differs": found["chosen_differs_critique_vs_mean_rating"], **found["annotation"]}


@pytest.mark.parametrize("bug_rate", [0.0, 0.2])
def test_default_world_matches_real_ultrafeedback_within_the_real_samples_uncertainty(bug_rate):
    """Bug off is the table of the issue; the default (0.2, ~1.7 % of completions bugged) keeps
    "chosen differs" near 50 % too."""
    stats = statistics_of(WorldConfig(critique_bug_rate=bug_rate))
    for key, (_, low, high) in REAL.items():
        if bug_rate and key != "chosen_differs":
            continue
        assert low <= stats[key] <= high, (key, stats[key])


def test_annotation_knobs_relabel_the_same_texts():
    a = list(generate_rows(WorldConfig(rows=50)))
    b = list(generate_rows(WorldConfig(rows=50, annotator_correlation=0.6, critique_noise=2.0, critique_bug_rate=1.0)))
    assert [r["instruction"] for r in a] == [r["instruction"] for r in b]
    assert [[c["response"] for c in r["completions"]] for r in a] == [
        [c["response"] for c in r["completions"]] for r in b
    ]
    assert [[c["overall_score"] for c in r["completions"]] for r in a] != [
        [c["overall_score"] for c in r["completions"]] for r in b
    ]


def test_shared_annotator_error_moves_the_answer_while_the_observed_agreement_stays():
    """How much of the aspects' agreement is shared error cannot be measured on real data. With the observed
    agreement held at 0.71, more shared error makes the mean rating a worse judge of the truth, and the
    data-level ranking of mean_rating against the fixed critique flips."""
    fixed = DataConfig(strategy="critique", vintage="fixed", tie_policy="drop")
    results = {}
    for rho in (0.1, 0.6):
        rows = list(generate_rows(WorldConfig(annotator_correlation=rho, critique_bug_rate=0.0)))
        stats = audit(rows, MEAN, range(len(rows)))["annotation"]
        assert stats["aspect_correlation"] == pytest.approx(0.71, abs=0.06)
        results[rho] = {
            name: truth_agreement(rows, binarize(rows, d)[0])["agreement"]
            for name, d in (("mean_rating", MEAN), ("critique_fixed", fixed))
        }
    assert results[0.1]["mean_rating"] > results[0.1]["critique_fixed"]
    assert results[0.6]["mean_rating"] < results[0.6]["critique_fixed"]


def test_the_bug_makes_the_critique_a_worse_judge_of_the_truth():
    rows = list(generate_rows(WorldConfig(critique_bug_rate=1.0)))
    buggy = truth_agreement(rows, binarize(rows, DataConfig(strategy="critique", tie_policy="keep"))[0])["agreement"]
    mean = truth_agreement(rows, binarize(rows, MEAN)[0])["agreement"]
    fixed = truth_agreement(
        rows, binarize(rows, DataConfig(strategy="critique", vintage="fixed", tie_policy="keep"))[0]
    )
    assert buggy < mean - 0.1 and buggy < fixed["agreement"] - 0.1


# ---------------------------------------------------------------------------------------------
# The truth read off any text


PROMPT = "explain the river , the violin and the harbor briefly ."


def adjectives(topic: str, good: bool) -> list[str]:
    from notus_lab.data.world import ADJECTIVES

    return sorted(GOOD_FOR[topic]) if good else sorted(set(ADJECTIVES) - GOOD_FOR[topic])


def answer(good: bool, topics=("river", "violin", "harbor")) -> str:
    return " ".join(
        f"the {t} is {adjectives(t, good)[i]} and {adjectives(t, good)[i + 1]} ." for i, t in enumerate(topics)
    )


def test_text_quality_scores_hand_made_answers():
    assert prompt_topics(PROMPT) == ("river", "violin", "harbor")
    assert text_quality(PROMPT, answer(good=True)) == 1.0
    assert text_quality(PROMPT, answer(good=False)) == 0.0
    other = [t for t in TOPICS if t not in ("river", "violin", "harbor")][:3]
    assert text_quality(PROMPT, answer(good=True, topics=other)) == 0.0  # off-topic: nothing appropriate
    assert text_quality(PROMPT, "precise " * 40) == 0.0  # a collapsed model's one word repeated
    assert text_quality(PROMPT, "") == 0.0 and text_quality(PROMPT, "the the the .") == 0.0
    one = answer(good=True).split(" . ")[0] + " ."
    assert text_quality(PROMPT, one) == pytest.approx(1 / 3)  # one of three topics covered
    assert text_quality(PROMPT, " ".join([one] * 3)) == pytest.approx(1 / 3 / 3)  # repeating it adds nothing
    half = answer(good=True) + " " + answer(good=False, topics=("river", "violin", "harbor"))
    assert text_quality(PROMPT, half) == pytest.approx(0.5)
    assert text_quality("write a poem .", answer(good=True)) == 0.0  # not a world prompt: no truth


def test_every_world_completion_scores_exactly_its_true_quality():
    for row in generate_rows(WorldConfig(rows=300, seed=3)):
        for c in row["completions"]:
            assert text_quality(row["instruction"], c["response"]) == pytest.approx(c["true_quality"])
