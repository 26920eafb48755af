"""notus_lab's Hydra sweepers (Hydra finds plugins only under the `hydra_plugins` namespace).

- `hydra/sweeper=notus` (conf/config.yaml's default): Hydra's BasicSweeper, which also tells the arms how many
  they are (progress.json), so each prints one line as it finishes instead of its whole output.
- `hydra/sweeper=sequential`: seeds in rounds until every pair of strategies is decided, through whatever launcher
  is configured (parallel, slurm, slurm_multinode). The rule is notus_lab/study/sequential.py; the state on disk
  and what a round decides, notus_lab/study/rounds.py.
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from notus_lab.core.run_dir import RunDir
from notus_lab.study.runs import SEED_KEYS

log = logging.getLogger(__name__)

SEED_KEY = SEED_KEYS[0]  # train.seed: the key the sweeper owns


class _Announcing:
    """The configured launcher, writing <sweep dir>/progress.json (the arms, when this launch started) before each
    launch: an arm reads it to print "k/N" when it finishes (notus_lab/core/console.py: arm_line)."""

    def __init__(self, launcher, sweep_dir: Path):
        self.launcher, self.sweep_dir = launcher, sweep_dir

    def launch(self, job_overrides, initial_job_idx: int):
        from notus_lab.config.science import run_dir_name
        from notus_lab.core.files import write_json

        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        values = {}
        for o in (x for job in job_overrides for x in job):
            key, _, value = o.lstrip("+~").partition("=")
            values.setdefault(key, set()).add(value)
        swept = sorted(k for k, v in values.items() if len(v) > 1 or k == SEED_KEY)
        # started: this launch (a round), so an arm's ETA is from the arms of its own round
        write_json(
            self.sweep_dir / "progress.json",
            {"started": time.time(), "swept": swept, "arms": [run_dir_name(list(o)) for o in job_overrides]},
        )
        return self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx)


class NotusSweeper(Sweeper):
    """Hydra's BasicSweeper, whose launches announce their arms first. It holds a BasicSweeper rather than
    subclassing it: Hydra's plugin scan re-executes its core plugins' modules, so the class a subclass was made
    from is not always the one BasicSweeper's own super() call finds."""

    def __init__(self, max_batch_size=None, params=None) -> None:
        self.max_batch_size, self.params = max_batch_size, params or {}

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        self.hydra_context, self.config = hydra_context, config
        self.basic = BasicSweeper(max_batch_size=self.max_batch_size, params=self.params)
        self.basic.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.basic.launcher = self.launcher = _Announcing(self.basic.launcher, Path(config.hydra.sweep.dir))

    def sweep(self, arguments: list[str]) -> Any:
        return self.basic.sweep(arguments)


