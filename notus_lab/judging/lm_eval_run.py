"""lm-evaluation-harness on a finished run: its own `simple_evaluate` with its `HFLM` wrapper around the run's
trained model (its device, precision, and LoRA/QLoRA adapter as trained: judging/generation.py load_policy).

Two families of tasks:
- `open_llm`, the Open LLM Leaderboard (v1) preset: its tasks, shots and metrics, checked against the task
  configs of the installed lm_eval (`check_preset`). DROP is left out: the leaderboard itself found its
  scoring broken and dropped it (Hugging Face blog "Open LLM Leaderboard: DROP deep dive").
- the bundled world's own tasks (`WORLD_TASKS`), YAMLs shipped in notus_lab/judging/lm_eval_tasks/ and
  registered through lm_eval's `TaskManager(include_path=...)`; their data files are written from the run's
  held-out prompts, deterministically, into a folder beside the YAMLs that include the shipped ones.

Results go to the run dir: RunDir.lm_eval (per task: the aggregate, its stderr, the shots, the task's version,
the lm_eval version, the chat-template choice, the compute) and RunDir.lm_eval_samples (lm_eval's per-question
records: doc_id, prompt_hash, doc_hash, the metrics), the shape study/runs.py reads to pair arms question by
question. notus_lab/evaluate.py's `ensure_evaluated` is the idempotent entry for the sequential sweeper.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import time
from pathlib import Path

from notus_lab.core.errors import ConfigError, invalid
from notus_lab.core.files import write_json
from notus_lab.core.run_dir import RunDir

TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"

# The Open LLM Leaderboard v1: task -> (shots, metric as lm_eval's results name it). gsm8k's `strict-match` is
# the answer after "####", as the leaderboard scored it.
OPEN_LLM = {
    "arc_challenge": (25, "acc_norm"),
    "hellaswag": (10, "acc_norm"),
    "mmlu": (5, "acc"),
    "truthfulqa_mc2": (0, "acc"),
    "winogrande": (5, "acc"),
    "gsm8k": (5, "exact_match,strict-match"),
}
LEFT_OUT = {
    "drop": "the leaderboard found DROP's scoring broken and removed it "
    "(Hugging Face blog 'Open LLM Leaderboard: DROP deep dive')"
}
PRESETS = {"open_llm": tuple(OPEN_LLM)}

# the world's tasks: name -> (shots, headline metric)
WORLD_TASKS = {"world_choice": (0, "acc_norm"), "world_truth": (0, "truth")}
WORLD_CHOICES = 4  # one appropriate first sentence and three inappropriate ones


def require_lm_eval() -> None:
    """The `evals` extra is an install step: its absence is one line, before anything loads."""
    if importlib.util.find_spec("lm_eval") is None:
        raise ConfigError("lm_eval is not installed: pip install 'notus_lab[evals]' (lm-eval[hf])")


def parse_tasks(spec: str) -> list[str]:
    """`open_llm`, or a comma-separated list of task names; each checked against the installed lm_eval's index
    and the world's tasks (one line naming the first unknown name)."""
    names = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            raise invalid("--tasks", spec, "open_llm or comma-separated task names")
        names += list(PRESETS.get(part, (part,)))
    if any(n in LEFT_OUT for n in names):
        bad = next(n for n in names if n in LEFT_OUT)
        raise invalid("--tasks", bad, "a task other than drop", why=LEFT_OUT[bad])
    unknown = [n for n in names if n not in WORLD_TASKS and n not in lm_eval_index()]
    if unknown:
        raise invalid("--tasks", unknown[0], f"open_llm, {', '.join(WORLD_TASKS)} or a task of the installed lm_eval")
    return list(dict.fromkeys(names))


_INDEX: dict | None = None


def lm_eval_index() -> dict:
    """The installed lm_eval's task index (names -> entries); built once, needs no hub."""
    global _INDEX
    if _INDEX is None:
        from lm_eval.tasks import TaskManager

        _INDEX = TaskManager().task_index
    return _INDEX


def check_preset() -> dict[str, dict]:
    """{task: {shots, metric, kind, version}} of the open_llm preset as the installed lm_eval names it; raises
    where a task or its metric is missing from lm_eval's own task configs."""
    from lm_eval.tasks._yaml_loader import load_yaml

    out = {}
    for task, (shots, metric) in OPEN_LLM.items():
        entry = lm_eval_index().get(task)
        if entry is None:
            raise ConfigError(f"lm_eval has no task {task} (open_llm preset)")
        cfg = entry.cfg if entry.kind.name == "GROUP" else load_yaml(entry.yaml_path, resolve_func=False)
        name, _, filt = metric.partition(",")
        metrics = [m["metric"] for m in cfg.get("metric_list", cfg.get("aggregate_metric_list", []))]
        filters = [f["name"] for f in cfg.get("filter_list", [])] or ["none"]
        if name not in metrics or (filt and filt not in filters):
            raise ConfigError(f"lm_eval's {task} has no metric {metric} (has {metrics}, filters {filters})")
        out[task] = {
            "shots": shots,
            "metric": metric,
            "kind": entry.kind.name.lower(),
            "version": (cfg.get("metadata") or {}).get("version"),
        }
    return out


