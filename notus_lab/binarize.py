"""`python -m notus_lab.binarize data=<strategy> data.source=<file>`: pairs + audit, no training.

Writes pairs.jsonl (prompt, chosen, rejected, score_chosen, score_rejected, row_index, split, ...)
and data_report.json; `format=parquet|datasets` also writes TRL's conversational preference format.
Imports no torch, so inspecting a 64k-row file costs seconds.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from notus_lab.config.compose import run_checked
from notus_lab.config.options import CONF_DIR
from notus_lab.config.schema import DataConfig
from notus_lab.config.validate import validate_data
from notus_lab.core import chat
from notus_lab.core.errors import STOPS, exit_on, invalid
from notus_lab.core.files import write_json
from notus_lab.data.audit import write_summary
from notus_lab.data.pairs import as_data_config
from notus_lab.data.prepare import prepare


@dataclass
class BinarizeConfig:
    data: DataConfig = field(default_factory=DataConfig)
    out: Optional[str] = None  # default: the Hydra run dir
    format: str = "jsonl"  # jsonl | parquet | datasets (the last two in TRL's conversational format)


ConfigStore.instance().store(name="binarize_schema", node=BinarizeConfig)


def conversational(pair: dict) -> dict:
    return {
        "prompt": chat.prompt_messages(pair["prompt"]),
        "chosen": chat.answer(pair["chosen"]),
        "rejected": chat.answer(pair["rejected"]),
        "score_chosen": pair["score_chosen"],
        "score_rejected": pair["score_rejected"],
    }


def write_pairs(pairs: list[dict], out: Path, fmt: str) -> None:
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False))
            f.write("\n")
    if fmt in ("parquet", "datasets"):
        import datasets

        ds = datasets.Dataset.from_list([conversational(p) for p in pairs])
        ds.to_parquet(str(out / "pairs.parquet")) if fmt == "parquet" else ds.save_to_disk(str(out / "pairs_dataset"))


def binarize_to(cfg, out: Path) -> dict:
    """The data stage of a training run (same split, same pairs), written out instead of trained on."""

    if cfg.format not in ("jsonl", "parquet", "datasets"):
        raise invalid("format", cfg.format, "one of jsonl, parquet, datasets")
    validate_data(cfg.data)
    d = as_data_config(cfg.data)
    points = []
    prepared = prepare(d, points=points)
    report = prepared["report"]
    for p in prepared["train_pairs"]:
        p["split"] = "train"
    for p in prepared["test_pairs"]:
        p["split"] = "test"
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    write_pairs(prepared["train_pairs"] + prepared["test_pairs"], out, cfg.format)
    report["timings"]["write_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    write_summary(report, points, d, out)
    report["timings"]["summary_s"] = round(time.perf_counter() - t, 3)
    write_json(out / "data_report.json", report)
    return report


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="binarize")
def main(cfg: DictConfig) -> None:
    out = Path(cfg.out) if cfg.out else Path(HydraConfig.get().runtime.output_dir)
    # millions of small objects and no cycles: the cyclic GC would rescan them over and over (~+20%)
    gc.disable()
    try:
        report = binarize_to(cfg, out)
    except STOPS as exc:
        exit_on(exc)
    print(
        f"{report['rows_in']} rows -> {report['pairs_out']} train pairs + {report['held_out']['pairs_out']} "
        f"held-out pairs; dropped {report['rows_dropped']}; written to {out}"
    )


if __name__ == "__main__":
    run_checked(main, "binarize", check=lambda cfg: validate_data(cfg.data))
