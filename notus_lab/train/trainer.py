"""TRL's DPOTrainer and its arguments, from the config: science from the science keys, execution from the
hardware profile."""

from __future__ import annotations

import os
import time
from pathlib import Path

from omegaconf import OmegaConf

from notus_lab.config.derived import gradient_accumulation_steps
from notus_lab.core.cache import held


def run_tags(cfg, overrides=()) -> list[str]:
    """W&B tags: the science knobs, plus the command's own overrides (what a sweep varied)."""
    adapter = cfg.model.adapter + (f"-{cfg.model.quantization}" if cfg.model.quantization != "none" else "")
    tags = [
        f"data:{cfg.data.strategy}",
        f"model:{adapter}",
        f"beta:{cfg.beta}",
        f"loss:{cfg.loss_type}",
        f"optim:{cfg.optimizer.name}",
        f"base:{cfg.base.name}",
    ]
    tags += [o.lstrip("+~") for o in overrides if not o.startswith(("hydra", "wandb.", "sweep_name"))]
    return list(dict.fromkeys(t[:64] for t in tags + list(cfg.wandb.tags)))  # W&B caps a tag at 64 chars


def dpo_trainer_class():
    """TRL's DPOTrainer, with its precomputed reference log-probs keyed by content.

    TRL caches them next to the dataset under (dataset fingerprint, model hash), but the fingerprint of
    the dataset it passes includes in-memory transforms hashed with the run's arguments (beta among them),
    so no other arm ever finds the file. Our datasets are saved under a content key that includes max_length
    (data.cached_preference_dataset), and TRL's tokenization of them is the first cache file: that file, the
    row count left after truncation and the columns identify the tokens; TRL still adds the model hash."""
    from datasets.fingerprint import Hasher
    from trl import DPOTrainer

    class ContentKeyedDPOTrainer(DPOTrainer):
        reference_s = 0.0  # wall time spent precomputing (or loading cached) reference log-probs

        def __init__(self, *args, **kwargs):
            self.reference_log_probs = {}  # per dataset: "computed" here, or "loaded" from the cache
            super().__init__(*args, **kwargs)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            files = getattr(dataset, "cache_files", None)
            t = time.perf_counter()
            if not files:
                out = super()._precompute_ref_logps(dataset, name, batch_size)
            else:  # a saved dataset: a stable identity of exactly these tokens
                dataset._fingerprint = Hasher.hash((files[0]["filename"], len(dataset), dataset.column_names))
                out = self._one_process_computes(dataset, name, batch_size)
            self.reference_s += time.perf_counter() - t
            return out

        def _one_process_computes(self, dataset, name, batch_size):
            """Two arms wanting the same log-probs at once (a parallel sweep over beta): one computes them, the
            other waits on the lock and loads them. The ranks of one run compute together, so a run of more
            than one process takes no lock (it could hold one rank back from the others' collectives)."""
            if self.args.world_size > 1:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            lock = Path(dataset.cache_files[0]["filename"]).parent / f".ref-{dataset._fingerprint}-{name}.lock"
            with held(lock):
                cache_file = dataset._get_cache_file_path(
                    Hasher.hash((dataset._fingerprint, self._precompute_model_hash))
                )
                self.reference_log_probs[name] = "loaded" if os.path.exists(cache_file) else "computed"
                return super()._precompute_ref_logps(dataset, name, batch_size)

    return ContentKeyedDPOTrainer


def _without_nulls(x):
    if isinstance(x, dict):
        return {k: _without_nulls(v) for k, v in x.items() if v is not None}
    return x


def engine_arguments(hw) -> dict:
    """The distributed engine's settings, from the hardware profile's data, as Trainer arguments."""
    if hw.distributed == "deepspeed":
        return {"deepspeed": _without_nulls(OmegaConf.to_container(hw.deepspeed, resolve=True))}
    if hw.distributed == "fsdp":
        return _without_nulls(OmegaConf.to_container(hw.fsdp, resolve=True))
    return {}


def dpo_config(cfg, run_dir: Path, report_to: list[str]):
    from trl import DPOConfig

    hw, tr, opt = cfg.hardware, cfg.train, cfg.optimizer
    return DPOConfig(
        output_dir=str(run_dir / "checkpoints"),
        run_name=run_dir.name,
        report_to=report_to,
        # science
        beta=cfg.beta,
        loss_type=[cfg.loss_type] + (["sft"] if cfg.rpo_alpha else []),
        loss_weights=[1.0, cfg.rpo_alpha] if cfg.rpo_alpha else None,
        max_length=tr.max_length,
        num_train_epochs=tr.epochs,
        max_steps=tr.max_steps,
        optim=opt.name,
        learning_rate=opt.lr,
        lr_scheduler_type=opt.scheduler,
        warmup_steps=opt.warmup_ratio,
        weight_decay=opt.weight_decay,
        seed=tr.seed,
        data_seed=tr.seed,
        # execution: the global batch is fixed, accumulation absorbs the hardware
        per_device_train_batch_size=hw.per_device_batch_size,
        per_device_eval_batch_size=hw.eval_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps(cfg),
        use_cpu=hw.device == "cpu",
        bf16=hw.precision == "bf16",
        fp16=hw.precision == "fp16",
        activation_checkpointing=hw.gradient_checkpointing,  # transformers 5 renamed gradient_checkpointing
        **engine_arguments(hw),
        # bookkeeping
        logging_steps=tr.logging_steps,
        save_strategy="steps",
        save_steps=tr.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if tr.eval_steps else "no",
        eval_steps=tr.eval_steps,
        dataloader_num_workers=0,
        disable_tqdm=False,
        precompute_ref_log_probs=tr.precompute_reference,
    )


def release_memory() -> None:
    """Free the training state, and leave ZeRO-3 behind: while its config is registered, every
    from_pretrained partitions the weights over ranks that have already gone home."""
    import gc

    import torch
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