def world_docs(prompts: list[str]) -> list[dict]:
    """The world_choice documents: for each held-out prompt, the first sentence of an answer about its first
    topic with two adjectives appropriate for it, among three with two inappropriate ones; positions and words
    drawn from the prompt's own seed, so the same prompts always give the same file."""
    from notus_lab.data.world import CHOICES, prompt_topics

    docs = []
    for prompt in prompts:
        topics = prompt_topics(prompt)
        if topics is None:
            continue
        rng = random.Random(f"lm_eval:world_choice:{prompt}")
        good, bad = CHOICES[topics[0]]
        right = "the {} is {} and {} .".format(topics[0], *rng.sample(good, 2))
        wrong = ["the {} is {} and {} .".format(topics[0], *rng.sample(bad, 2)) for _ in range(WORLD_CHOICES - 1)]
        label = rng.randrange(WORLD_CHOICES)
        docs.append({"prompt": prompt, "choices": wrong[:label] + [right] + wrong[label:], "label": label})
    return docs


def world_task_dir(cfg, cache: Path) -> Path:
    """A folder of task YAMLs for the world's tasks on this run's held-out prompts: each includes the shipped
    YAML and names its data file; keyed by the prompts, so runs of one sweep share it."""
    from notus_lab.data.prepare import held_out_prompts

    prompts = held_out_prompts(cfg.data)
    choice_docs = world_docs(prompts)
    truth_docs = [{"prompt": d["prompt"]} for d in choice_docs]
    key = hashlib.sha256(json.dumps(choice_docs, sort_keys=True).encode()).hexdigest()[:16]
    out = cache / f"world-{key}"
    if (out / "done").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for task, docs in (("world_choice", choice_docs), ("world_truth", truth_docs)):
        data = out / f"{task}.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs))
        (out / f"{task}.yaml").write_text(
            f"include: {TASKS_DIR / (task + '.yaml')}\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        )
    (out / "done").write_text("")
    return out


def _metric_key(name: str, filt: str) -> str:
    return name if filt == "none" else f"{name},{filt}"


def _task_versions(results: dict) -> dict:
    return {t: (cfg.get("metadata") or {}).get("version") for t, cfg in results.get("configs", {}).items()}


def summarize(task: str, shots: int, results: dict) -> tuple[dict, list[dict]]:
    """(the task's aggregate entry, its per-question records) from simple_evaluate's results."""
    agg = results["results"].get(task) or {}
    group = results.get("groups", {}).get(task)
    agg = group or agg
    metrics = {}
    for k, v in agg.items():
        if "," not in k or k.startswith("alias"):
            continue
        name, filt = k.split(",", 1)
        if name.endswith("_stderr"):
            continue
        metrics[_metric_key(name, filt)] = v
        stderr = agg.get(f"{name}_stderr,{filt}")
        metrics[_metric_key(name, filt) + "_stderr"] = stderr if isinstance(stderr, (int, float)) else None
    samples = []
    for sub, records in (results.get("samples") or {}).items():
        for r in records:
            per = {}
            for m in r.get("metrics", []):
                v = r.get(m)
                per[_metric_key(m, r.get("filter", "none"))] = float(v) if isinstance(v, (int, float, bool)) else v
            samples.append(
                {
                    "task": task,
                    "subtask": sub,
                    "doc_id": r["doc_id"],
                    "filter": r.get("filter", "none"),
                    "doc_hash": r.get("doc_hash"),
                    "prompt_hash": r.get("prompt_hash"),
                    "target_hash": r.get("target_hash"),
                    "metrics": per,
                }
            )
    versions = _task_versions(results)
    entry = {
        "shots": shots,
        "metrics": metrics,
        "n": len({(s["subtask"], s["doc_id"]) for s in samples}),
        "version": versions.get(task) if task in versions else versions,
        "n_samples": results.get("n-samples", {}),
    }
    return entry, samples


def read_results(run_dir: Path) -> dict:
    path = RunDir(run_dir).lm_eval
    return json.loads(path.read_text()) if path.exists() else {}


def read_samples(run_dir: Path) -> list[dict]:
    path = RunDir(run_dir).lm_eval_samples
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def settings_for(task: str, limit: int | None, apply_chat_template: bool | None) -> dict:
    """What changes a task's numbers: shots, the question limit, the chat template (on for the world's tasks,
    whose model was trained on chat turns; off for the leaderboard, as it ran), few-shot as multi-turn."""
    shots = WORLD_TASKS.get(task, OPEN_LLM.get(task, (None,)))[0]
    chat = (task in WORLD_TASKS) if apply_chat_template is None else apply_chat_template
    return {"shots": shots, "limit": limit, "apply_chat_template": chat, "fewshot_as_multiturn": chat}


def pending(run_dir, tasks, limit: int | None = None, apply_chat_template: bool | None = None) -> list[str]:
    """The tasks of `tasks` (a list or a --tasks string) the run dir has not recorded with these settings.
    Refuses (ConfigError, one line) a run dir without a finished model, or a missing lm_eval, before loading."""
    require_lm_eval()
    rd = RunDir(run_dir)
    if not rd.metrics.exists() or not rd.model.is_dir():
        raise invalid("run_dir", str(run_dir), "a finished run dir (metrics.json and model/)")
    names = parse_tasks(tasks if isinstance(tasks, str) else ",".join(tasks))
    done = read_results(Path(run_dir)).get("tasks", {})
    return [t for t in names if done.get(t, {}).get("settings") != settings_for(t, limit, apply_chat_template)]


def evaluate_tasks(run_dir, todo, limit, apply_chat_template, device, batch_size, compute_of) -> dict:
    """Run lm_eval on `todo` for one run dir, merge into its lm_eval.json / lm_eval_samples.jsonl and return
    the results; `compute_of(hardware, wall_s)` is the stage's compute record (train/compute.py's, passed
    in by the command: judging sits below train)."""
    run_dir = Path(run_dir)
    done = read_results(run_dir)
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from notus_lab.judging.benchmarks import run_config
    from notus_lab.judging.generation import load_policy
    from notus_lab.models.loading import base_path

    started = time.time()
    rd = RunDir(run_dir)
    cfg = run_config(run_dir)
    if device:
        cfg.hardware.device = device
    include = [str(world_task_dir(cfg, run_dir.parent / ".lm_eval_tasks"))] if set(todo) & set(WORLD_TASKS) else None
    manager = TaskManager(include_path=include) if include else TaskManager()
    check_data(todo, manager)
    model_dir = rd.merged if rd.merged.is_dir() else rd.model
    model, tokenizer = load_policy(cfg, model_dir, base_path(cfg.base))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(model.device))
    load_s = time.time() - started
    results = dict(done)
    results.update(
        {
            "lm_eval_version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else _version(),
            "model": str(model_dir),
            "device": str(model.device),
            "dtype": str(next(model.parameters()).dtype),
            "adapter": (model_dir / "adapter_config.json").exists(),
        }
    )
    results.setdefault("tasks", {})
    samples = [s for s in read_samples(run_dir) if s["task"] not in todo]
    for task in todo:
        s = settings_for(task, limit, apply_chat_template)
        t0 = time.time()
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[task],
            num_fewshot=s["shots"],
            limit=limit,
            log_samples=True,
            apply_chat_template=s["apply_chat_template"],
            fewshot_as_multiturn=s["fewshot_as_multiturn"],
            task_manager=manager,
            batch_size=batch_size,
            bootstrap_iters=1000,
        )
        entry, records = summarize(task, s["shots"], out)
        entry["settings"] = s
        entry["wall_s"] = round(time.time() - t0, 2)
        results["tasks"][task] = entry
        samples += records
    if set(OPEN_LLM) <= set(results["tasks"]):
        vals = [results["tasks"][t]["metrics"].get(OPEN_LLM[t][1]) for t in OPEN_LLM]
        results["open_llm_average"] = sum(vals) / len(vals) if all(isinstance(v, float) for v in vals) else None
    import torch

    compute = compute_of(cfg.hardware, time.time() - started)
    compute["load_s"] = round(load_s, 2)
    results["compute"] = _add_compute(done.get("compute"), compute)
    rd.lm_eval_samples.write_text("".join(json.dumps(r) + "\n" for r in samples))
    write_json(rd.lm_eval, results)
    del lm, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return results


def check_data(tasks: list[str], manager) -> None:
    """Each task's documents load (lm_eval's get_task_dict) before any model does: a data set that is neither in
    the datasets cache nor reachable (HF_DATASETS_OFFLINE=1, no network) is one line naming the task."""
    from lm_eval.tasks import get_task_dict

    for task in tasks:
        try:
            get_task_dict([task], manager)
        except Exception as exc:  # datasets raises ConnectionError, FileNotFoundError, ValueError offline
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise invalid(
                "--tasks", task, "a task whose data set is in the datasets cache or reachable", why=first
            ) from None


def _add_compute(before: dict | None, now: dict) -> dict:
    """Every evaluation's compute adds up (a later call evaluates more tasks on the same run)."""
    if not before:
        return now
    return {
        **now,
        "wall_s": round(before["wall_s"] + now["wall_s"], 2),
        "device_hours": round(before["device_hours"] + now["device_hours"], 6),
    }


def _version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
