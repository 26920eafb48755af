"""`python -m notus_lab [overrides]`: compose conf/ with Hydra and train one DPO arm (or a sweep).

A sweep (`--multirun`) writes every arm to outputs/sweeps/<sweep_name>/<overrides> and logs it to the
W&B group <sweep_name>. An arm that fails leaves failed.json and the sweep goes on with the others.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from notus_lab.config.compose import run_checked
from notus_lab.config.options import CONF_DIR
from notus_lab.core.console import arm_line, arm_output, summary
from notus_lab.core.errors import STOPS, exit_on
from notus_lab.core.run_dir import RunDir
from notus_lab.train.launcher import relaunch_if_needed
from notus_lab.train.pipeline import run

log = logging.getLogger("notus_lab")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    from pathlib import Path

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    if multirun:  # an arm of a sweep: its output to its run dir, one line on the console when it ends
        done_before = RunDir(run_dir).metrics.exists()
        try:
            with arm_output(RunDir(run_dir).output):
                metrics = train_arm(cfg, run_dir, overrides, cfg.sweep_name)
        except BaseException as exc:
            print(
                arm_line(
                    run_dir, overrides, None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ),
                flush=True,
            )
            raise  # Hydra marks this arm failed and goes on with the others
        print(arm_line(run_dir, overrides, metrics, note="run already finished" if done_before else None), flush=True)
        return
    try:
        metrics = train_arm(cfg, run_dir, overrides, None)
        if int(os.environ.get("RANK", "0")) == 0:
            print(summary(run_dir, metrics), flush=True)
    except STOPS as exc:
        log.error("%s", exc)
        exit_on(exc)


def train_arm(cfg: DictConfig, run_dir, overrides: list[str], group: str | None) -> dict:
    if relaunch_if_needed(cfg, run_dir, overrides):  # the processes it started did the run
        metrics = json.loads(RunDir(run_dir).metrics.read_text())
    else:
        metrics = run(cfg, run_dir, overrides=overrides, group=group)
    if cfg.export.gguf and int(os.environ.get("RANK", "0")) == 0:  # after training: the finished run's files
        from notus_lab.export import ensure_gguf

        metrics = ensure_gguf(run_dir, list(cfg.export.gguf))
    return metrics


if __name__ == "__main__":
    from hydra_plugins.notus_lab_sweepers import register
    from notus_lab.core.console import quiet_third_party_noise

    sys.argv = [sys.argv[0], *quiet_third_party_noise(sys.argv[1:])]
    register()
    run_checked(main)
