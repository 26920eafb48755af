"""The settings of a sequential study (hydra/sweeper=sequential: conf/hydra/sweeper/sequential.yaml gives each its
value), checked before any arm starts. What they do: notus_lab/study/sequential.py."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from notus_lab.core.errors import invalid

SPENDING = ("obrien_fleming", "pocock")
# the metrics a study can decide on: what every run records (metrics.json) and what the external judges write
# (notus_lab/study/external_judges.py), each prompt by prompt; lm-evaluation-harness's are lm_eval/<task>/<metric>
RUN_METRICS = ("generation/win_rate_vs_reference", "generation/policy_score", "truth_accuracy")
JUDGE_METRICS = (
    "alpaca_eval/win_rate",
    "alpaca_eval/length_controlled_winrate",
    "mt_bench/score",
    "mt_bench_pair/win_rate_adjusted",
)
STRATEGY_KEY = "data"  # what a study compares: the binarization strategy (data=)
SEED_KEY = "train.seed"  # what a sequential study adds in rounds
BOUNDARIES = ("joint", "union")


@dataclass(frozen=True)
class Settings:
    """`hydra.sweeper` of `hydra/sweeper=sequential`: conf/hydra/sweeper/sequential.yaml gives each its value."""

    margin: float  # delta: the equivalence margin, in the decision metric's units (required)
    alpha: float  # family-wise error over every look and pair, in (0, 0.5)
    first_seeds: int  # seeds of the first round, >= 2 (one seed measures no seed noise)
    seeds_per_round: int  # seeds each later round adds, >= 1
    max_seeds: int  # the most seeds any strategy gets, >= first_seeds
    budget_hours: float | None  # stop before a round that would pass this many device-hours (null: none)
    metric: str | None  # the metric that decides (null: the report's default, the judged win rate)
    spending: str  # obrien_fleming | pocock: how alpha is spread over the looks
    boundary: str  # joint (the looks' correlation, as group-sequential designs) | union (none)

    def check(self) -> Settings:
        """Raise the one-line error of the first setting out of range, or of the wrong type."""
        key = "hydra.sweeper."
        margin_allowed = "a number > 0 in the decision metric's units (e.g. 0.05 of win rate)"
        if self.margin is None:  # its home is study.margin (conf/hydra/sweeper/sequential.yaml reads it there)
            raise invalid(
                "study.margin",
                None,
                margin_allowed,
                why="hydra/sweeper=sequential needs it: the difference below which two strategies count "
                "as equally good",
            )
        if not (_number(self.margin) and self.margin > 0):
            raise invalid(
                "study.margin", self.margin, margin_allowed + ": the difference below which two strategies are as good"
            )
        if not (_number(self.alpha) and 0 < self.alpha < 0.5):
            raise invalid(key + "alpha", self.alpha, "a number in (0, 0.5)")
        _integer(key + "first_seeds", self.first_seeds, 2, " (one seed measures no seed noise)")
        _integer(key + "seeds_per_round", self.seeds_per_round, 1)
        _integer(key + "max_seeds", self.max_seeds, self.first_seeds, f" (first_seeds is {self.first_seeds})")
        if self.budget_hours is not None and not (_number(self.budget_hours) and self.budget_hours > 0):
            raise invalid(key + "budget_hours", self.budget_hours, "a number > 0 (device-hours), or null")
        if self.metric is not None and not deciding_metric(self.metric):
            raise invalid(
                key + "metric",
                self.metric,
                f"null (the judged win rate), one of {', '.join(RUN_METRICS + JUDGE_METRICS)}, or "
                "lm_eval/<task>/<metric>; one metric only (a study on several would need its error spent over "
                "all of them)",
            )
        if self.spending not in SPENDING:
            raise invalid(key + "spending", self.spending, f"one of {', '.join(SPENDING)}")
        if self.boundary not in BOUNDARIES:
            raise invalid(key + "boundary", self.boundary, f"one of {', '.join(BOUNDARIES)}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(key: str, value, least: int, why: str = "") -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
        raise invalid(key, value, f"an integer >= {least}{why}")


def deciding_metric(metric) -> bool:
    """Whether a study can decide on `metric` (one name, as the report's --metric spells it)."""
    if not isinstance(metric, str):
        return False
    parts = metric.split("/")
    return metric in RUN_METRICS + JUDGE_METRICS or (len(parts) == 3 and parts[0] == "lm_eval" and all(parts))


def check_design(settings: Settings, design) -> list[int]:
    """A sequential study's design (core/overrides.py: factors), before anything starts: the strategies it compares
    (data= with 2 or more values) and its first seeds (integers, at most max_seeds). Returns the first round's
    seeds (one given seed starts the list; none: 1, 2, ...)."""
    by_key = {f.key: f for f in design}
    strategies = by_key.get(STRATEGY_KEY)
    if strategies is None or len(set(strategies.values)) < 2:
        shown = ",".join(strategies.values) if strategies else None
        raise invalid(
            STRATEGY_KEY,
            shown,
            "2 or more strategies, e.g. data=critique_fixed,mean_rating (or an experiment that sweeps them)",
            why="hydra/sweeper=sequential compares strategies; with one there is no pair to decide",
        )
    given = by_key.get(SEED_KEY)
    if given is None:
        return list(range(1, 1 + settings.first_seeds))
    try:
        seeds = [int(v) for v in given.values]
    except ValueError:
        raise invalid(SEED_KEY, ",".join(given.values), "integers, e.g. train.seed=1,2") from None
    if len(set(seeds)) != len(seeds):
        raise invalid(SEED_KEY, ",".join(given.values), "distinct seeds", why="a seed given twice trains one arm twice")
    if len(seeds) == 1:  # one seed given: it starts the list
        seeds = list(range(seeds[0], seeds[0] + settings.first_seeds))
    if len(seeds) > settings.max_seeds:
        raise invalid(
            SEED_KEY,
            ",".join(given.values),
            f"at most hydra.sweeper.max_seeds={settings.max_seeds} seeds (or a larger max_seeds)",
            why=f"{len(seeds)} seeds given",
        )
    return seeds
