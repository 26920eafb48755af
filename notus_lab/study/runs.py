"""Reading a sweep: its run dirs with their overrides, status, metrics (external judges' included) and
the per-prompt outcomes that let the report pair arms prompt by prompt. Reads files only: no W&B needed."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

from notus_lab.config.study import SEED_KEY, STRATEGY_KEY  # noqa: F401 - STRATEGY_KEY: the study modules read it here
from notus_lab.core.errors import ConfigError
from notus_lab.core.files import flatten, read_jsonl
from notus_lab.core.overrides import as_dict, swept
from notus_lab.core.run_dir import RunDir

SEED_KEYS = (SEED_KEY, "seed")


# keys that change what is measured (the world the data comes from, the judge): a verdict is per value
NEVER_POOLED = ("data.world.", "judge")


JUDGED = "generation/win_rate_vs_reference"


OUTCOME = {"policy": 1.0, "tie": 0.5, "reference": 0.0}  # a judged pair as AlpacaEval counts it


def _overrides(run_dir: Path) -> dict:
    """The command-line/sweep overrides of one job, from the record Hydra keeps in .hydra/."""
    path = RunDir(run_dir).overrides
    items = yaml.safe_load(path.read_text()) if path.exists() else []
    return as_dict([o for o in items or [] if "=" in o])


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def read_runs(sweep_dir: Path) -> list[dict]:
    """Every job dir of the sweep with its status: finished, failed (with the error) or unfinished."""
    runs = []
    for run_dir in sorted(
        p for p in Path(sweep_dir).iterdir() if RunDir(p).config.is_file() or RunDir(p).hydra_config.is_file()
    ):
        run = {"dir": run_dir, "name": run_dir.name, "overrides": _overrides(run_dir), "status": "unfinished"}
        if RunDir(run_dir).metrics.exists():
            metrics = json.loads(RunDir(run_dir).metrics.read_text())
            # external judges attached by `python -m notus_lab.external`, without their per-prompt detail
            external = {
                judge: {k: v for k, v in result.items() if not k.startswith("per_")}
                for judge, result in _json(RunDir(run_dir).external).items()
            }
            run["status"], run["metrics"] = "finished", flatten({**metrics, **external, **lm_eval_metrics(run_dir)})
            run["eval_history"] = metrics.get("eval_history", {})
            # in the bundled world: how often this arm's own training pairs prefer the truly better answer
            run["truth_agreement"] = (
                _json(RunDir(run_dir).data_report).get("truth_agreement", {}).get("train", {}).get("agreement")
            )
            provenance = _json(RunDir(run_dir).provenance)
            run["code"] = provenance.get("code_version") or provenance.get("git_commit")
        elif RunDir(run_dir).failed.exists():
            failed = json.loads(RunDir(run_dir).failed.read_text())
            run["status"], run["error"] = "failed", f"{failed.get('error')}: {failed.get('message', '')}"
        runs.append(run)
    return runs


def has(run: dict, metric: str) -> bool:
    """A finished run with a number for `metric` (an external judge may have recorded None)."""
    value = run.get("metrics", {}).get(metric)
    return run["status"] == "finished" and isinstance(value, (int, float)) and not isinstance(value, bool)


def never_pooled(key: str) -> bool:
    return key.startswith(NEVER_POOLED[0]) or key == NEVER_POOLED[1] or key.startswith(NEVER_POOLED[1] + ".")


def stratum(overrides: dict, swept: list[str]) -> str:
    """The scope of a pooled row: the values of the swept keys that are never pooled (the world's, the judge's),
    in the swept keys' order; "all" where there are none. The report's rows and the sequential sweeper's
    arms are named by it, so a decision about a scope finds its arms."""
    return ", ".join(f"{k}={overrides[k]}" for k in swept if never_pooled(k)) or "all"


def factors(runs: list[dict]) -> list[str]:
    """Swept keys: overrides whose value differs between jobs."""
    return swept([r["overrides"] for r in runs])


def generation_records(run_dir: Path) -> list[dict]:
    path = RunDir(run_dir).generations
    return read_jsonl(path) if path.exists() else []


LM_EVAL = "lm_eval/"  # lm_eval/<task>/<metric>: python -m notus_lab.evaluate's results (RunDir.lm_eval)


def lm_eval_metrics(run_dir: Path) -> dict:
    """{"lm_eval": {task: {metric: value, metric_stderr: value}, "open_llm_average": value}} from lm_eval.json,
    flattened by read_runs into lm_eval/<task>/<metric>."""
    results = _json(RunDir(run_dir).lm_eval)
    if not results:
        return {}
    out = {task: dict(entry["metrics"]) for task, entry in results.get("tasks", {}).items()}
    if results.get("open_llm_average") is not None:
        out["open_llm_average"] = results["open_llm_average"]
    return {"lm_eval": out}


_PROMPT_HASHES: dict[tuple[str, str], dict[str, str]] = {}  # (sweep dir, task) -> {question: lm_eval's prompt_hash}


def lm_eval_outcomes(run_dir: Path, metric: str) -> dict[str, float] | None:
    """{question: the run's value of lm_eval/<task>/<metric>}, a question being `<subtask>:<doc_id>` (lm_eval's
    own doc_id, per subtask of a group such as mmlu). Runs of one sweep pair on it only where lm_eval built the
    same prompt (its prompt_hash: the same template, shots and chat template); anything else is refused."""
    task, _, key = metric[len(LM_EVAL) :].partition("/")
    path = RunDir(run_dir).lm_eval_samples
    if not path.exists():
        return None
    seen = _PROMPT_HASHES.setdefault((str(Path(run_dir).resolve().parent), task), {})
    out = {}
    for r in read_jsonl(path):
        if r["task"] != task or key not in r["metrics"]:
            continue
        question = f"{r['subtask']}:{r['doc_id']}"
        if seen.setdefault(question, r["prompt_hash"]) != r["prompt_hash"]:
            raise ConfigError(
                f"--metric={metric} is invalid: {Path(run_dir).name} asked question {question} with another "
                f"prompt (lm_eval prompt_hash differs: another template, shots or chat template); allowed runs "
                f"evaluated with the same settings"
            )
        out[question] = float(r["metrics"][key])
    return out or None


def per_prompt_outcomes(run_dir: Path, metric: str) -> dict[str, float] | None:
    """{prompt: the run's value of `metric` on that prompt}, averaged over samples or turns; None when the
    metric has no per-prompt record (then arms are paired by run only)."""
    if metric in (JUDGED, "generation/policy_score"):
        sums, counts = defaultdict(float), defaultdict(int)
        for r in generation_records(run_dir):
            sums[r["prompt"]] += OUTCOME[r["winner"]] if metric == JUDGED else r["policy_score"]
            counts[r["prompt"]] += 1
        return {p: sums[p] / counts[p] for p in sums} or None
    if metric.startswith(LM_EVAL):
        return lm_eval_outcomes(run_dir, metric)
    judge, _, key = metric.partition("/")
    per = _json(RunDir(run_dir).external).get(judge, {}).get("per_prompt")
    if per and key in ("win_rate", "win_rate_adjusted", "score"):
        return {str(k): float(v) for k, v in per.items()}
    return None


def default_metric(runs: list[dict]) -> str:
    """Judged generations when every finished run has them, else the truth (bundled world); never one of
    the compared signals' own labels, which would grade each strategy by its own rule."""
    finished = [r for r in runs if r["status"] == "finished"]
    if not finished:  # nothing to compare yet: the report lists what failed or is unfinished
        return JUDGED
    for metric in (JUDGED, "truth_accuracy"):
        if all(has(r, metric) for r in finished):
            return metric
    candidates = sorted({k for r in finished for k, v in r["metrics"].items() if isinstance(v, (int, float))})
    raise ConfigError(
        f"--metric is required: not every run has {JUDGED} or truth_accuracy; allowed one of "
        f"{', '.join(candidates[:12])}{' ...' if len(candidates) > 12 else ''}"
    )


def check_metric(runs: list[dict], metric: str | None) -> None:
    """A --metric no finished run records (a typo, or a judge not attached yet) is one line listing those they do."""
    finished = [r for r in runs if r["status"] == "finished"]
    if metric is None or not finished or any(has(r, metric) for r in finished):
        return
    names = sorted({k for r in finished for k, v in r["metrics"].items() if isinstance(v, (int, float))})
    raise ConfigError(
        f"--metric={metric!r} is invalid: no finished run records it; allowed one of "
        f"{', '.join(names[:16])}{' ...' if len(names) > 16 else ''}"
    )


def mean_of(members: list[dict], key: str):
    """Mean over runs of one metric (None if no run has it)."""
    vals = [m["metrics"][key] for m in members if isinstance(m["metrics"].get(key), (int, float))]
    return statistics.fmean(vals) if vals else None
