"""Overrides, read once: the one parser (Hydra's own) and the one merge behind the sweepers, the preflight, the run
dir name, the console line and the report's swept keys.

A sweep's design is its experiment's `hydra.sweeper.params` with the command line on top, key by key, as Hydra's
BasicSweeper has it (`split_arguments`): `beta=0.1` on the command line replaces the experiment's `beta: 0.01,0.1`,
never multiplies it. A key is the override's key without its `+`/`++`/`~` prefix, so `+data=x` and `data=y` are one
key. A key typed twice on the command line, or twice in one job, is refused: two spellings of one design would
otherwise train twice or share a dir."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from notus_lab.core.errors import invalid


@dataclass(frozen=True)
class Factor:
    """One key of a design: its spelling (`+data`, `data`, `beta`) and its values, in the order given."""

    key: str  # without prefix: the config key (or group)
    spelled: str  # as typed, prefix included: what each job's override says
    values: tuple[str, ...]

    def overrides(self) -> list[str]:
        if self.spelled.startswith("~") and self.values == ("",):  # a deletion sets no value
            return [self.spelled]
        return [f"{self.spelled}={v}" for v in self.values]


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def key_of(text: str) -> str:
    """The config key an override sets (`+data=x` -> `data`, `~beta` -> `beta`, `db@pkg=y` -> `db@pkg`)."""
    head = text.split("=", 1)[0]
    return head.lstrip("+~")


def values_of(override, options: Callable[[str], list[str]] | None = None) -> tuple[str, ...]:
    """The values one parsed override stands for: one, or each value of a discrete sweep (`a,b`, `range(..)`,
    `choice(..)`; `glob(..)` filters the group's `options`)."""
    from hydra.core.override_parser.types import Glob

    if not override.is_sweep_override():
        return ("",) if override.is_delete() and override.value() is None else (override.get_value_element_as_str(),)
    if not override.is_discrete_sweep():
        raise invalid(
            override.get_key_element(),
            override.input_line.split("=", 1)[-1],
            "a list (a,b), range(...), choice(...) or glob(...)",
            why="a continuous interval cannot be swept by listing arms",
        )
    value = override.value()
    if isinstance(value, Glob):
        return tuple(value.filter(options(override.key_or_group) if options else []))
    return tuple(override.sweep_string_iterator())


def factors(arguments: list[str], params: dict | None = None, options=None) -> list[Factor]:
    """The design of a sweep: the experiment's `params` ({key: "a,b"}) with the command line's `arguments` on top,
    key by key, in the order Hydra's BasicSweeper gives them (params first, a replaced key keeps its place)."""
    parser = _parser()
    command = [(t, parser.parse_override(t)) for t in arguments]
    seen: dict[str, str] = {}
    for text, _ in command:
        k = key_of(text)
        if k in seen:
            raise invalid(k, text.split("=", 1)[-1], f"one value or one list (e.g. {k}=a,b)", why=f"{k} is given twice")
        seen[k] = text
    merged: dict[str, Factor] = {}
    for text in [f"{k}={v}" for k, v in (params or {}).items()]:
        o = parser.parse_override(text)
        merged[key_of(text)] = Factor(key_of(text), o.get_key_element(), values_of(o, options))
    for text, o in command:
        merged[key_of(text)] = Factor(key_of(text), o.get_key_element(), values_of(o, options))
    return list(merged.values())


def as_dict(job: list[str]) -> dict[str, str]:
    """One job's overrides as {key: value}; a key twice is refused (its run dir would name two configs)."""
    out: dict[str, str] = {}
    for text in job:
        k, _, value = text.partition("=")
        k = k.lstrip("+~")
        if k in out and out[k] != value:
            raise invalid(k, value, f"one value per arm (it is also {out[k]!r})", why=f"{k} is given twice")
        out[k] = value
    return out


def swept(jobs: list[dict[str, str]]) -> list[str]:
    """Keys whose value differs between jobs (a key a job lacks counts as another value), sorted."""
    keys = sorted({k for j in jobs for k in j})
    return [k for k in keys if len({j.get(k) for j in jobs}) > 1]
