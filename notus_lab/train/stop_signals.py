"""Stop-and-resume on signals: SIGTERM, Ctrl-C and SLURM's preemption signal end the current step with a
checkpoint; the same command resumes it."""

from __future__ import annotations

import logging
import os
import signal
import time

log = logging.getLogger("notus_lab")


# the same signal again within this many seconds is the same request, not a second one
SAME_REQUEST_S = 2.0


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


def preemption_signal():
    """The signal SLURM sends before preempting or timing out a submitit job (None outside SLURM)."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


def stop_signals() -> list:
    """What stops a run with a checkpoint: SIGTERM, Ctrl-C, and under SLURM submitit's preemption signal."""
    preempt = preemption_signal()
    return [signal.SIGTERM, signal.SIGINT] + ([preempt] if preempt else [])
