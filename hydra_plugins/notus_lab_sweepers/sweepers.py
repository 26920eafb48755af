"""notus_lab's Hydra sweepers (Hydra finds plugins only under the `hydra_plugins` namespace).

- `hydra/sweeper=notus` (conf/config.yaml's default): the design of Hydra's BasicSweeper (core/overrides.py), in
  batches that go on past a failed arm; it tells the arms how many they are (progress.json), so each prints one
  line as it finishes instead of its whole output, and it ends with the sweep dir and the report command.
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

from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf, open_dict

from notus_lab.config.science import run_dir_name
from notus_lab.core import overrides
from notus_lab.core.errors import ConfigError, exit_on, invalid
from notus_lab.core.files import write_json
from notus_lab.core.overrides import factors
from notus_lab.core.run_dir import RunDir
from notus_lab.study.runs import SEED_KEYS

log = logging.getLogger(__name__)

SEED_KEY = SEED_KEYS[0]  # train.seed: the key the sweeper owns
ADHOC = "adhoc"  # conf/config.yaml's sweep_name: a multirun nobody named


class NotusSweeper(Sweeper):
    """Hydra's BasicSweeper's design (every combination of the swept values, the command line replacing the
    experiment's params key by key), launched in batches of `max_batch_size` through the configured launcher, with a
    console a person can read: one line per arm (a failed one names its failed.json), and at the end the sweep dir
    and the next command. A failed arm never stops the other batches. It holds no BasicSweeper: Hydra's plugin scan
    re-executes its core plugins' modules, so subclassing it is fragile, and its loop stops at the first failure."""

    def __init__(self, max_batch_size=None, params=None) -> None:
        if max_batch_size is not None and (
            isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1
        ):
            raise invalid("hydra.sweeper.max_batch_size", max_batch_size, "an integer >= 1, or null (one batch)")
        self.max_batch_size, self.params = max_batch_size, dict(params or {})

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        try:
            design = self._factors(arguments)
            extra = self._own_dir(design)
            jobs = [list(j) + extra for j in itertools.product(*(f.overrides() for f in design))]
            names = _arm_names(jobs)
            sweep_dir = Path(self.config.hydra.sweep.dir)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
            results = self._launch(sweep_dir, jobs)
        except ConfigError as exc:
            exit_on(exc)
        failed = [n for n, r in zip(names, results) if not _finished(sweep_dir / n, r)]
        print(
            f"sweep {sweep_dir}: {len(jobs) - len(failed)} of {len(jobs)} arm(s) finished"
            + (f", {len(failed)} failed (their failed.json says why)" if failed else ""),
            flush=True,
        )
        print(f"  next: python -m notus_lab.report {sweep_dir}", flush=True)
        if failed:  # a script sees that not everything ran; the arms that did are kept
            raise SystemExit(1)
        return [results]

    def _factors(self, arguments: list[str]):
        from notus_lab.config.options import group_options

        return factors(list(arguments), self.params, group_options)

    def _own_dir(self, design) -> list[str]:
        """An ad-hoc multirun (sweep_name left at conf/config.yaml's `adhoc`) gets a dir named by its swept keys,
        so a beta sweep and a data sweep never mix in one dir: the override every arm gets, if any."""
        if any(f.key == "sweep_name" for f in design) or self.config.get("sweep_name") != ADHOC:
            return []
        keys = [f.key for f in design if len(f.values) > 1]
        if not keys:
            return []
        name = f"{ADHOC}-" + "-".join(k.replace("/", ".") for k in sorted(keys))
        with open_dict(self.config):
            self.config.sweep_name = name
        return [f"sweep_name={name}"]

    def _launch(self, sweep_dir: Path, jobs: list[list[str]]) -> list:
        """Every job, in batches of max_batch_size, through the launcher; a result per job, in order. Writes
        <sweep dir>/progress.json first (the arms, when this launch started), from which an arm prints "k/N" as it
        finishes (notus_lab/core/console.py: arm_line); a SLURM arm's own line goes to its log, so the sweeper
        prints it. A launcher that raises (a SLURM job that died hard) costs only its batch, counted failed."""
        from hydra.core.utils import JobReturn

        names = _arm_names(jobs)
        # started: this launch (a round), so an arm's ETA is from the arms of its own round
        swept = sorted(set(overrides.swept([overrides.as_dict(j) for j in jobs])) | {SEED_KEY})
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_json(sweep_dir / "progress.json", {"started": time.time(), "swept": swept, "arms": names})
        slurm = "Slurm" in str(OmegaConf.select(self.config, "hydra.launcher._target_", default="") or "")
        size = self.max_batch_size or max(len(jobs), 1)
        results = []
        for at in range(0, len(jobs), size):
            batch = jobs[at : at + size]
            self._validate(batch)
            try:
                returned = list(self.launcher.launch(batch, initial_job_idx=self._next_idx(len(batch))))
            except Exception as exc:  # noqa: BLE001 - the other batches go on; the report lists what is missing
                returned = _after_requeue(exc, batch, sweep_dir) if slurm else None
                if returned is None:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    print(f"batch of {len(batch)} arm(s) lost: {type(exc).__name__}: {first}", flush=True)
                    returned = [JobReturn(overrides=list(b), status=JobStatus.FAILED, _return_value=exc) for b in batch]
            results += returned
            if slurm:
                for job, r in zip(batch, returned):
                    print(_line(sweep_dir / run_dir_name(job), job, r), flush=True)
        return results

    def _validate(self, batch) -> None:
        """Each job composes (Hydra's own check), as one line if it does not."""
        if getattr(self.hydra_context, "config_loader", None) is None:
            return
        try:
            self.validate_batch_is_legal(batch)
        except Exception as exc:  # noqa: BLE001 - Hydra's composition errors are many kinds
            raise ConfigError(f"an arm does not compose: {str(exc).strip().splitlines()[0]}") from None

    def _next_idx(self, n: int) -> int:
        start = getattr(self, "_job_idx", 0)
        self._job_idx = start + n
        return start


def _after_requeue(exc: Exception, batch: list[list[str]], sweep_dir: Path, poll_s: float = 5.0) -> list | None:
    """submitit gives up on a job (UncompletedJobError) when its accounting poll catches a preempted job between
    its requeue's two records, while SLURM still holds the job. Where the job is still queued or running, wait
    until it leaves the queue; then each arm is what its run dir says (metrics.json: finished). None where the
    job is not queued: it really ended without a result."""
    import re

    from hydra.core.utils import JobReturn

    if type(exc).__name__ != "UncompletedJobError":
        return None
    ids = sorted(set(re.findall(r"Job (\d+)", str(exc))))
    if not ids or not _queued(ids):
        return None
    while _queued(ids):
        time.sleep(poll_s)
    out = []
    for job in batch:
        done = RunDir(sweep_dir / run_dir_name(job)).metrics.exists()
        status = JobStatus.COMPLETED if done else JobStatus.FAILED
        out.append(JobReturn(overrides=list(job), status=status, _return_value=None if done else exc))
    return out


def _queued(ids: list[str]) -> bool:
    """Whether SLURM still lists any of these jobs (squeue exits 1 on ids it no longer knows)."""
    import subprocess

    done = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True)
    return done.returncode == 0 and bool(done.stdout.strip())


