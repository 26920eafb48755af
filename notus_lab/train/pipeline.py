"""Train stage: one DPO run = validate -> data -> model -> TRL DPOTrainer -> evaluate -> artefacts -> judged
generations. Each step below is a named function; `train_arm` reads as the recipe.

Everything a run leaves behind lives in its run dir (core.run_dir.RunDir names the files): config.yaml,
provenance.json, data_report.json, model/ (safetensors), metrics.json, README.md, checkpoints/ (for resume),
wandb/ (offline W&B run files), failed.json (if it crashed). metrics.json is written last: it means
"finished". A run dir is held by one process at a time (.lock).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from notus_lab.config.options import eval_data_configs
from notus_lab.config.science import science_fingerprint, what_changed
from notus_lab.config.validate import validate
from notus_lab.core.errors import Interrupted, invalid
from notus_lab.core.files import flatten, write_json, write_jsonl
from notus_lab.core.provenance import code_version, provenance
from notus_lab.core.redaction import redact
from notus_lab.core.run_dir import (
    RunDir,
    latest_checkpoint,
    record_failure,
    run_dir_lock,
)
from notus_lab.core.tracking import log_generations, start_wandb
from notus_lab.data.preference_dataset import (
    cached_preference_dataset,
    to_preference_dataset,
)
from notus_lab.data.prepare import fingerprint_rows, prepare
from notus_lab.judging.head_to_head import judged_generations
from notus_lab.models.tiny_base import cache_root
from notus_lab.train.compute import compute_record
from notus_lab.train.launcher import join_deepspeed_comm, prebuild
from notus_lab.train.model_card import model_card
from notus_lab.train.runtime_checks import (
    check_engine,
    local_parameter_share,
    memory_record,
    optimizer_check_callback,
    precision_record,
)
from notus_lab.train.stop_signals import pass_on, stop_on_signal_callback
from notus_lab.train.trainer import (
    dpo_config,
    dpo_trainer_class,
    release_memory,
    run_tags,
)
from notus_lab.train.trainer_logs import summarize

log = logging.getLogger("notus_lab")


def run(cfg: DictConfig, run_dir: Path, overrides=(), group: str | None = None) -> dict:
    """Train one arm. Returns metrics (also written to run_dir/metrics.json).

    The same command finds the same run dir: a finished run is returned as it is, an unfinished or
    failed one resumes from its newest complete checkpoint; `train.resume=false` starts over."""
    rd = RunDir(run_dir)
    rd.path.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(rd.path):
        finished = finished_run(cfg, rd)
        if finished is not None:
            return finished
        try:
            validate(cfg)  # one line per problem, before anything heavy loads
            metrics = train_arm(cfg, rd, overrides, group)
        except Interrupted:
            raise
        except Exception as exc:
            record_failure(rd.path, exc)
            raise
        rd.failed.unlink(missing_ok=True)
        return metrics


def finished_run(cfg, rd: RunDir) -> dict | None:
    """The metrics of the same run finished before; None when there is work to do. Never hands back (or
    resumes) a run of other settings or other code."""
    started = rd.metrics.exists() or rd.checkpoints.is_dir()
    if started and cfg.train.resume:
        changed = what_changed(rd, OmegaConf.to_container(cfg, resolve=True), code_version())
        if changed:
            raise invalid(
                "hydra.run.dir",
                str(rd.path),
                "train.resume=false (start over there) or another hydra.run.dir",
                why=f"it holds a run made with another {changed}",
            )
    if rd.metrics.exists() and cfg.train.resume:
        log.info("run already finished: %s (train.resume=false starts over)", rd.path)
        return json.loads(rd.metrics.read_text())
    if not cfg.train.resume:
        rd.restart()
    return None


class StageClock:
    """Wall seconds of each stage, for metrics["timings_s"] (the report sums them per stage)."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, stage: str) -> float:
        now = time.perf_counter()
        self.timings[stage] = round(now - self.last, 2)
        self.last = now
        return self.timings[stage]

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 2)


