"""`python -m notus_lab.evaluate <run dir | sweep dir>`: lm-evaluation-harness benchmarks on finished runs.

    python -m notus_lab.evaluate <run dir | sweep dir> [--tasks open_llm | world_choice,world_truth | a,b,...]
                                 [--limit N] [--batch-size B] [--device cpu|cuda] [--chat-template on|off]

Runs lm_eval's own simple_evaluate with its HFLM wrapper on each run's trained model and stores lm_eval.json and
lm_eval_samples.jsonl in the run dir (notus_lab/judging/lm_eval_run.py). Tasks already recorded with the same
settings are not rerun. Needs the `evals` extra: pip install 'notus_lab[evals]'.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from notus_lab.core.errors import refuse, run_command
from notus_lab.core.run_dir import RunDir, finished_runs


def ensure_evaluated(
    run_dir,
    tasks,
    limit: int | None = None,
    apply_chat_template: bool | None = None,
    device: str | None = None,
    batch_size: int = 8,
) -> dict:
    """Idempotent: evaluate the tasks of `tasks` (a list, or a --tasks string such as "world_choice" or
    "open_llm") that the run dir has not recorded with the same settings (shots, limit, chat template), and
    return its lm_eval.json as a dict. A task already recorded is not rerun, so the sequential sweeper may call
    this between launches as often as it likes; afterwards runs.read_runs gives `lm_eval/<task>/<metric>` and
    runs.per_prompt_outcomes its per-question values. Bad input (no finished model, an unknown task, lm_eval
    missing) is a ConfigError of one line, raised before any model loads."""
    from notus_lab.judging.lm_eval_run import evaluate_tasks, pending, read_results
    from notus_lab.train.compute import compute_record

    todo = pending(run_dir, tasks, limit, apply_chat_template)
    if not todo:
        return read_results(Path(run_dir))
    return evaluate_tasks(
        run_dir, todo, limit, apply_chat_template, device, batch_size, lambda hw, s: compute_record(hw, s, 1)
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m notus_lab.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("path", type=Path, help="a finished run dir, or a sweep dir of them")
    p.add_argument("--tasks", default="world_choice,world_truth", help="open_llm or comma-separated task names")
    p.add_argument("--limit", type=int, help="only the first N questions of each task (quick looks)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: the run's own hardware.device")
    p.add_argument(
        "--chat-template",
        choices=("on", "off"),
        help="default: on for the world's tasks (the model was trained on chat turns), off for the others "
        "(the leaderboard ran without one); recorded in lm_eval.json",
    )
    args = p.parse_args(argv)
    from notus_lab.judging.lm_eval_run import parse_tasks, require_lm_eval

    dirs = finished_runs(args.path)
    problems = (
        [("path", args.path, "a finished run dir (metrics.json, model/) or a sweep dir of them")] if not dirs else []
    )
    problems += [
        (k, v, "an integer > 0")
        for k, v in (("--limit", args.limit), ("--batch-size", args.batch_size))
        if v is not None and v <= 0
    ]
    refuse(problems)
    require_lm_eval()
    tasks = parse_tasks(args.tasks)
    chat = None if args.chat_template is None else args.chat_template == "on"
    for run_dir in dirs:
        results = ensure_evaluated(run_dir, tasks, args.limit, chat, args.device, args.batch_size)
        for task in tasks:
            entry = results["tasks"][task]
            shown = ", ".join(
                f"{k} {v:.4f}"
                + (
                    f" ± {entry['metrics'].get(k + '_stderr'):.4f}"
                    if isinstance(entry["metrics"].get(k + "_stderr"), float)
                    else ""
                )
                for k, v in entry["metrics"].items()
                if not k.endswith("_stderr") and isinstance(v, float)
            )
            print(
                f"{run_dir.name}: {task} ({entry['shots']}-shot, n={entry['n']}, v{entry['version']}, "
                f"chat template {'on' if entry['settings']['apply_chat_template'] else 'off'}): {shown}"
            )
        if "open_llm_average" in results:
            print(f"{run_dir.name}: open_llm average {results['open_llm_average']}")
        c = results["compute"]
        print(
            f"{run_dir.name}: lm_eval {results['lm_eval_version']} on {results['device']} ({results['dtype']}); "
            f"{c['device_hours']:.4f} {c['unit']}; wrote {RunDir(run_dir).lm_eval}"
        )


if __name__ == "__main__":
    run_command(main)
