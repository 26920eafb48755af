"""What a person sees in the terminal: a short summary when a run ends, and none of the third-party
lines that say nothing to a user. Filters are narrow (by message) and `-v` / `hydra.verbose=...` turns
them off: nothing else is ever hidden."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

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
        a in ("-v", "--verbose") or a.startswith("hydra.verbose") for a in argv)
    if verbose:
        os.environ["NOTUS_LAB_VERBOSE"] = "1"  # the ranks of a multi-process run show everything too
    else:
        for where, start in NOISE:
            if isinstance(where, str):
                logging.getLogger(where).addFilter(_DropByMessage(start))
            else:
                warnings.filterwarnings("ignore", message=f"^{start}", category=where)
    return [a for a in argv if a not in ("-v", "--verbose")]


def summary(run_dir: Path, metrics: dict, multirun: bool) -> str:
    """The headline numbers and what to run next."""
    g = metrics.get("generation")
    lines = [f"notus_lab: finished {run_dir}"]
    if g:
        lines.append(f"  judged win rate vs its SFT reference: {g['win_rate_vs_reference']:.3f} ({g['wins']} wins, "
                     f"{g['losses']} losses, {g['ties']} ties; judge {g['judge']}, {g['n_prompts']} prompts x "
                     f"{g['samples_per_prompt']}); answers {g['policy_mean_tokens']:.0f} tokens vs "
                     f"{g['reference_mean_tokens']:.0f}, distinct-2 {g['policy_distinct_2']:.2f} vs "
                     f"{g['reference_distinct_2']:.2f}")
    if metrics.get("truth_accuracy") is not None:
        lines.append(f"  held-out reward accuracy against the truth (a diagnostic): {metrics['truth_accuracy']:.3f}")
    if multirun:
        return lines[0] + (f" (win rate {g['win_rate_vs_reference']:.3f})" if g else "")
    lines += ["  next: python -m notus_lab.generate " + str(run_dir) + "    # answers for AlpacaEval / MT-Bench",
              "        python -m notus_lab --multirun +experiment=critique_vs_rating   # a study; then python -m notus_lab.report"]
    return "\n".join(lines)
