"""What a person sees in the terminal: a short summary when a run ends, and none of the third-party
lines that say nothing to a user. Filters are narrow (by message) and `-v` / `hydra.verbose=...` turns
them off: nothing else is ever hidden."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from notus_lab.core.overrides import key_of
from notus_lab.core.run_dir import RunDir

NOISE = (  # (logger or warning category, message start)
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"),
    (FutureWarning, "`is_gradient_checkpointing` is deprecated"),
)


class _DropByMessage(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def quiet_third_party_noise(argv: list[str]) -> list[str]:
    """Install the filters unless the command asks to see everything; returns argv without `-v`."""
    verbose = os.environ.get("NOTUS_LAB_VERBOSE") == "1" or any(
        a in ("-v", "--verbose") or a.startswith("hydra.verbose") for a in argv
    )
    if verbose:
        os.environ["NOTUS_LAB_VERBOSE"] = "1"  # the ranks of a multi-process run show everything too
    else:
        for where, start in NOISE:
            if isinstance(where, str):
                logging.getLogger(where).addFilter(_DropByMessage(start))
            else:
                warnings.filterwarnings("ignore", message=f"^{start}", category=where)
    return [a for a in argv if a not in ("-v", "--verbose")]


def summary(run_dir: Path, metrics: dict) -> str:
    """The headline numbers and what to run next."""
    g = metrics.get("generation")
    lines = [f"notus_lab: finished {run_dir}"]
    if g:
        lines.append(
            f"  judged win rate vs its SFT reference: {g['win_rate_vs_reference']:.3f} ({g['wins']} wins, "
            f"{g['losses']} losses, {g['ties']} ties; judge {g['judge']}, {g['n_prompts']} prompts x "
            f"{g['samples_per_prompt']}); answers {g['policy_mean_tokens']:.0f} tokens vs "
            f"{g['reference_mean_tokens']:.0f}, distinct-2 {g['policy_distinct_2']:.2f} vs "
            f"{g['reference_distinct_2']:.2f}"
        )
    if metrics.get("truth_accuracy") is not None:
        lines.append(f"  held-out reward accuracy against the truth (a diagnostic): {metrics['truth_accuracy']:.3f}")
    if metrics.get("gguf"):
        lines += [f"  {line}" for line in gguf_lines(metrics["gguf"])]
    lines += [
        "  next: python -m notus_lab.generate " + str(run_dir) + "    # answers for AlpacaEval / MT-Bench",
        "        python -m notus_lab --multirun +experiment=critique_vs_rating   "
        "# a study; then python -m notus_lab.report",
    ]
    return "\n".join(lines)


def gguf_lines(entry: dict) -> list[str]:
    """One console line per GGUF file (python -m notus_lab.export, export.gguf)."""
    lines = []
    for n, f in entry["files"].items():
        vs = f.get("vs_f16")
        shown = (
            "baseline"
            if n == entry["baseline"]
            else "not judged"
            if vs is None and "judge_score" not in f
            else f"win rate vs f16 {vs['win_rate']:.3f} "
            + (f"[{vs['ci'][0]:.3f}, {vs['ci'][1]:.3f}]" if vs["ci"] else "(no interval: every prompt the same)")
            + (" FLAGGED (Holm): the quantization changed the answers' quality" if vs["differs"] else "")
        )
        lines.append(f"{f['file']}: {f['bytes'] / 1e6:.2f} MB, {f['tokens_per_s']} tokens/s, {shown}")
    return lines


def verbose() -> bool:
    return os.environ.get("NOTUS_LAB_VERBOSE") == "1"


@contextmanager
def arm_output(log_path: Path):
    """In a local sweep, an arm's own output (its progress bars, the trainer's logs, its ranks') goes to its run
    dir's log; `-v` keeps it on the console, and a SLURM job already writes its own (submitit's .out and .err).
    The file descriptors move, so child processes follow."""
    if verbose() or os.environ.get("SLURM_JOB_ID"):  # on SLURM each arm's output is already a file of its own
        yield
        return
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def arm_line(
    run_dir: Path, overrides: list[str], metrics: dict | None, error: str | None = None, note: str | None = None
) -> str:
    """One line when an arm of a sweep ends: k of N (the sweeper's progress.json), its overrides, its judged win
    rate (or its error), elapsed time and an estimate of what is left."""
    progress_file = run_dir.parent / "progress.json"
    count, swept = "", None
    if progress_file.exists():
        progress = json.loads(progress_file.read_text())
        swept = progress.get("swept")
        arms = progress.get("arms", [])
        done = sum(
            RunDir(run_dir.parent / a).metrics.exists() or RunDir(run_dir.parent / a).failed.exists() for a in arms
        )
        elapsed = time.time() - progress.get("started", time.time())
        eta = f", ~{elapsed / max(done, 1) * (len(arms) - done) / 60:.0f} min left" if done < len(arms) else ""
        count = f"[{done}/{len(arms)}] " + f"{elapsed / 60:.1f} min{eta} | "
    shown = " ".join(
        o for o in overrides if not o.startswith(("sweep_name=", "hydra.")) and (swept is None or key_of(o) in swept)
    )
    g = (metrics or {}).get("generation") or {}
    result = (
        f"failed: {error} (see {RunDir(run_dir).failed}"
        + (f" and {RunDir(run_dir).output}" if RunDir(run_dir).output.exists() else "")
        + ")"
        if error
        else f"win rate {g['win_rate_vs_reference']:.3f}"
        if g
        else "finished"
    )
    return f"{count}{shown}: {result}" + (f" ({note})" if note else "")
