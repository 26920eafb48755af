"""The one way bad input and stopped runs leave a command: one line on stderr that names the key, the
value and what is allowed, and a fixed exit code."""

from __future__ import annotations

import sys
from typing import NoReturn


class ConfigError(ValueError):
    """Bad input (a setting, a flag, a file), reported as one line before anything heavy happens."""


class Interrupted(RuntimeError):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint; the same command resumes it."""


class RunDirBusy(RuntimeError):
    """Another process holds this run dir."""


EXIT_CODES = {ConfigError: 2, RunDirBusy: 3, Interrupted: 130}
STOPS = tuple(EXIT_CODES)  # what a command turns into one line and an exit code; anything else is a bug


def message(key: str, value, allowed: str | None = None, why: str | None = None, shown: str | None = None) -> str:
    """`key=value is invalid: [why; ]allowed ...`: the format of every bad-input line."""
    reason = "; ".join(part for part in (why, f"allowed {allowed}" if allowed else None) if part)
    return f"{key}={repr(value) if shown is None else shown} is invalid: {reason}"


def invalid(
    key: str, value, allowed: str | None = None, why: str | None = None, shown: str | None = None
) -> ConfigError:
    return ConfigError(message(key, value, allowed, why, shown))


def exit_on(exc: BaseException) -> NoReturn:
    """How every command stops on bad input, a busy run dir or an interruption: one line, its exit code."""
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(next(code for kind, code in EXIT_CODES.items() if isinstance(exc, kind)))


def run_command(main, argv=None) -> None:
    """Run a command's main, with bad input as one line and exit code 2."""
    try:
        main(argv)
    except STOPS as exc:
        exit_on(exc)


def refuse(problems: list[tuple[str, object, str]]) -> None:
    """A command's bad arguments, as (key, value, what is allowed): the first one is raised."""
    if problems:
        key, value, allowed = problems[0]
        raise invalid(key, str(value), allowed)