@dataclass
class Built:
    """What the model step builds for the trainer."""

    tokenizer: object
    policy: object
    reference: object
    peft_config: object
    train_ds: object
    eval_ds: dict
    parameter_share_at_load: float
    policy_weights_dtype: str


def train_arm(cfg: DictConfig, rd: RunDir, overrides, group: str | None) -> dict:
    """The recipe. The training arguments come before any model loads: they set up the distributed state,
    and under ZeRO-3 make from_pretrained partition the weights while loading (zero.Init)."""
    torch_threads(cfg)
    clock = StageClock()
    base = prebuild(cfg)  # a multi-process run's launcher built these before the ranks started
    args = dpo_config(cfg, rd.path, [])
    join_deepspeed_comm(cfg.hardware)
    writer = args.process_index == 0
    resolved = OmegaConf.to_container(cfg, resolve=True)
    prepared, base_fingerprint = prepare_data(cfg, resolved, rd, args, base, writer)
    log.info(
        "data: %d rows -> %d train pairs (%.1fs); dropped %s",
        prepared["report"]["rows_in"],
        prepared["report"]["pairs_out"],
        clock.lap("data"),
        prepared["report"]["rows_dropped"],
    )
    built = load_models(cfg, args, base, base_fingerprint, prepared)
    clock.lap("model")
    wb = (
        start_wandb(cfg.wandb, rd.path, resolved, run_tags(cfg, overrides), cfg.wandb.group or group, "train")
        if writer
        else None
    )
    trainer, stop, optimizer_built = build_trainer(cfg, rd, args, built, wb)
    engine = trainer.accelerator.distributed_type.value.lower()  # multi_cpu, multi_gpu, deepspeed, fsdp, no
    check_engine(cfg.hardware, engine, trainer.args.world_size)
    train_out = train_until_done_or_stopped(cfg, rd, trainer, stop, wb)
    clock.lap("train")
    metrics = evaluate(cfg, trainer, train_out, engine, optimizer_built, built)
    clock.lap("evaluate")
    save_model(cfg, rd, trainer, built.tokenizer, writer, clock)
    reference_s = trainer.reference_s
    trainer.accelerator.free_memory()  # generation loads the saved models again: the training state goes first
    del trainer, built
    release_memory()
    if writer and cfg.judge.name != "none":
        judge_generations(cfg, rd, base, base_fingerprint, prepared, metrics, wb)
        clock.lap("generate")
    # precomputed reference log-probs happen inside train and evaluate; without them, inside every step
    total = clock.total()
    metrics["timings_s"] = {**clock.timings, "reference_precompute": round(reference_s, 2), "total": total}
    metrics["compute"] = compute_record(cfg.hardware, total, metrics["world_size"])
    if writer:
        record_run(cfg, rd, metrics, prepared["report"], wb)
    if wb is not None:
        wb.finish()  # the HF callback never does; a multirun needs one run per job
    return metrics


def torch_threads(cfg) -> None:
    """A parallel or SLURM sweep gives each job its share of the cores, never all of them."""
    import torch

    threads = cfg.hardware.threads or int(
        os.environ.get("OMP_NUM_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK") or 0
    )
    if threads:
        torch.set_num_threads(threads)


def prepare_data(cfg, resolved: dict, rd: RunDir, args, base: str, writer: bool) -> tuple[dict, str | None]:
    """Rank 0 prepares, audits, hashes and writes the run's records first; the other ranks then read the
    same rows (one writer: no two ranks race on a file). Returns (prepared data, base fingerprint)."""
    from notus_lab.models.loading import fingerprint_base

    with args.main_process_first(local=False, desc="rank 0 writes the run's records"):
        prepared = prepare(cfg.data, eval_sets=eval_data_configs(cfg), audit_rows=writer)
        base_fingerprint = None
        if writer:
            rd.config.write_text(redact(OmegaConf.to_yaml(cfg, resolve=True)))
            write_json(rd.data_report, prepared["report"])
            base_fingerprint = fingerprint_base(base, cfg.base.revision)  # reads every weight file once
            write_json(
                rd.provenance,
                provenance(fingerprint_rows(prepared["rows"]), base_fingerprint, science_fingerprint(resolved)),
            )
            log.info("rank %d wrote config.yaml, data_report.json, provenance.json", args.process_index)
    if not prepared["train_pairs"]:
        raise invalid(
            "data.source",
            cfg.data.source,
            "a source with pairs under this strategy",
            why=f"no training pairs survived (dropped: {prepared['report']['rows_dropped']})",
        )
    return prepared, base_fingerprint


