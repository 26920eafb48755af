"""A sequential study's state on disk and what each round decides, read from run dirs by the report's own
functions. `<sweep dir>/rounds.json` is written atomically after every round:

    settings  every hydra.sweeper setting, as used
    design    the arms' settings (cells), the first round's seeds, the family of pairs
    rounds    [{round, seeds, launched, missing, pairs: [{a, b, scope, mean, interval, alpha, decision, reason}],
              unmeasured: [{strategy, scope, given_up, reason}], device_hours, metric}]
    failures  {arm dir: failed attempts} (an arm is retried once, then counted missing)
    outcome   decided | max_seeds | budget | futile | not_measured, once the study stops

The Hydra sweeper (hydra_plugins/notus_lab_sweepers) launches the arms; everything it decides comes from here."""

from __future__ import annotations

import json
import time
from pathlib import Path

from notus_lab.core.errors import ConfigError
from notus_lab.core.files import write_json
from notus_lab.study import sequential
from notus_lab.study.cost import sweep_cost
from notus_lab.study.runs import default_metric, factors, has, read_runs
from notus_lab.study.stats import ALPHA, components, detectable, pooled_matrices

ROUNDS = "rounds.json"


def load(sweep_dir: Path) -> dict | None:
    path = Path(sweep_dir) / ROUNDS
    return json.loads(path.read_text()) if path.exists() else None


def save(sweep_dir: Path, state: dict) -> None:
    write_json(Path(sweep_dir) / ROUNDS, state)


def resume(sweep_dir: Path, settings: sequential.Settings, design: dict) -> dict:
    """The study's state: a new one, or the one on disk when its settings and design are this command's (a raised
    budget_hours may continue a study that stopped at its budget)."""
    state = load(sweep_dir)
    if state is None:
        return {
            "settings": settings.as_dict(),
            "design": design,
            "rounds": [],
            "failures": {},
            "outcome": None,
            "started": time.time(),
        }
    for key, value in settings.as_dict().items():
        if key != "budget_hours" and state["settings"].get(key) != value:
            raise ConfigError(
                f"hydra.sweeper.{key}={value!r} is invalid: this sweep's {ROUNDS} ran with "
                f"{state['settings'].get(key)!r}; allowed the same value, or a new sweep_name"
            )
    if state["design"] != design:
        raise ConfigError(
            f"sweep={Path(sweep_dir).name!r} is invalid: its {ROUNDS} has another design (arms or "
            "first seeds); allowed the same command, or a new sweep_name"
        )
    if state["outcome"] == "budget" and settings.budget_hours != state["settings"].get("budget_hours"):
        state["outcome"] = None  # a new budget: go on from the last round
    state["settings"] = settings.as_dict()
    return state


def study_runs(sweep_dir: Path, names: set[str]) -> list[dict]:
    """The study's own arms among the sweep dir's run dirs (another sweep may share the dir)."""
    return [r for r in read_runs(sweep_dir) if r["name"] in names] if Path(sweep_dir).is_dir() else []


def unjudged(runs: list[dict], metric: str | None) -> list[str]:
    """Finished arms that lack the deciding metric (an external judge's, attached later by notus_lab.external)."""
    if metric is None:
        return []
    return sorted(r["name"] for r in runs if r["status"] == "finished" and not has(r, metric))


def evaluate(
    runs: list[dict], settings: sequential.Settings, schedule: list[int], k: int, family: int, previous: dict
) -> tuple[list[dict], str]:
    """The look after round k: every pooled pair's record (sequential.look), and the metric that decided."""
    finished = [r for r in runs if r["status"] == "finished"]
    metric = settings.metric or default_metric(runs)
    at = sequential.levels(settings, schedule, family)
    pairs = [
        {"a": p["a"], "b": p["b"], "scope": p["scope"], "stats": sequential.pair_stats(p["matrix"], at[k])}
        for p in pooled_matrices(finished, metric, factors(finished))
        if p["matrix"].shape[0] >= 2
    ]
    records, _ = sequential.look(pairs, previous, settings, schedule[k], at[-1])
    stats = {(p["a"], p["b"], p["scope"]): p["stats"] for p in pairs}
    for r in records:  # what this look could have found: its design's detectable difference at the look's level
        s = stats.get((r["a"], r["b"], r["scope"]))
        if s is not None and not r.get("carried") and r["decision"] not in sequential.CLAIMS:
            r["detectable"] = detectable(components(s), ALPHA / r["alpha"])
    return records, metric


