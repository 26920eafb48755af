"""W&B: a run per arm (and per report), offline when online fails. Tracking never fails a run."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from notus_lab.core.keys import content_key
from notus_lab.core.redaction import redact

log = logging.getLogger("notus_lab")


def log_generations(wb, records: list[dict], n: int = 64) -> None:
    """A sample of judged generations as a W&B table (the first `n` prompt x sample records)."""
    import wandb

    columns = ["prompt", "sample", "reference", "policy", "reference_score", "policy_score", "winner"]
    wb.log({"generations": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in records[:n]])})


def wandb_run_id(run_dir: Path) -> str:
    """Stable per run dir, so a resumed run continues the same W&B run."""
    return content_key(str(run_dir.resolve()))


def start_wandb(
    settings, run_dir: Path, config: dict, tags: list[str], group: str | None, job_type: str, name: str | None = None
):
    """An active W&B run in `run_dir` (its files under run_dir/wandb), or None when disabled. `settings` is a
    WandbConfig (mode, project, entity, init_timeout). Online failures fall back to offline with a warning;
    the same run dir continues the same W&B run."""
    if settings.mode == "disabled":
        return None
    import wandb

    kwargs = dict(
        project=settings.project,
        entity=settings.entity,
        name=name or run_dir.name,
        group=group,
        job_type=job_type,
        tags=tags,
        config=redact(config),
        dir=str(run_dir),
        id=wandb_run_id(run_dir),
        resume="allow",
    )
    try:
        return wandb.init(
            mode=settings.mode, settings=wandb.Settings(init_timeout=settings.init_timeout, silent=True), **kwargs
        )
    except Exception as exc:  # no network, bad key, server down: tracking must not cost the run
        if settings.mode != "online":
            warnings.warn(f"W&B could not start ({type(exc).__name__}); training continues untracked")
            return None
        warnings.warn(
            f"W&B online failed ({type(exc).__name__}: {redact(str(exc))[:200]}); logging offline "
            f"instead, upload later with `wandb sync {run_dir}/wandb`"
        )
        try:
            # the failed online attempt leaves wandb's service unusable: reset it, and start our own
            # instead of reconnecting to one inherited from a parent process (WANDB_SERVICE)
            wandb.teardown()
            os.environ.pop("WANDB_SERVICE", None)
            return wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)
        except Exception as exc2:
            warnings.warn(f"W&B offline also failed ({type(exc2).__name__}); training continues untracked")
            return None
