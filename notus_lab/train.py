"""Train stage: one DPO run = validate -> data -> model -> TRL DPOTrainer -> evaluate -> artefacts.

Everything a run leaves behind lives in its run dir:
  config.yaml, provenance.json, data_report.json, model/ (safetensors), metrics.json, README.md,
  checkpoints/ (for resume), wandb/ (offline W&B run files), failed.json (if it crashed).
metrics.json is written last: it means "finished". A run dir is held by one process at a time (.lock).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from notus_lab import config as C
from notus_lab.checks import (check_engine, local_parameter_share, memory_record, optimizer_check_callback,
                              precision_record)
from notus_lab.distributed import join_deepspeed_comm
from notus_lab.model_card import model_card
from notus_lab.preflight import validate
from notus_lab.run_dir import (Interrupted, latest_checkpoint, pass_on, record_failure, run_dir_lock,
                               science_fingerprint, stop_on_signal_callback, what_changed)
from notus_lab.tracking import (code_version, flatten, log_generations, provenance, redact, start_wandb, write_json,
                                write_jsonl)

log = logging.getLogger("notus_lab")


def run_tags(cfg, overrides=()) -> list[str]:
    """W&B tags: the science knobs, plus the command's own overrides (what a sweep varied)."""
    adapter = cfg.model.adapter + (f"-{cfg.model.quantization}" if cfg.model.quantization != "none" else "")
    tags = [f"data:{cfg.data.strategy}", f"model:{adapter}", f"beta:{cfg.beta}", f"loss:{cfg.loss_type}",
            f"optim:{cfg.optimizer.name}", f"base:{cfg.base.name}"]
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

        def _precompute_ref_logps(self, dataset, name, batch_size):
            files = getattr(dataset, "cache_files", None)
            if files:  # a saved dataset: a stable identity of exactly these tokens
                dataset._fingerprint = Hasher.hash((files[0]["filename"], len(dataset), dataset.column_names))
            t = time.perf_counter()
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            self.reference_s += time.perf_counter() - t
            return out

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
        output_dir=str(run_dir / "checkpoints"), run_name=run_dir.name, report_to=report_to,
        # science
        beta=cfg.beta, loss_type=[cfg.loss_type] + (["sft"] if cfg.rpo_alpha else []),
        loss_weights=[1.0, cfg.rpo_alpha] if cfg.rpo_alpha else None, max_length=tr.max_length, num_train_epochs=tr.epochs,
        max_steps=tr.max_steps, optim=opt.name, learning_rate=opt.lr, lr_scheduler_type=opt.scheduler,
        warmup_steps=opt.warmup_ratio, weight_decay=opt.weight_decay, seed=tr.seed, data_seed=tr.seed,
        # execution: the global batch is fixed, accumulation absorbs the hardware
        per_device_train_batch_size=hw.per_device_batch_size, per_device_eval_batch_size=hw.eval_batch_size,
        gradient_accumulation_steps=C.gradient_accumulation_steps(cfg),
        use_cpu=hw.device == "cpu", bf16=hw.precision == "bf16", fp16=hw.precision == "fp16",
        activation_checkpointing=hw.gradient_checkpointing,  # transformers 5 renamed gradient_checkpointing
        **engine_arguments(hw),
        # bookkeeping
        logging_steps=tr.logging_steps, save_strategy="steps", save_steps=tr.save_steps, save_total_limit=2,
        eval_strategy="steps" if tr.eval_steps else "no", eval_steps=tr.eval_steps, dataloader_num_workers=0,
        disable_tqdm=False,
        precompute_ref_log_probs=tr.precompute_reference,
    )


