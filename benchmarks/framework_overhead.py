"""notus_lab's training step vs a bare TRL script: same model, pairs, batch and settings, one process.

    python benchmarks/framework_overhead.py [--steps 40] [--repeats 4]

Arms alternate, each going first in turn, after an untimed warm-up training (the first training in a
process runs slower), so drift on a shared machine and warm-up hit both.
Throughput = DPO tokens (chosen + rejected, as TRL counts them) / the Trainer's train_runtime.
Target: notus_lab / bare >= 0.97.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from notus_lab.config.options import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def notus_lab_arm(cfg, out: Path) -> float:
    from notus_lab.train.pipeline import run

    m = run(cfg, out)
    return m["train"]["num_tokens"] / m["train"]["runtime_s"]


def bare_trl_arm(cfg, out: Path) -> float:
    """What a researcher would write by hand against TRL: no notus_lab code in the timed part."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer

    from notus_lab.config.options import eval_data_configs
    from notus_lab.data.preference_dataset import to_preference_dataset
    from notus_lab.data.prepare import prepare
    from notus_lab.models.loading import base_path

    pairs = prepare(cfg.data, eval_sets=eval_data_configs(cfg))["train_pairs"]  # same pairs as the other arm
    path = base_path(cfg.base)
    set_seed(cfg.train.seed)
    tokenizer = AutoTokenizer.from_pretrained(path)
    dataset = to_preference_dataset(pairs, tokenizer, cfg.train.max_prompt_length, cfg.train.max_length)
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()
    args = DPOConfig(
        output_dir=str(out),
        report_to=[],
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        max_length=cfg.train.max_length,
        max_steps=cfg.train.max_steps,
        optim=cfg.optimizer.name,
        learning_rate=cfg.optimizer.lr,
        lr_scheduler_type=cfg.optimizer.scheduler,
        warmup_steps=cfg.optimizer.warmup_ratio,
        seed=cfg.train.seed,
        data_seed=cfg.train.seed,
        per_device_train_batch_size=cfg.hardware.per_device_batch_size,
        gradient_accumulation_steps=cfg.train.global_batch_size // cfg.hardware.per_device_batch_size,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=cfg.train.logging_steps,
        save_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=policy, ref_model=reference, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    out_metrics = trainer.train().metrics
    tokens = max(h.get("num_tokens", 0) for h in trainer.state.log_history)
    return tokens / out_metrics["train_runtime"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=4)
    args = p.parse_args()
    import torch

    torch.set_num_threads(torch.get_num_threads())
    cfg = compose(
        f"train.max_steps={args.steps}",
        "train.save_steps=100000",
        "wandb.mode=disabled",
        "eval.signals=[]",
        "train.logging_steps=10",
    )
    results = {"notus_lab": [], "bare TRL": []}
    arms = {"notus_lab": notus_lab_arm, "bare TRL": bare_trl_arm}
    with tempfile.TemporaryDirectory() as tmp:
        # the first training in a process runs slower (allocator and kernel warm-up): pay it untimed
        bare_trl_arm(compose("train.max_steps=5", "wandb.mode=disabled", "eval.signals=[]"), Path(tmp) / "warm-up")
        for r in range(args.repeats):
            for name in list(arms) if r % 2 == 0 else list(arms)[::-1]:  # each arm goes first in turn
                results[name].append(arms[name](cfg, Path(tmp) / f"{name.replace(' ', '_')}{r}"))
            print(
                f"repeat {r}: notus_lab {results['notus_lab'][-1]:.0f} tok/s, "
                f"bare TRL {results['bare TRL'][-1]:.0f} tok/s",
                flush=True,
            )
    ours, bare = statistics.median(results["notus_lab"]), statistics.median(results["bare TRL"])
    print(f"\n| arm | tokens/s (median of {args.repeats}) |\n|---|---|")
    print(f"| notus_lab (python -m notus_lab path) | {ours:.0f} |\n| bare TRL DPOTrainer script | {bare:.0f} |")
    print(
        f"\nratio notus_lab / bare TRL = {ours / bare:.3f} (target >= 0.97) on {args.steps} steps of "
        f"{cfg.train.global_batch_size} pairs, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