class SequentialSweeper(NotusSweeper):
    """Rounds of seeds until every pair of strategies is decided (notus_lab/study/sequential.py)."""

    def __init__(self, params=None, max_batch_size=None, **settings) -> None:
        """`settings`: every field of notus_lab.config.study.Settings, as conf/hydra/sweeper/sequential.yaml (their
        one home) gives them."""
        from notus_lab.config.study import Settings

        super().__init__(max_batch_size=max_batch_size, params=params)
        self.settings = Settings(**settings).check()

    def sweep(self, arguments: list[str]) -> Any:
        from notus_lab.study import rounds

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        cells, first = self._design(arguments)
        design = {"cells": cells, "first_seeds": first}
        state = rounds.resume(sweep_dir, self.settings, design)
        returns = []
        state.pop("waiting", None)
        while state["outcome"] is None and not state.get("waiting"):
            returns.append(self._round(sweep_dir, state, cells, first))
        if state.get("waiting"):
            w = state["waiting"]
            print(
                f"round {len(state['rounds']) + 1} trained; waiting for `{w['metric']}` on {len(w['arms'])} arm(s): "
                f"attach the judges' files (python -m notus_lab.external {sweep_dir} ...), then run the same "
                "command again",
                flush=True,
            )
            return returns
        self._finish(sweep_dir, state, len(state["rounds"]))
        return returns

    def _design(self, arguments: list[str]) -> tuple[list[list[str]], list[int]]:
        """The arms' settings without the seed (one list of overrides per cell), and the first round's seeds."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments))
        lists, seeds = [], None
        for o in overrides:
            key = o.get_key_element()
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            if key.lstrip("+") == SEED_KEY:
                seeds = [int(v) for v in values]
            else:
                lists.append([f"{key}={v}" for v in values])
        if seeds is None or len(seeds) < 2:  # one seed given: it starts the list
            start = seeds[0] if seeds else 1
            seeds = list(range(start, start + self.settings.first_seeds))
        return [list(c) for c in itertools.product(*lists)], seeds

    def _seeds(self, first: list[int], count: int) -> list[int]:
        more = count - len(first)
        return first[:count] + list(range(max(first) + 1, max(first) + 1 + max(more, 0)))

    def _round(self, sweep_dir: Path, state: dict, cells: list[list[str]], first: list[int]) -> list:
        from notus_lab.config.science import run_dir_name
        from notus_lab.study import rounds, sequential
        from notus_lab.study.runs import STRATEGY_KEY, stratum

        schedule = sequential.looks(self.settings, len(first))
        k = len(state["rounds"])
        seeds = self._seeds(first, schedule[k])
        resting = rounds.resting(rounds.last_pairs(state))
        design_names = {run_dir_name(c + [f"{SEED_KEY}={s}"]) for c in cells for s in seeds}
        given = [dict(o.lstrip("+~").split("=", 1) for o in c) for c in cells]
        swept = sorted(key for key in given[0] if len({g[key] for g in given}) > 1)  # as the report names scopes
        scopes = [(g[STRATEGY_KEY], stratum(g, swept)) for g in given]

        # every arm this look rests on, by run dir name (the name of a job's overrides is parsed once)
        jobs = {
            run_dir_name(j): j
            for c, scope in zip(cells, scopes)
            if scope not in resting
            for j in (c + [f"{SEED_KEY}={s}"] for s in seeds)
        }
        results, launched = [], set()
        for attempt in range(2):  # a failed arm is retried once, then counted missing
            todo = [name for name in jobs if self._pending(sweep_dir, name, state)]
            if not todo:
                break
            launched.update(todo)
            log.info("round %d, attempt %d: %d arm(s) to run", k + 1, attempt + 1, len(todo))
            results += self.launcher.launch([jobs[n] for n in todo], initial_job_idx=self._next_idx(len(todo)))
            for name, result in zip(todo, results[-len(todo) :]):
                if result.status != JobStatus.COMPLETED or not RunDir(sweep_dir / name).metrics.exists():
                    state["failures"][name] = state["failures"].get(name, 0) + 1
        runs = rounds.study_runs(sweep_dir, design_names)
        unjudged = rounds.unjudged(runs, self.settings.metric)
        if unjudged:  # external judges (AlpacaEval, MT-Bench) come back later: the look waits for them
            state["waiting"] = {"metric": self.settings.metric, "arms": unjudged}
            rounds.save(sweep_dir, state)
            return results
        family = sequential.family(sorted({s for s, _ in scopes}), len({where for _, where in scopes}))
        previous = {(r["a"], r["b"], r["scope"]): r for r in rounds.last_pairs(state)}
        records, metric = rounds.evaluate(runs, self.settings, schedule, k, family, previous)
        spent, per_arm = rounds.spent_hours(runs)
        finished = {r["name"] for r in runs if r["status"] == "finished"}
        state["rounds"].append(
            {
                "round": k + 1,
                "seeds": seeds,
                "level": sequential.levels(self.settings, schedule, family)[k],
                "launched": sorted(launched),  # trained this round (earlier rounds' arms are never retrained)
                "arms": sorted(jobs),  # every arm this look rests on
                "missing": sorted(name for name in jobs if name not in finished),
                "pairs": records,
                "device_hours": spent,
                "metric": metric,
            }
        )
        rest = rounds.resting(records)  # after this look
        next_arms = sum(scope not in rest for scope in scopes) * self.settings.seeds_per_round
        state["outcome"] = rounds.stop(records, len(seeds), self.settings, spent, per_arm, next_arms)
        if state["outcome"] is None and not records and k + 1 >= len(schedule):
            state["outcome"] = "max_seeds"
        rounds.save(sweep_dir, state)
        self._report(sweep_dir, k + 1)
        print(rounds.progress(state, len(finished), len(design_names)), flush=True)
        return results

    def _pending(self, sweep_dir: Path, name: str, state: dict) -> bool:
        return not RunDir(sweep_dir / name).metrics.exists() and state["failures"].get(name, 0) < 2

    def _next_idx(self, n: int) -> int:
        start = getattr(self, "_job_idx", 0)
        self._job_idx = start + n
        return start

    def _report(self, sweep_dir: Path, round_no: int) -> None:
        """The round's report (<sweep>/rounds/<k>/ and the sweep's own report.md), logged to W&B in its group."""
        from notus_lab.study.findings import write_report
        from notus_lab.study.wandb_report import log_report

        mode = OmegaConf.select(self.config, "wandb.mode", default="offline")
        for out in (sweep_dir / "rounds" / str(round_no), sweep_dir):
            try:
                summary = write_report(sweep_dir, self.settings.metric, out)
            except Exception as exc:  # the study goes on; the next round writes the report again
                log.warning("report of round %d not written: %s", round_no, exc)
                return
        if mode != "disabled":
            log_report(sweep_dir, sweep_dir / "rounds" / str(round_no), summary, mode)

    def _finish(self, sweep_dir: Path, state: dict, rounds_run: int) -> None:
        from notus_lab.study.render import sequential_verdicts

        if not (sweep_dir / "report.md").exists() and state["rounds"]:
            self._report(sweep_dir, rounds_run)
        print(f"study {state['outcome']} after {rounds_run} round(s): {sweep_dir / 'report.md'}", flush=True)
        for line in sequential_verdicts(state):
            print("  " + line.replace("**", ""), flush=True)