def run(cfg: DictConfig, run_dir: Path, overrides=(), group: str | None = None) -> dict:
    """Train one arm. Returns metrics (also written to run_dir/metrics.json).

    The same command finds the same run dir: a finished run is returned as it is, an unfinished or
    failed one resumes from its newest complete checkpoint; `train.resume=false` starts over."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):
        started = (run_dir / "metrics.json").exists() or (run_dir / "checkpoints").is_dir()
        if started and cfg.train.resume:  # never hand back (or resume) a run of other settings or other code
            changed = what_changed(run_dir, OmegaConf.to_container(cfg, resolve=True), code_version())
            if changed:
                raise C.ConfigError(f"hydra.run.dir={str(run_dir)!r} is invalid: it holds a run made with another "
                                    f"{changed}; allowed train.resume=false (start over there) or another hydra.run.dir")
        if (run_dir / "metrics.json").exists() and cfg.train.resume:
            log.info("run already finished: %s (train.resume=false starts over)", run_dir)
            return json.loads((run_dir / "metrics.json").read_text())
        if not cfg.train.resume:
            for stale in ("checkpoints", "model", "merged", "metrics.json", "README.md", "failed.json"):
                p = run_dir / stale
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        try:
            validate(cfg)  # one line per problem, before anything heavy loads
            metrics = _train(cfg, run_dir, overrides, group)
        except Interrupted:
            raise
        except Exception as exc:
            record_failure(run_dir, exc)
            raise
        (run_dir / "failed.json").unlink(missing_ok=True)
        return metrics


def _train(cfg: DictConfig, run_dir: Path, overrides, group: str | None) -> dict:
    import torch

    threads = cfg.hardware.threads or int(os.environ.get("OMP_NUM_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK") or 0)
    if threads:  # a parallel or SLURM sweep gives each job its share of the cores, never all of them
        torch.set_num_threads(threads)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    timings, laps = {}, [time.perf_counter()]

    def lap(stage: str) -> float:  # wall seconds of each stage, reported in metrics["timings_s"]
        laps.append(time.perf_counter())
        timings[stage] = round(laps[-1] - laps[-2], 2)
        return timings[stage]

    from notus_lab import data as D
    from notus_lab import model as M

    # 0. what every process needs built first (a multi-process run's launcher built them before the ranks)
    base = prebuild(cfg)
    # the training arguments before any model loads: they set up the distributed state, and under ZeRO-3
    # they make from_pretrained partition the weights while loading (zero.Init) instead of every rank
    # holding a whole policy and reference in CPU RAM
    args = dpo_config(cfg, run_dir, [])
    join_deepspeed_comm(cfg.hardware)
    writer = args.process_index == 0

    # 1. data: rank 0 prepares, audits, hashes and writes the run's records first; the others then read
    # the same rows and wait for nothing more (one writer: no two ranks race on a file)
    with args.main_process_first(local=False, desc="rank 0 writes the run's records"):
        prepared = D.prepare(cfg.data, eval_sets=C.eval_data_configs(cfg), audit_rows=writer)
        report = prepared["report"]
        base_fingerprint = None
        if writer:
            (run_dir / "config.yaml").write_text(redact(OmegaConf.to_yaml(cfg, resolve=True)))
            write_json(run_dir / "data_report.json", report)
            base_fingerprint = M.fingerprint_base(base, cfg.base.revision)  # reads every weight file once: reused below
            write_json(run_dir / "provenance.json", provenance(D.fingerprint_rows(prepared["rows"]), base_fingerprint,
                                                              science_fingerprint(resolved)))
            log.info("rank %d wrote config.yaml, data_report.json, provenance.json", args.process_index)
    if not prepared["train_pairs"]:
        raise C.ConfigError(f"data.source={cfg.data.source!r} is invalid: no training pairs survived "
                            f"(dropped: {report['rows_dropped']})")
    log.info("data: %d rows -> %d train pairs (%.1fs); dropped %s", report["rows_in"], report["pairs_out"],
             lap("data"), report["rows_dropped"])

    # 2. model
    from transformers import set_seed

    from notus_lab.tiny_base import cache_root

    set_seed(cfg.train.seed)
    tokenizer = M.load_tokenizer(cfg, base)
    policy, reference, peft_config = M.load_models(cfg, base)
    parameter_share_at_load = local_parameter_share(policy)  # ~1/N when ZeRO-3 partitioned the load itself
    policy_weights_dtype = str(next(p.dtype for p in policy.parameters() if p.is_floating_point())).replace("torch.", "")
    if cfg.train.precompute_reference:  # reusable across arms: keyed by everything the log-probs depend on
        from importlib.metadata import version

        from accelerate.utils import broadcast_object_list

        base_fingerprint = broadcast_object_list([base_fingerprint])[0] if args.world_size > 1 else base_fingerprint
        salt = "|".join(map(str, (base_fingerprint, cfg.train.max_length, cfg.hardware.precision,
                                  M.attention(cfg.hardware), cfg.model.quantization, version("trl"))))
        as_dataset = lambda pairs: D.cached_preference_dataset(  # noqa: E731
            pairs, tokenizer, cfg.train.max_prompt_length, cfg.train.max_length, cfg.train.reference_cache_dir or cache_root(cfg.base) / "datasets", salt)
    else:
        as_dataset = lambda pairs: D.to_preference_dataset(  # noqa: E731
            pairs, tokenizer, cfg.train.max_prompt_length, cfg.train.max_length)
    train_ds = as_dataset(prepared["train_pairs"])
    eval_ds = {name: as_dataset(pairs) for name, pairs in prepared["eval_pairs"].items() if pairs}

    lap("model")  # load the models, build (or load the cached) preference datasets

    # 3. train (the subclass only changes how precomputed reference log-probs are keyed)
    DPOTrainer = dpo_trainer_class()

    wb = start_wandb(cfg, run_dir, resolved, run_tags(cfg, overrides), cfg.wandb.group or group,
                     job_type="train") if writer else None
    args.report_to = ["wandb"] if wb else []
    stop, optimizer_built = stop_on_signal_callback(), {}
    if not eval_ds:
        args.eval_strategy = "no"  # periodic evaluation needs held-out sets
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=train_ds,
                         eval_dataset=eval_ds if args.eval_strategy != "no" else None,
                         processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[stop, optimizer_check_callback(cfg.optimizer.name, optimizer_built)])
    engine = trainer.accelerator.distributed_type.value.lower()  # multi_cpu, multi_gpu, deepspeed, fsdp, no
    check_engine(cfg.hardware, engine, trainer.args.world_size)
    resume_from = latest_checkpoint(run_dir / "checkpoints") if cfg.train.resume else None
    if resume_from:
        log.info("resuming from %s", resume_from)
    stop.install()
    try:
        train_out = trainer.train(resume_from_checkpoint=resume_from)
    finally:
        stop.restore()
    lap("train")
    if stop.received is not None:
        if wb is not None:
            wb.finish(exit_code=1)
        step = trainer.state.global_step
        pass_on(stop.previous.get(stop.received), stop.received)  # submitit: requeue this arm, then exit
        raise Interrupted(f"stopped by {signal.Signals(stop.received).name} at step {step}; checkpoint saved in "
                          f"{run_dir / 'checkpoints'}; run the same command again to resume")

    # 4. evaluate: the held-out prompts under every signal, and the truth where the world knows it
    from notus_lab.evaluate import summarize

    if eval_ds:
        trainer.evaluate(eval_dataset=eval_ds)
    lap("evaluate")
    metrics = summarize(trainer.state.log_history, train_out.metrics, list(eval_ds))
    metrics["global_batch_size"] = cfg.train.global_batch_size
    metrics["world_size"] = trainer.args.world_size
    metrics["gradient_accumulation_steps"] = trainer.args.gradient_accumulation_steps
    metrics["torch_threads"] = torch.get_num_threads()
    metrics["engine"] = engine
    metrics["optimizer"] = optimizer_built  # the class that really stepped, with its settings
    metrics["attention"] = getattr(trainer.model.config, "_attn_implementation", None)  # what ran, not what was asked
    metrics["memory_gb"] = memory_record(cfg)
    metrics["precision"] = precision_record(cfg.hardware, policy_weights_dtype)
    metrics["rank0_parameter_share"] = local_parameter_share(trainer.model)  # 1/world_size when really sharded
    metrics["rank0_parameter_share_at_load"] = parameter_share_at_load

    # 5. artefacts: every rank joins save_model (ZeRO-3 / FSDP gather the sharded weights), rank 0 writes
    trainer.save_model(str(run_dir / "model"))
    reference_s = trainer.reference_s
    if writer:
        tokenizer.save_pretrained(str(run_dir / "model"))
        if cfg.export.merge:  # from the saved adapter: under ZeRO-3 / FSDP the live weights are shards
            from peft import AutoPeftModelForCausalLM

            merged = AutoPeftModelForCausalLM.from_pretrained(str(run_dir / "model"), use_safetensors=True)
            merged.merge_and_unload().save_pretrained(str(run_dir / "merged"))
            tokenizer.save_pretrained(str(run_dir / "merged"))
        lap("save")
    # the training state (models, optimizer, engine) goes before generation loads the saved models again
    trainer.accelerator.free_memory()
    del trainer, policy, reference
    release_memory()

    # 6. judged generations: the policy and its reference answer the held-out prompts, the judge compares
    if writer and cfg.judge.name != "none":
        from notus_lab.evaluate import judged_generations

        metrics["generation"], records = judged_generations(
            cfg, run_dir / "model", base, prepared["held_out_prompts"], prepared["eval_pairs"].get("truth"))
        write_jsonl(run_dir / "generations.jsonl", records)
        lap("generate")
        if wb is not None:
            log_generations(wb, records)
    if writer:
        # precomputed reference log-probs happen inside train and evaluate; without them, inside every step
        metrics["timings_s"] = {**timings, "reference_precompute": round(reference_s, 2)}
        (run_dir / "README.md").write_text(redact(model_card(cfg, metrics, report)))
        write_json(run_dir / "metrics.json", metrics)  # last: its presence means "finished"
        if wb is not None:
            wb.summary.update({k: v for k, v in flatten(metrics).items() if isinstance(v, (int, float))})
    if wb is not None:
        wb.finish()  # the HF callback never does; a multirun needs one run per job
    return metrics


def prebuild(cfg) -> str:
    """Build (once per machine) what the run loads by name: the tiny base, the tiny reward-model judge.
    Called by the launcher of a multi-process run before it starts the ranks, and by every run: a build
    found in the cache costs nothing. Returns the base's local path or hub id."""
    from notus_lab.model import base_path

    base = base_path(cfg.base)
    if cfg.judge.name == "reward_model" and cfg.judge.model == "tiny":
        from notus_lab.reward_model import build_tiny_reward_model

        build_tiny_reward_model(cfg.base)
    return base


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