def _arm_names(jobs: list[list[str]]) -> list[str]:
    """The jobs' run dir names, refusing two jobs that would share one (a swept key that is not science, e.g.
    generation.batch_size=32,64: both arms would write one dir)."""
    names = [run_dir_name(j) for j in jobs]
    seen: dict[str, list[str]] = {}
    for name, job in zip(names, jobs):
        if name in seen:
            other = overrides.as_dict(seen[name])
            diff = [k for k, v in overrides.as_dict(job).items() if other.get(k) != v]
            key = diff[0] if diff else "the sweep"
            raise invalid(
                key,
                overrides.as_dict(job).get(key, ""),
                "one value: it does not change what a run learns, so its arms would share the run dir "
                f"{name!r} (notus_lab/config/science.py: NOT_SCIENCE)",
            )
        seen[name] = job
    return names


def _finished(run_dir: Path, result) -> bool:
    return result.status == JobStatus.COMPLETED and RunDir(run_dir).metrics.exists()


def _line(run_dir: Path, job: list[str], result) -> str:
    """The arm's one line, from what it left in its run dir."""
    import json

    from notus_lab.core.console import arm_line

    rd = RunDir(run_dir)
    if _finished(run_dir, result):
        return arm_line(run_dir, job, json.loads(rd.metrics.read_text()))
    failed = json.loads(rd.failed.read_text()) if rd.failed.exists() else {}
    error = f"{failed.get('error', type(result._return_value).__name__)}: {failed.get('message', '')}".strip(": ")
    return arm_line(run_dir, job, None, error or "failed")


