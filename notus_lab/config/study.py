"""The settings of a sequential study (hydra/sweeper=sequential: conf/hydra/sweeper/sequential.yaml gives each its
value), checked before any arm starts. What they do: notus_lab/study/sequential.py."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from notus_lab.core.errors import invalid

SPENDING = ("obrien_fleming", "pocock")
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
        """Raise the one-line error of the first setting out of range."""
        key = "hydra.sweeper."
        if self.margin is None:  # its home is study.margin (conf/hydra/sweeper/sequential.yaml reads it there)
            raise invalid(
                "study.margin",
                None,
                "a number > 0 in the decision metric's units (e.g. 0.05 of win rate)",
                why="hydra/sweeper=sequential needs it: the difference below which two strategies count "
                "as equally good",
            )
        if not (isinstance(self.margin, (int, float)) and self.margin > 0):
            raise invalid(
                key + "margin",
                self.margin,
                "a number > 0 in the decision metric's units (e.g. 0.05 of "
                "win rate): the difference below which two strategies are "
                "as good",
            )
        if not 0 < self.alpha < 0.5:
            raise invalid(key + "alpha", self.alpha, "a number in (0, 0.5)")
        if self.first_seeds < 2:
            raise invalid(key + "first_seeds", self.first_seeds, "an integer >= 2 (one seed measures no seed noise)")
        if self.seeds_per_round < 1:
            raise invalid(key + "seeds_per_round", self.seeds_per_round, "an integer >= 1")
        if self.max_seeds < self.first_seeds:
            raise invalid(key + "max_seeds", self.max_seeds, f"an integer >= first_seeds ({self.first_seeds})")
        if self.budget_hours is not None and not self.budget_hours > 0:
            raise invalid(key + "budget_hours", self.budget_hours, "a number > 0 (device-hours), or null")
        if self.spending not in SPENDING:
            raise invalid(key + "spending", self.spending, f"one of {', '.join(SPENDING)}")
        if self.boundary not in BOUNDARIES:
            raise invalid(key + "boundary", self.boundary, f"one of {', '.join(BOUNDARIES)}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)