def load_models(cfg, args, base: str, base_fingerprint: str | None, prepared: dict) -> Built:
    """The tokenizer, policy, reference and peft config, and the preference datasets: cached under a content
    key with their reference log-probs when train.precompute_reference (arms that share pairs share them)."""
    from transformers import set_seed

    from notus_lab.models import loading

    set_seed(cfg.train.seed)
    tokenizer = loading.load_tokenizer(cfg, base)
    policy, reference, peft_config = loading.load_models(cfg, base)
    tr = cfg.train
    if tr.precompute_reference:  # keyed by everything the log-probs depend on
        from importlib.metadata import version

        from accelerate.utils import broadcast_object_list

        if args.world_size > 1:
            base_fingerprint = broadcast_object_list([base_fingerprint])[0]
        depends = dict(
            base=base_fingerprint,
            precision=cfg.hardware.precision,
            attention=loading.attention(cfg.hardware),
            quantization=cfg.model.quantization,
            trl=version("trl"),
        )
        cache = tr.reference_cache_dir or cache_root(cfg.base) / "datasets"
        as_dataset = lambda pairs: cached_preference_dataset(  # noqa: E731
            pairs, tokenizer, tr.max_prompt_length, tr.max_length, cache, **depends
        )
    else:
        as_dataset = lambda pairs: to_preference_dataset(pairs, tokenizer, tr.max_prompt_length, tr.max_length)  # noqa: E731
    return Built(
        tokenizer,
        policy,
        reference,
        peft_config,
        train_ds=as_dataset(prepared["train_pairs"]),
        eval_ds={name: as_dataset(pairs) for name, pairs in prepared["eval_pairs"].items() if pairs},
        parameter_share_at_load=local_parameter_share(policy),  # ~1/N when ZeRO-3 partitioned the load
        policy_weights_dtype=str(next(p.dtype for p in policy.parameters() if p.is_floating_point())).replace(
            "torch.", ""
        ),
    )


def build_trainer(cfg, rd: RunDir, args, built: Built, wb):
    """TRL's DPOTrainer (its subclass only keys precomputed reference log-probs by content), with the stop
    signal handler and the check of the optimizer that really steps."""
    args.report_to = ["wandb"] if wb else []
    if not built.eval_ds:
        args.eval_strategy = "no"  # periodic evaluation needs held-out sets
    stop, optimizer_built = stop_on_signal_callback(), {}
    trainer = dpo_trainer_class()(
        model=built.policy,
        ref_model=built.reference,
        args=args,
        train_dataset=built.train_ds,
        eval_dataset=built.eval_ds if args.eval_strategy != "no" else None,
        processing_class=built.tokenizer,
        peft_config=built.peft_config,
        callbacks=[stop, optimizer_check_callback(cfg.optimizer.name, optimizer_built)],
    )
    return trainer, stop, optimizer_built


def train_until_done_or_stopped(cfg, rd: RunDir, trainer, stop, wb):
    """Train (resuming from the newest complete checkpoint); on a stop signal, end with a checkpoint and
    raise Interrupted, after the signal's previous handler ran (submitit's: requeue this arm)."""
    resume_from = latest_checkpoint(rd.checkpoints) if cfg.train.resume else None
    if resume_from:
        log.info("resuming from %s", resume_from)
    stop.install()
    try:
        train_out = trainer.train(resume_from_checkpoint=resume_from)
    finally:
        stop.restore()
    if stop.received is not None:
        if wb is not None:
            wb.finish(exit_code=1)
        step = trainer.state.global_step
        pass_on(stop.previous.get(stop.received), stop.received)
        raise Interrupted(
            f"stopped by {signal.Signals(stop.received).name} at step {step}; checkpoint saved in "
            f"{rd.checkpoints}; run the same command again to resume"
        )
    return train_out


