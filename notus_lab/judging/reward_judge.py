"""A small reward model trained here with TRL's `RewardTrainer`, for `judge=reward_model` in the world.

    python -m notus_lab.reward_model --out DIR [--labels truth|mean_rating|critique|...] [--rows N] [--epochs E]
    python -m notus_lab judge=reward_model judge.model=DIR         # or judge.model=tiny: built once, cached

It starts from the tiny SFT base (a new scalar head) and learns from world pairs of its own (a world seed
no study uses). Labels default to the truth, like a strong external judge; `--labels mean_rating` (any data
option) trains a judge that shares one signal's view, to see how a judge's own bias moves a verdict. Its
agreement with the truth on held-out world pairs is measured and saved in `judge_card.json`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from notus_lab.config.options import load_option
from notus_lab.config.schema import DataConfig, WorldConfig
from notus_lab.core import chat
from notus_lab.core.cache import build_once
from notus_lab.core.keys import content_key
from notus_lab.data.audit import truth_pairs
from notus_lab.data.pairs import binarize
from notus_lab.data.world import generate_rows
from notus_lab.judging.judges import RewardModelJudge, agreement_with_truth
from notus_lab.models.tiny_base import cache_root

RM_WORLD_SEED = 2_000_003  # its own prompts and completions: never the rows a study trains on


HELD_OUT = 300  # world rows kept out of training to measure the judge's agreement with the truth


def _pairs(labels: str, rows: list, indices) -> list[dict]:
    from omegaconf import OmegaConf

    if labels == "truth":
        return truth_pairs(rows, indices)
    option = OmegaConf.merge(OmegaConf.structured(DataConfig), load_option("data", labels))
    return binarize(rows, OmegaConf.to_object(option), indices)[0]


def train_reward_model(
    out: Path,
    base_dir: str,
    labels: str = "truth",
    rows: int = 2000,
    epochs: float = 1.0,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict:
    """Train and save a reward model into `out`; returns its card (labels, pairs, agreement with the truth)."""
    import datasets
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    world = list(generate_rows(WorldConfig(rows=rows + HELD_OUT, seed=RM_WORLD_SEED)))
    train = _pairs(labels, world, range(rows))
    dataset = datasets.Dataset.from_list(
        [
            {
                "chosen": chat.conversation(p["prompt"], p["chosen"]),
                "rejected": chat.conversation(p["prompt"], p["rejected"]),
            }
            for p in train
        ]
    )
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    scratch = Path(tempfile.mkdtemp(prefix="notus-rm-"))
    try:
        args = RewardConfig(
            output_dir=str(scratch),
            num_train_epochs=epochs,
            per_device_train_batch_size=64,
            learning_rate=lr,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,
            seed=seed,
            max_length=256,
            use_cpu=True,
            bf16=False,
            activation_checkpointing=False,
            save_strategy="no",
            report_to=[],
            logging_steps=25,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = RewardTrainer(model=base_dir, args=args, train_dataset=dataset, processing_class=tokenizer)
        trainer.train()
        out.mkdir(parents=True, exist_ok=True)
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    judge = RewardModelJudge(str(out))
    card = {
        "base": base_dir,
        "labels": labels,
        "train_pairs": len(train),
        "epochs": epochs,
        "world_seed": RM_WORLD_SEED,
        "truth_agreement_held_out": agreement_with_truth(judge, truth_pairs(world, range(rows, rows + HELD_OUT))),
    }
    (out / "judge_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def build_tiny_reward_model(base_cfg) -> Path:
    """`judge.model=tiny`: the default reward model on the tiny base, built once into the cache."""
    from notus_lab.models.loading import base_path, fingerprint_base

    base = base_path(base_cfg)
    target = cache_root(base_cfg) / f"tiny-rm-{content_key(fingerprint_base(base), length=12)}"
    return build_once(target, "judge_card.json", lambda tmp: train_reward_model(tmp, base))
