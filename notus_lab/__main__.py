"""`python -m notus_lab [overrides]`: compose conf/ with Hydra and train one DPO arm (or a sweep)."""

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from notus_lab.config import CONF_DIR, ConfigError, fail, launch


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    from pathlib import Path

    from notus_lab.train import run

    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as exc:
        logging.getLogger("notus_lab").error("config error: %s", exc)
        fail(exc)


if __name__ == "__main__":
    launch(main)