class SequentialSweeper(NotusSweeper):
    """Rounds of seeds until every pair of strategies is decided (notus_lab/study/sequential.py)."""

    def __init__(self, params=None, max_batch_size=None, **settings) -> None:
        """`settings`: every field of notus_lab.config.study.Settings, as conf/hydra/sweeper/sequential.yaml (their
        one home) gives them."""
        from notus_lab.config.study import Settings

        super().__init__(max_batch_size=max_batch_size, params=params)
        self.settings = Settings(**settings).check()

    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self._study(arguments)
        except ConfigError as exc:  # a changed setting, a design the study cannot compare: one line
            exit_on(exc)

    def _study(self, arguments: list[str]) -> Any:
        from notus_lab.study import rounds

        sweep_dir = Path(self.config.hydra.sweep.dir)
        cells, first = self._design(arguments)
        design = {"cells": cells, "first_seeds": first}
        state = rounds.resume(sweep_dir, self.settings, design)  # refuses a changed setting before anything is written
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns = []
        state.pop("waiting", None)
        while state["outcome"] is None and not state.get("waiting"):
            returns.append(self._round(sweep_dir, state, cells, first))
        if state.get("waiting"):
            w = state["waiting"]
            if w["metric"].startswith("lm_eval/"):
                print(
                    f"`{w['metric']}` is missing on {len(w['arms'])} arm(s) after lm_eval ran (see the lines above): "
                    "fix it, then run the same command again",
                    flush=True,
                )
                return returns
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
        """The arms' settings without the seed (one list of overrides per cell), and the first round's seeds: the
        design every sweeper reads (core/overrides.py: factors), checked (config/study.py: check_design)."""
        from notus_lab.config.study import check_design

        design = self._factors(arguments)
        seeds = check_design(self.settings, design)
        lists = [f.overrides() for f in design if f.key != SEED_KEY]
        cells = [list(c) for c in itertools.product(*lists)]
        _arm_names([c + [f"{SEED_KEY}={seeds[0]}"] for c in cells])  # two cells never share a dir
        return cells, seeds

    def _seeds(self, first: list[int], count: int) -> list[int]:
        more = count - len(first)
        return first[:count] + list(range(max(first) + 1, max(first) + 1 + max(more, 0)))

    def _round(self, sweep_dir: Path, state: dict, cells: list[list[str]], first: list[int]) -> list:
        from notus_lab.study import rounds, sequential
        from notus_lab.study.runs import STRATEGY_KEY, stratum

        schedule = sequential.looks(self.settings, len(first))
        k = len(state["rounds"])
        seeds = self._seeds(first, schedule[k])
        given_up = rounds.given_up(state)
        resting = rounds.resting(rounds.last_pairs(state)) | given_up
        design_names = {run_dir_name(c + [f"{SEED_KEY}={s}"]) for c in cells for s in seeds}
        given = [overrides.as_dict(c) for c in cells]
        swept = overrides.swept(given)  # as the report names scopes
        scopes = [(g[STRATEGY_KEY], stratum(g, swept)) for g in given]

        # every arm this look rests on, by run dir name (the name of a job's overrides is parsed once)
        jobs = {
            run_dir_name(j): (j, scope)
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
            returned = self._launch(sweep_dir, [jobs[n][0] for n in todo])
            results += returned
            for name, result in zip(todo, returned):
                if not _finished(sweep_dir / name, result):
                    state["failures"][name] = state["failures"].get(name, 0) + 1
        runs = rounds.study_runs(sweep_dir, design_names)
        unjudged = rounds.unjudged(runs, self.settings.metric)
        if unjudged and self.settings.metric.startswith("lm_eval/"):  # a local benchmark: no judge to wait for
            self._benchmark(sweep_dir, unjudged)
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
        arms_of = {scope: [n for n, (_, sc) in jobs.items() if sc == scope] for scope in set(scopes)}
        unmeasured = rounds.unmeasured(records, arms_of, finished, state["failures"], given_up)
        state["rounds"].append(
            {
                "round": k + 1,
                "seeds": seeds,
                "level": sequential.levels(self.settings, schedule, family)[k],
                "launched": sorted(launched),  # trained this round (earlier rounds' arms are never retrained)
                "arms": sorted(jobs),  # every arm this look rests on
                "missing": sorted(name for name in jobs if name not in finished),
                "pairs": records,
                "unmeasured": unmeasured,
                "device_hours": spent,
                "metric": metric,
            }
        )
        rest = rounds.resting(records) | rounds.given_up(state)  # after this look
        next_arms = sum(scope not in rest for scope in scopes) * self.settings.seeds_per_round
        pending = {(u["strategy"], u["scope"]): u["given_up"] for u in unmeasured}
        state["outcome"] = rounds.stop(records, len(seeds), self.settings, spent, per_arm, next_arms, pending)
        rounds.save(sweep_dir, state)
        self._report(sweep_dir, k + 1)
        print(rounds.progress(state, len(finished), len(design_names)), flush=True)
        return results

    def _benchmark(self, sweep_dir: Path, arms: list[str]) -> None:
        """lm-evaluation-harness on the finished arms that lack the deciding metric (notus_lab/evaluate.py: a task
        already recorded is never rerun), between launches."""
        from notus_lab.evaluate import ensure_evaluated

        task = self.settings.metric.split("/")[1]
        for name in arms:
            try:
                ensure_evaluated(sweep_dir / name, [task])
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - one arm's benchmark failing leaves it unjudged, as a judge would
                print(f"{name}: lm_eval {task} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}", flush=True)

    def _pending(self, sweep_dir: Path, name: str, state: dict) -> bool:
        return not RunDir(sweep_dir / name).metrics.exists() and state["failures"].get(name, 0) < 2

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
