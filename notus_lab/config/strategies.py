"""Binarization strategies as a type. One word per concept:
- a **strategy** is what `data=` picks (a file of conf/data/): how UltraFeedback rows become (chosen, rejected) pairs.
  STRATEGIES below is keyed by those names (critique_fixed included); an option's `data.strategy` key names the
  strategy whose rule it applies (critique_fixed applies critique's, on `data.vintage: fixed`);
- its **signal** is how it scores each completion (notus_lab/data/signals.py): the critique `overall_score`, the
  mean of the four aspect ratings, or one aspect; `eval.signals` lists strategies whose pairs label held-out data;
- its **pair rule** is how the pairs are drawn from the scores: the best against one other (data.rejected,
  data.tie_policy, data.min_margin) or against every lower one; its **curation** drops or rescores the critique
  bug's signature; a **pre-binarized** strategy reads a published set's pairs as they are.
Code asks a strategy what it does here instead of comparing names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Strategy:
    name: str  # the `data=` option (conf/data/<name>.yaml)
    signal: str | None  # critique | mean_rating | aspect (data.aspect); None: the set's own pairs
    every_lower: bool  # the best completion against every strictly lower one (Notus v1.1), not against one
    curated: bool  # the critique bug's signature dropped or rescored (data.curate_action)
    prebinarized: bool  # pairs already chosen: read, never binarized
    rule: str = ""  # the `data.strategy` its option sets (its own name unless it applies another's rule)
    vintage: str = "as_is"  # the critique scores it reads: as_is | fixed (upstream's 2023-12-29 repair)

    def __post_init__(self):
        if not self.rule:
            object.__setattr__(self, "rule", self.name)

    @property
    def binarizes(self) -> bool:
        return not self.prebinarized


STRATEGIES = {
    s.name: s
    for s in (
        Strategy("critique", "critique", every_lower=False, curated=False, prebinarized=False),
        Strategy(
            "critique_fixed",
            "critique",
            every_lower=False,
            curated=False,
            prebinarized=False,
            rule="critique",
            vintage="fixed",
        ),
        Strategy("critique_curated", "critique", every_lower=False, curated=True, prebinarized=False),
        Strategy("mean_rating", "mean_rating", every_lower=False, curated=False, prebinarized=False),
        Strategy("aspect", "aspect", every_lower=False, curated=False, prebinarized=False),
        Strategy("multi_pair", "mean_rating", every_lower=True, curated=False, prebinarized=False),
        Strategy("prebinarized", None, every_lower=False, curated=False, prebinarized=True),
    )
}


NAMES = tuple(STRATEGIES)  # what `data=` offers
RULES = tuple(dict.fromkeys(s.rule for s in STRATEGIES.values()))  # what `data.strategy` may be


def strategy(name: str) -> Strategy:
    """A strategy by its `data=` name (a `data.strategy` value is always one: the strategy whose rule it is)."""
    return STRATEGIES[name]


def binarizing_options() -> list[str]:
    """The `data=` options that binarize raw rows: the ones whose pairs can label held-out data (eval.signals)."""
    return sorted(name for name, s in STRATEGIES.items() if s.binarizes)
