"""The bundled world as a positive control, asserted on judged generations: a reduced critique_vs_rating
study on data whose critique carries the bug at full strength. The buggy critique must lose to both the
mean rating and the repaired critique; the repaired critique and the mean rating are about equally good
judges of the truth here, so whatever the report says of them is small beside the bug's effect. (Equal truth
agreement of the training pairs does not make equal answers: the two rules still pick different pairs, and a
2-point judged difference between them is a claim the data may carry; Holm's procedure keeps such claims
family-wise at 5 %.)"""

import json

import pytest

from notus_lab.study.runs import read_runs
from tests.helpers import cli

pytestmark = pytest.mark.slow  # trains or builds models: the full suite, not the fast tier

# 4 seeds: the report's interval gives seed noise seeds - 1 degrees of freedom, and 2 seeds (1 df) could not
# carry even the bug's verdict; 300 held-out prompts of a 1000-row world
REDUCED = (
    "data.world.critique_bug_rate=1.0",
    "data.world.rows=1000",
    "data.test_size=300",
    "train.max_steps=40",
    "eval.signals=[]",
    "wandb.mode=disabled",
)
SEEDS = "train.seed=1,2,3,4"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("control") / "sweep"
    proc = cli(
        "notus_lab",
        "--multirun",
        "hydra/launcher=parallel",
        "+experiment=critique_vs_rating",
        "data=critique,critique_fixed,mean_rating",
        "beta=0.1",
        SEEDS,
        *REDUCED,
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli("notus_lab.report", str(sweep_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    return sweep_dir, json.loads((sweep_dir / "report.json").read_text()), (sweep_dir / "report.md").read_text()


def arm_values(summary: dict) -> dict:
    return {a["arm"]["data"]: a["mean"] for a in summary["arms"]}


def pooled(summary: dict, a: str, b: str) -> dict:
    return next(d for d in summary["differences"] if (d["a"], d["b"], d["scope"]) == (a, b, "all"))


def test_the_data_level_truth_is_what_the_control_assumes(study):
    """The premise, measured on each arm's own training pairs: the bug makes the critique a much worse
    judge of the truth; repaired, it is as good as the mean rating."""
    sweep_dir, _, _ = study
    agreement = {}
    for run in read_runs(sweep_dir):
        agreement.setdefault(run["overrides"]["data"], []).append(run["truth_agreement"])
    mean = {k: sum(v) / len(v) for k, v in agreement.items()}
    assert mean["mean_rating"] - mean["critique"] > 0.15 and mean["critique_fixed"] - mean["critique"] > 0.15
    assert abs(mean["mean_rating"] - mean["critique_fixed"]) < 0.03


def test_with_the_bug_on_the_mean_rating_model_writes_better_answers(study):
    sweep_dir, summary, text = study
    assert summary["metric"] == "generation/win_rate_vs_reference"  # judged generations decide, not reward accuracy
    d = pooled(summary, "critique", "mean_rating")
    assert d["method"].startswith("crossed random effects") and d["prompts"] == 300 and d["seeds"] == 4
    assert d["mean"] > 0.03 and d["excludes_zero"]
    assert "**mean_rating** beats **critique** on `generation/win_rate_vs_reference`" in text
    assert pooled(summary, "critique", "critique_fixed")["excludes_zero"]
    for seed in ("1", "2", "3", "4"):  # not an average hiding a reversal: every seed agrees
        runs = {
            r["overrides"]["data"]: r["metrics"]["generation/win_rate_vs_reference"]
            for r in read_runs(sweep_dir)
            if r["overrides"]["train.seed"] == seed
        }
        assert runs["mean_rating"] > runs["critique"] and runs["critique_fixed"] > runs["critique"]


def test_with_the_bug_repaired_the_two_good_signals_differ_by_far_less_than_the_bug(study):
    _, summary, text = study
    repaired = pooled(summary, "critique_fixed", "mean_rating")
    bug = min(pooled(summary, "critique", "mean_rating")["mean"], pooled(summary, "critique", "critique_fixed")["mean"])
    assert abs(repaired["mean"]) < bug / 2  # the bug's effect dwarfs whatever separates the two good signals
    assert -0.05 < repaired["adjusted_ci"][0] and repaired["adjusted_ci"][1] < 0.05  # within 5 points either way
    assert sum("**critique**" in v for v in summary["verdicts"]) == 2  # both bug verdicts are there


def test_the_judged_ranking_agrees_in_sign_with_the_data_level_truth(study):
    _, summary, text = study
    checks = {(c["a"], c["b"]): c for c in summary["sign_check"]}
    assert checks[("critique", "mean_rating")]["agrees"] is True
    assert checks[("critique", "critique_fixed")]["agrees"] is True
    # the repaired pair's truth agreements differ by less than 0.03: a sign there is noise, so it is not checked
    assert "### Positive control: the judged ranking against the data-level truth" in text
