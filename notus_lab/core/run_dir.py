"""The run dir as a unit of work: one writer at a time (.lock), a record of failure, the newest complete
checkpoint. The same command finds the same run dir, so these are what make a relaunch safe."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from notus_lab.core.errors import RunDirBusy
from notus_lab.core.files import write_json


def _artefact(name: str, what: str) -> property:
    return property(lambda self: self.path / name, doc=what)


class RunDir:
    """A run dir's layout: the one place its artefact names are spelled. Training writes them, and the
    report, the exporters and the resume check find them here."""

    config = _artefact("config.yaml", "the resolved config, redacted")
    provenance = _artefact("provenance.json", "commit, code version, packages, data and base fingerprints")
    data_report = _artefact("data_report.json", "rows in, pairs out, what was dropped and why, the audit")
    metrics = _artefact("metrics.json", "written last: its presence means finished")
    card = _artefact("README.md", "the model card")
    failed = _artefact("failed.json", "what went wrong, when a run crashed")
    generations = _artefact("generations.jsonl", "judged generations, one record per prompt x sample")
    external = _artefact("external.json", "external judges' results, one entry per judge")
    lm_eval = _artefact("lm_eval.json", "lm-evaluation-harness: per task the aggregate, stderr, versions, settings")
    lm_eval_samples = _artefact("lm_eval_samples.jsonl", "lm-evaluation-harness's per-question records")
    model = _artefact("model", "the trained weights (or adapter) and tokenizer")
    merged = _artefact("merged", "LoRA merged into the base (export.merge)")
    gguf = _artefact("gguf", "GGUF files for llama.cpp, <run>.<TYPE>.gguf (python -m notus_lab.export)")
    gguf_answers = _artefact("gguf/answers.jsonl", "every GGUF file's answers to the held-out prompts, scored")
    checkpoints = _artefact("checkpoints", "for resume")
    wandb = _artefact("wandb", "W&B's run files")
    lock = _artefact(".lock", "held by the one process writing here")
    output = _artefact("output.log", "an arm's own console output in a sweep (the console shows one line per arm)")
    exports = _artefact("generations", "answers for external judges (python -m notus_lab.generate)")
    overrides = _artefact(".hydra/overrides.yaml", "the command's overrides, as Hydra keeps them")
    hydra_config = _artefact(".hydra/config.yaml", "the composed config, as Hydra keeps it")

    def __init__(self, path):
        self.path = Path(path)

    def restart(self) -> None:
        """Remove what a previous attempt trained (train.resume=false); the records are rewritten anyway."""
        for p in (self.checkpoints, self.model, self.merged, self.metrics, self.card, self.failed):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def finished_runs(path) -> list[Path]:
    """A finished run dir itself, or a sweep's finished run dirs (what the commands on finished runs take)."""
    path = Path(path)
    if RunDir(path).metrics.exists():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_dir() and RunDir(p).metrics.exists()) if path.is_dir() else []


@contextmanager
def run_dir_lock(run_dir: Path):
    """Two processes never write into the same run dir (the OS drops the lock if the holder dies)."""
    if int(os.environ.get("RANK", "0")) != 0:  # ranks of one distributed run share their dir
        yield
        return
    with open(RunDir(run_dir).lock, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(
                f"another process is training in {run_dir}; wait for it or pick another hydra.run.dir"
            ) from None
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def record_failure(run_dir: Path, exc: BaseException) -> None:
    """failed.json names what went wrong, so a sweep report can list the arm with its error."""
    write_json(
        RunDir(run_dir).failed,
        {
            "error": type(exc).__name__,
            "message": str(exc).strip().splitlines()[0][:500] if str(exc).strip() else "",
            "traceback": traceback.format_exception(exc)[-3:],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )


def latest_checkpoint(ckpt_dir: Path) -> str | None:
    """Newest checkpoint whose save completed (the Trainer writes trainer_state.json last)."""
    done = [p for p in ckpt_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None
