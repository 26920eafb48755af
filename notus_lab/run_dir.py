"""The run dir as a unit of work: one writer at a time, stop-and-resume on signals, a record of failure.

The same command finds the same run dir, so these are what make a relaunch safe: a second process is
refused (.lock), SIGTERM / Ctrl-C / SLURM's preemption signal end the current step with a checkpoint,
the newest COMPLETE checkpoint is where a resume starts, and a crash leaves failed.json for the report.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from notus_lab.tracking import git_commit, redact, write_json

log = logging.getLogger("notus_lab")


class Interrupted(RuntimeError):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint; the same command resumes it."""


class RunDirBusy(RuntimeError):
    """Another process holds this run dir."""


# settings that change where or how a run executes, never what it learns: a relaunch may change them
NOT_SCIENCE = ("wandb.", "hardware.", "sweep_name", "run_name", "train.resume", "train.reference_cache_dir",
               "train.logging_steps", "train.save_steps", "base.cache_dir", "generation.batch_size", "judge.batch_size")
# the same signal again within this many seconds is the same request, not a second one
SAME_REQUEST_S = 2.0


def science(resolved: dict, prefix: str = "") -> dict:
    """The resolved config as {dotted key: value}, without the keys that do not change the science."""
    out = {}
    for k, v in resolved.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(science(v, key + "."))
        elif not key.startswith(NOT_SCIENCE):
            out[key] = v
    return out


def science_fingerprint(resolved: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(science(resolved), sort_keys=True, default=str).encode()).hexdigest()[:16]


def what_changed(run_dir: Path, resolved: dict, code: str) -> str | None:
    """Why the run already in `run_dir` is not this command's: the science keys whose values differ, or
    the code version. None when it is the same run (or when there is none yet)."""
    import json

    import yaml

    if not (run_dir / "config.yaml").exists():
        return None
    before, now = science(yaml.safe_load((run_dir / "config.yaml").read_text()) or {}), science(redact(resolved))
    changed = [f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(before.keys() | now.keys())
               if before.get(k) != now.get(k)]
    if changed:
        return f"config ({'; '.join(changed[:3])}{f'; +{len(changed) - 3} more' if len(changed) > 3 else ''})"
    old = json.loads((run_dir / "provenance.json").read_text()) if (run_dir / "provenance.json").exists() else {}
    if old.get("code_version", code) != code:
        return f"code ({old['code_version']} -> {code}; commits {old.get('git_commit', '?')[:12]} -> {git_commit()[:12]})"
    return None


@contextmanager
def run_dir_lock(run_dir: Path):
    """Two processes never write into the same run dir (the OS drops the lock if the holder dies)."""
    if int(os.environ.get("RANK", "0")) != 0:  # ranks of one distributed run share their dir
        yield
        return
    with open(run_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(f"another process is training in {run_dir}; wait for it or pick another "
                             f"hydra.run.dir") from None
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def pass_on(handler, signum: int) -> None:
    """Run the handler a stop signal had before ours when it is someone's own (submitit's: requeue this arm,
    then exit); the defaults, `ignore` and Python's KeyboardInterrupt are left out."""
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signum, None)


def stop_on_signal_callback():
    """A TrainerCallback that turns SIGTERM/SIGINT (and submitit's preemption signal) into: finish the
    current step, save a checkpoint, stop. A second signal (not the first one again, arriving by another
    path) falls back to the previous handler: stop now."""
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def __init__(self):
            self.received, self.received_at = None, 0.0
            self.previous = {}

        def install(self):
            from notus_lab.distributed import stop_signals

            for sig in stop_signals():
                try:
                    self.previous[sig] = signal.signal(sig, self._handle)
                except ValueError:  # not the main thread: leave signals to whoever owns them
                    pass

        def restore(self):
            for sig, handler in self.previous.items():
                signal.signal(sig, handler)

        def _handle(self, signum, frame):
            if self.received is not None:
                if signum == self.received and time.monotonic() - self.received_at < SAME_REQUEST_S:
                    return  # one request by two paths: SLURM signals every process, the launcher passes it on
                self.restore()  # asked twice: stop now
                signal.raise_signal(signum)
                return
            self.received, self.received_at = signum, time.monotonic()
            log.warning("caught %s: saving a checkpoint at the end of this step", signal.Signals(signum).name)

        def on_step_end(self, args, state, control, **kwargs):
            if self.received is not None:
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopOnSignal()


def record_failure(run_dir: Path, exc: BaseException) -> None:
    """failed.json names what went wrong, so a sweep report can list the arm with its error."""
    write_json(run_dir / "failed.json", {
        "error": type(exc).__name__, "message": str(exc).strip().splitlines()[0][:500] if str(exc).strip() else "",
        "traceback": traceback.format_exception(exc)[-3:], "time": time.strftime("%Y-%m-%dT%H:%M:%S")})


def latest_checkpoint(ckpt_dir: Path) -> str | None:
    """Newest checkpoint whose save completed (the Trainer writes trainer_state.json last)."""
    done = [p for p in ckpt_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None
