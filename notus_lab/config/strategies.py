"""Binarization strategies as a type. One word per concept:
- a **strategy** is what `data=` picks (a file of conf/data/): how UltraFeedback rows become (chosen, rejected) pairs;
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
    name: str
    signal: str | None  # critique | mean_rating | aspect (data.aspect); None: the set's own pairs
    every_lower: bool  # the best completion against every strictly lower one (Notus v1.1), not against one
    curated: bool  # the critique bug's signature dropped or rescored (data.curate_action)
    prebinarized: bool  # pairs already chosen: read, never binarized

    @property
    def binarizes(self) -> bool:
        return not self.prebinarized


STRATEGIES = {
    s.name: s
    for s in (
        Strategy("critique", "critique", every_lower=False, curated=False, prebinarized=False),
        Strategy("critique_curated", "critique", every_lower=False, curated=True, prebinarized=False),
        Strategy("mean_rating", "mean_rating", every_lower=False, curated=False, prebinarized=False),
        Strategy("aspect", "aspect", every_lower=False, curated=False, prebinarized=False),
        Strategy("multi_pair", "mean_rating", every_lower=True, curated=False, prebinarized=False),
        Strategy("prebinarized", None, every_lower=False, curated=False, prebinarized=True),
    )
}


def strategy(name: str) -> Strategy:
    return STRATEGIES[name]


def binarizing_options() -> list[str]:
    """The `data=` options that binarize raw rows: the ones whose pairs can label held-out data (eval.signals)."""
    from notus_lab.config.options import group_options, load_option

    return [o for o in group_options("data") if STRATEGIES[load_option("data", o).strategy].binarizes]