def last_pairs(state: dict) -> list[dict]:
    """The pairs' records at the study's last look (none before the first)."""
    return state["rounds"][-1]["pairs"] if state["rounds"] else []


def resting(pairs: list[dict]) -> set[tuple[str, str]]:
    """(strategy, scope) that get no more seeds after a look with these `pairs`: beaten by another strategy, or
    with no pair left that says `continue` (its claims are final; a futile pair waits for no seeds). A strategy no
    pair measured yet is never resting."""
    measured = {(s, r["scope"]) for r in pairs for s in (r["a"], r["b"])}
    live = {(s, r["scope"]) for r in pairs if r["decision"] == "continue" for s in (r["a"], r["b"])}
    return (measured - live) | sequential.beaten(pairs)


def unmeasured(
    records: list[dict], arms_of: dict, finished: set[str], failures: dict, given_up: set[tuple[str, str]]
) -> list[dict]:
    """The design's (strategy, scope) that no pair measured at this look, each with why: its arms that finished,
    failed twice or are missing. One whose every arm failed twice and none ever finished is given up: it gets no
    more seeds (a config that crashes would only crash again), and the study cannot be decided without it."""
    measured = {(s, r["scope"]) for r in records for s in (r["a"], r["b"])}
    out = []
    for (strategy, scope), names in sorted(arms_of.items()):
        if (strategy, scope) in measured:
            continue
        done = [n for n in names if n in finished]
        dead = [n for n in names if n not in finished and failures.get(n, 0) >= 2]
        gave_up = (strategy, scope) in given_up or (bool(names) and not done and len(dead) == len(names))
        if gave_up:
            why = f"no arm finished: {len(dead)} arm(s) failed twice (see {dead[0]}/failed.json)" if dead else ""
            why = why or "no arm finished in an earlier round"
        elif done:
            why = f"{len(done)} arm(s) finished, but no other strategy shares 2 of their seeds yet"
        else:
            why = f"none of its {len(names)} arm(s) finished yet"
        out.append({"strategy": strategy, "scope": scope, "given_up": gave_up, "reason": why})
    return out


def given_up(state: dict) -> set[tuple[str, str]]:
    """(strategy, scope) the study gave up on at an earlier look: every arm failed twice."""
    return {(u["strategy"], u["scope"]) for r in state["rounds"] for u in r.get("unmeasured", []) if u["given_up"]}


def spent_hours(runs: list[dict]) -> tuple[float, float | None]:
    """Device-hours the study's finished arms recorded, and the mean per arm (None before any finished)."""
    cost = sweep_cost([r for r in runs if r["status"] == "finished"])
    return (cost["total_device_hours"], cost["per_run_device_hours"]) if cost else (0.0, None)


def stop(
    records: list[dict],
    seeds: int,
    settings: sequential.Settings,
    spent: float,
    per_arm: float | None,
    next_arms: int,
    unmeasured: dict | None = None,
) -> str | None:
    """The outcome after a look, the budget included: the next round must fit at the cost measured so far.
    `unmeasured`: sequential.outcome's."""
    end = sequential.outcome(records, seeds, settings, unmeasured)
    if (
        end is None
        and settings.budget_hours is not None
        and per_arm is not None
        and spent + next_arms * per_arm > settings.budget_hours
    ):
        return "budget"
    return end


def progress(state: dict, done: int, total: int) -> str:
    """One line between rounds: the round, arms done, elapsed time, the decisions so far."""
    last = state["rounds"][-1]
    minutes = (time.time() - state["started"]) / 60
    counts = {}
    for r in last["pairs"]:
        counts[r["decision"]] = counts.get(r["decision"], 0) + 1
    decisions = ", ".join(f"{n} {d}" for d, n in sorted(counts.items())) or "no pair measured yet"
    missing = [u["strategy"] for u in last.get("unmeasured", [])]
    if missing:
        decisions += f"; not measured: {', '.join(missing)}"
    end = f"; study {state['outcome']}" if state["outcome"] else ""
    return (
        f"round {last['round']}: seeds {len(last['seeds'])} of at most {state['settings']['max_seeds']}, "
        f"{done}/{total} arms finished, {minutes:.1f} min, {last['device_hours']:.3g} device-h; {decisions}{end}"
    )