def evaluate(cfg, trainer, train_out, engine: str, optimizer_built: dict, built: Built) -> dict:
    """The held-out sets under every signal (and the truth where the world knows it) on the final weights,
    with what the run checks about itself."""
    if built.eval_ds and not evaluated_at_the_last_step(trainer, built.eval_ds):
        trainer.evaluate(eval_dataset=built.eval_ds)
    metrics = summarize(trainer.state.log_history, train_out.metrics, list(built.eval_ds))
    return {**metrics, **what_ran(cfg, trainer, engine, optimizer_built, built)}


def evaluated_at_the_last_step(trainer, eval_ds: dict) -> bool:
    """Whether periodic evaluation (train.eval_steps) already scored every held-out set on the final weights:
    the same model on the same sets gives the same numbers, so evaluating again would only cost time."""
    step = trainer.state.global_step
    done = {k for h in trainer.state.log_history if h.get("step") == step for k in h}
    return all(f"eval_{name}_loss" in done for name in eval_ds)


def what_ran(cfg, trainer, engine: str, optimizer_built: dict, built: Built) -> dict:
    """What the run checks about itself once built: what ran, not what was asked for."""
    import torch

    return {
        "global_batch_size": cfg.train.global_batch_size,
        "world_size": trainer.args.world_size,
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
        "torch_threads": torch.get_num_threads(),
        "engine": engine,
        "optimizer": optimizer_built,  # the class that really stepped, with its settings
        "attention": getattr(trainer.model.config, "_attn_implementation", None),
        "memory_gb": memory_record(cfg),
        "precision": precision_record(cfg.hardware, built.policy_weights_dtype),
        "rank0_parameter_share": local_parameter_share(trainer.model),  # 1/world_size when really sharded
        "rank0_parameter_share_at_load": built.parameter_share_at_load,
        **({"reference_log_probs": trainer.reference_log_probs} if trainer.reference_log_probs else {}),
    }


def save_model(cfg, rd: RunDir, trainer, tokenizer, writer: bool, clock: StageClock) -> None:
    """Every rank joins save_model (ZeRO-3 / FSDP gather the sharded weights); rank 0 writes the tokenizer
    and, with export.merge, the merged model (from the saved adapter: under ZeRO-3 the live weights are shards)."""
    trainer.save_model(str(rd.model))
    if not writer:
        return
    tokenizer.save_pretrained(str(rd.model))
    if cfg.export.merge:
        from peft import AutoPeftModelForCausalLM

        merged = AutoPeftModelForCausalLM.from_pretrained(str(rd.model), use_safetensors=True)
        merged.merge_and_unload().save_pretrained(str(rd.merged))
        tokenizer.save_pretrained(str(rd.merged))
    clock.lap("save")


def judge_generations(
    cfg, rd: RunDir, base: str, base_fingerprint: str | None, prepared: dict, metrics: dict, wb
) -> None:
    """The policy and its reference answer the held-out prompts (the reference's answers shared by every arm
    on the same base); the judge compares them."""

    metrics["generation"], records = judged_generations(
        cfg, rd.model, base, prepared["held_out_prompts"], prepared["eval_pairs"].get("truth"), base_fingerprint
    )
    write_jsonl(rd.generations, records)
    if wb is not None:
        log_generations(wb, records)


def record_run(cfg, rd: RunDir, metrics: dict, report: dict, wb) -> None:
    """The model card, then metrics.json last (its presence means "finished"), and the W&B summary."""
    rd.card.write_text(redact(model_card(cfg, metrics, report)))
    write_json(rd.metrics, metrics)
    if wb is not None:
        wb.summary.update({k: v for k, v in flatten(metrics).items() if isinstance(v, (int, float))})
