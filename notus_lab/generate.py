"""`python -m notus_lab.generate <run dir>`: a finished run's answers for AlpacaEval and MT-Bench.

    python -m notus_lab.generate <run dir> [--benchmark alpaca_eval|mt_bench] [--alpaca-eval alpaca_eval.json]
                                           [--mt-bench question.jsonl]

The files it writes and the decodings: notus_lab/judging/benchmarks.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from notus_lab.core.errors import refuse, run_command
from notus_lab.core.run_dir import RunDir
from notus_lab.judging.benchmarks import BENCHMARKS, export, run_config


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m notus_lab.generate", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a finished run dir (with model/)")
    p.add_argument("--alpaca-eval", type=Path, help="AlpacaEval prompts: a json list of {instruction, dataset}")
    p.add_argument("--mt-bench", type=Path, help="MT-Bench questions: question.jsonl with question_id and turns")
    p.add_argument("--model-id", help="name the judges will show (default: the run dir's name)")
    p.add_argument(
        "--benchmark",
        choices=BENCHMARKS,
        help="answer one benchmark with its published decoding: alpaca_eval (2048 new tokens, "
        "temperature 0.7, top_p 1.0, sampled) or mt_bench (1024 new tokens, FastChat's "
        "temperature per category, greedy where it is 0); recorded in generations/settings.json",
    )
    p.add_argument("--max-new-tokens", type=int, help="default: the benchmark's own, else 512")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, help="only the first N prompts of each set (quick looks)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: the run's own hardware.device")
    args = p.parse_args(argv)
    problems = [
        ("run_dir", args.run_dir, "a finished run dir containing model/")
        for _ in [0]
        if not RunDir(args.run_dir).model.is_dir()
    ]
    problems += [
        (k, v, "an existing file")
        for k, v in (("--alpaca-eval", args.alpaca_eval), ("--mt-bench", args.mt_bench))
        if v is not None and not v.is_file()
    ]
    problems += [
        (k, v, "an integer > 0")
        for k, v in (
            ("--max-new-tokens", args.max_new_tokens),
            ("--batch-size", args.batch_size),
            ("--limit", args.limit),
        )
        if v is not None and v <= 0
    ]
    if not problems and args.device != "cpu" and run_config(args.run_dir).hardware.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            problems.append(("--device", args.device or "cuda (the run's)", "cpu on a machine without CUDA"))
    refuse(problems)
    done = export(
        args.run_dir,
        args.alpaca_eval,
        args.mt_bench,
        args.model_id,
        args.max_new_tokens,
        args.batch_size,
        args.limit,
        args.device,
        args.benchmark,
    )
    print(
        f"wrote {done['alpaca_eval']} AlpacaEval outputs and {done['mt_bench']} MT-Bench answers to {done['dir']} "
        f"({done['device']}, {done['dtype']})"
    )


if __name__ == "__main__":
    run_command(main)
