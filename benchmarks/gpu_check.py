"""The GPU paths in one command: a Mistral-7B-shaped model (random init, bf16, built here: no hub), then a few
steps of full DPO with a reference, LoRA and QLoRA at 1024 tokens through notus_lab's own loaders, trainer
arguments and runtime checks, one batch of generation with AlpacaEval's decoding, and the attention that ran.

    python benchmarks/gpu_check.py                  # on a GPU machine: ~5 minutes on one H100/H200
    python benchmarks/gpu_check.py --dry-run        # on CPU: the same code on a small shape (the suite runs it)

Writes <out>/gpu_check.json and <out>/gpu_check.md (a table for benchmarks/README.md). Per mode: tokens/s,
MFU against the device's bf16 peak (its spec sheet's dense number; the matmul peak measured in this run
beside it), peak memory beside the memory preflight's estimate for the same run, the attention
implementation, precision and optimizer class the run recorded about itself. Full DPO of 7B with fp32
master weights does not fit one GPU: the full mode keeps the largest number of the shape's layers whose
preflight estimate fits 80 % of the device (the table says how many). Each mode runs in its own process,
so its peak memory is its own and an out-of-memory error costs that row only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dpo_mfu import SHAPES, dataset, measured_peak_flops, model_flops  # noqa: E402

BF16_PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "A10": 125, "L4": 121}  # dense, per GPU
MODES = ("full", "lora", "qlora")
WARMUP = 2


def spec_peak(device_name: str) -> float | None:
    return next((v * 1e12 for k, v in BF16_PEAK_TFLOPS.items() if k in device_name), None)


def shape_of(name: str, layers: int | None = None) -> dict:
    hidden, n_layers, heads, kv, inter, vocab = SHAPES[name]
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers or n_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "intermediate_size": inter,
        "vocab_size": vocab,
    }


def build_model_dir(shape: dict, out: Path, device: str) -> Path:
    """A random-init Mistral of `shape` saved as bf16 safetensors, with the tiny base's tokenizer (no hub)."""
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig

    from notus_lab.models.tiny_base import build_tokenizer

    if (out / "model.safetensors.index.json").exists() or (out / "model.safetensors").exists():
        return out
    torch.manual_seed(0)
    config = MistralConfig(**shape, max_position_embeddings=4096, dtype=torch.bfloat16)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    build_tokenizer(1024).save_pretrained(out)
    del model
    return out


def check_config(model_dir: Path, shape: dict, mode: str, length: int, batch: int, dry_run: bool, gpu_gb: float | None):
    """The config a notus_lab run of this mode would compose, on this model, at this length."""
    from hydra import compose, initialize_config_dir

    from notus_lab.config.options import CONF_DIR

    n_params = estimate_params(shape)
    overrides = [
        f"model={mode}",
        f"base.name={model_dir}",
        "hardware=cpu" if dry_run else "hardware=gpu",
        f"train.max_length={length}",
        f"train.max_prompt_length={length // 2}",
        f"hardware.per_device_batch_size={batch}",
        f"train.global_batch_size={batch}",
        f"base.shape.num_parameters={n_params}",
        "wandb.mode=disabled",
        "judge=none",
    ]
    overrides += [f"base.shape.{k}={v}" for k, v in shape.items()]
    if gpu_gb:
        overrides.append(f"hardware.gpu_memory_gb={gpu_gb:.0f}")
    if dry_run and mode == "qlora":
        overrides.append("hardware.precision=fp32")  # bitsandbytes' CPU path computes in fp32
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def estimate_params(shape: dict) -> float:
    """Parameters of a Mistral of this shape (untied embeddings), without building it."""
    h, i, layers, v = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"], shape["vocab_size"]
    kv = h * shape["num_key_value_heads"] // shape["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return float(layers * per_layer + 2 * v * h + h)


def full_mode_layers(name: str, length: int, batch: int, dry_run: bool, gpu_gb: float | None) -> int:
    """The most layers of the shape whose full-DPO preflight estimate fits 80 % of the GPU."""
    from notus_lab.config import memory

    layers = shape_of(name)["num_hidden_layers"]
    if dry_run or not gpu_gb:
        return layers
    for n in range(layers, 0, -4):
        cfg = check_config(Path("/nonexistent"), shape_of(name, n), "full", length, batch, dry_run, gpu_gb)
        if memory.estimate(cfg)["total"] <= 0.8 * gpu_gb:
            return n
    return 1


def train_mode(
    model_dir: Path,
    shape: dict,
    mode: str,
    length: int,
    batch: int,
    steps: int,
    dry_run: bool,
    gpu_gb: float | None,
    peaks: dict,
) -> dict:
    """A few DPO steps of one mode, timed after a warm-up, with what the run records about itself."""
    import torch
    from transformers import TrainerCallback

    from notus_lab.config import memory
    from notus_lab.models.loading import load_models, load_tokenizer
    from notus_lab.train.runtime_checks import optimizer_check_callback, precision_record
    from notus_lab.train.trainer import dpo_config, dpo_trainer_class

    cfg = check_config(model_dir, shape, mode, length, batch, dry_run, gpu_gb)
    device = "cpu" if dry_run else "cuda"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tokenizer = load_tokenizer(cfg, str(model_dir))
    policy, reference, peft = load_models(cfg, str(model_dir))
    weights = str(next(p.dtype for p in policy.parameters() if p.is_floating_point())).replace("torch.", "")
    marks, optimizer = [], {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    args = dpo_config(cfg, Path(tempfile.mkdtemp(prefix="gpu_check-")), [])
    args.max_steps, args.save_strategy, args.logging_steps, args.disable_tqdm = steps + WARMUP, "no", 10**6, True
    trainer = dpo_trainer_class()(
        model=policy,
        ref_model=reference,
        args=args,
        train_dataset=dataset(batch * (steps + WARMUP), length),
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=[Clock(), optimizer_check_callback(cfg.optimizer.name, optimizer)],
    )
    trainer.train()
    seconds = marks[-1] - marks[WARMUP - 1]
    tokenized = trainer.train_dataset
    per_pair = sum(
        2 * len(p) + len(c) + len(r)
        for p, c, r in zip(tokenized["prompt_ids"], tokenized["chosen_ids"], tokenized["rejected_ids"])
    ) / len(tokenized)
    tokens = steps * batch * per_pair
    flops = tokens * model_flops(
        estimate_params(shape) - shape["vocab_size"] * shape["hidden_size"],
        shape["num_hidden_layers"],
        shape["hidden_size"],
        per_pair / 2,
        mode,
        precompute=False,
    )
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {
        "mode": mode,
        "layers": shape["num_hidden_layers"],
        "tokens_per_s": round(tokens / seconds, 1),
        "step_s": round(seconds / steps, 3),
        "mfu": round(flops / seconds / peaks["spec"], 4) if peaks["spec"] else None,
        "mfu_vs_measured_matmul": round(flops / seconds / peaks["measured"], 4),
        "peak_memory_gib": round(peak_mem, 1) if peak_mem is not None else None,
        "preflight_estimate_gb": memory.estimate(cfg)["total"],
        "attention": getattr(trainer.model.config, "_attn_implementation", None),
        "precision": precision_record(cfg.hardware, weights),
        "optimizer": optimizer.get("class"),
    }


def generate_batch(model_dir: Path, shape: dict, batch: int, dry_run: bool, gpu_gb: float | None) -> dict:
    """One batch of answers with AlpacaEval's published decoding (2048 new tokens, sampled)."""
    from omegaconf import OmegaConf

    from notus_lab.judging.benchmarks import ALPACA_EVAL
    from notus_lab.judging.generation import complete
    from notus_lab.models.loading import load_causal_lm, load_tokenizer

    cfg = check_config(model_dir, shape, "full", 1024, batch, dry_run, gpu_gb)
    device = "cpu" if dry_run else "cuda"
    tokenizer = load_tokenizer(cfg, str(model_dir))
    tokenizer.padding_side = "left"
    model = load_causal_lm(cfg, str(model_dir), quantized=False).to(device).eval()
    decoding = {**ALPACA_EVAL, "max_new_tokens": 16 if dry_run else ALPACA_EVAL["max_new_tokens"]}
    g = OmegaConf.create({**decoding, "samples_per_prompt": 1, "batch_size": batch, "seed": 0})
    prompts = dataset(batch, 64)["prompt"]
    t = time.perf_counter()
    answers = complete(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts], g)
    seconds = time.perf_counter() - t
    new_tokens = sum(len(tokenizer(a[0], add_special_tokens=False)["input_ids"]) for a in answers)
    return {
        "batch": batch,
        "decoding": decoding,
        "seconds": round(seconds, 2),
        "new_tokens": new_tokens,
        "tokens_per_s": round(new_tokens / seconds, 1),
        "attention": model.config._attn_implementation,
        "dtype": str(model.dtype).replace("torch.", ""),
    }


def child(args) -> None:
    """One mode (or the generation batch) in this process: prints RESULT <json>."""
    shape = json.loads(args.shape_json)
    peaks = json.loads(args.peaks)
    if args.single == "generate":
        result = generate_batch(Path(args.model_dir), shape, args.gen_batch, args.dry_run, args.gpu_gb)
    else:
        result = train_mode(
            Path(args.model_dir),
            shape,
            args.single,
            args.length,
            args.batch,
            args.steps,
            args.dry_run,
            args.gpu_gb,
            peaks,
        )
    print("RESULT " + json.dumps(result))


def run_child(args, single: str, model_dir: Path, shape: dict, peaks: dict) -> dict:
    cmd = (
        [
            sys.executable,
            __file__,
            "--single",
            single,
            "--model-dir",
            str(model_dir),
            "--shape-json",
            json.dumps(shape),
            "--peaks",
            json.dumps(peaks),
            "--length",
            str(args.length),
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--gen-batch",
            str(args.gen_batch),
        ]
        + (["--dry-run"] if args.dry_run else [])
        + (["--gpu-gb", str(args.gpu_gb)] if args.gpu_gb else [])
    )
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not found:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return {"mode": single, "error": tail}
    return json.loads(found[0][len("RESULT ") :])


def markdown(report: dict) -> str:
    lines = [
        f"GPU check on {report['device']} ({report['when']}): shape {report['shape_name']}, {report['length']} "
        f"tokens x batch {report['batch']}, {report['steps']} timed steps after {WARMUP} warm-up; bf16 peak "
        f"{report['spec_peak_tflops']} TFLOP/s (spec), {report['measured_peak_tflops']:.2f} measured by a matmul.",
        "",
        "| mode | layers | tokens/s | step (s) | MFU (spec peak) | peak memory (GiB) | preflight estimate (GB) | "
        "attention | weights | optimizer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["modes"]:
        if "error" in r:
            lines.append(f"| {r['mode']} | failed: {r['error']} |||||||||")
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(
            f"| {r['mode']} | {r['layers']} | {r['tokens_per_s']:.0f} | {r['step_s']:.2f} | {mfu} | "
            f"{'n/a (CPU)' if r['peak_memory_gib'] is None else r['peak_memory_gib']} | "
            f"{r['preflight_estimate_gb']} | {r['attention']} | "
            f"{r['precision']['policy_weights']} | {r['optimizer']} |"
        )
    g = report["generation"]
    lines += [
        "",
        (
            f"Generation (AlpacaEval decoding, {g['decoding']['max_new_tokens']} new tokens, batch {g['batch']}): "
            f"{g['tokens_per_s']:.0f} new tokens/s, attention {g['attention']}, {g['dtype']}."
        )
        if "error" not in g
        else f"Generation failed: {g['error']}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, a small shape: the same code, no GPU needed")
    p.add_argument("--out", type=Path, default=Path("benchmarks/gpu_check"))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--length", type=int, default=None, help="tokens per sequence (1024; 64 with --dry-run)")
    p.add_argument("--batch", type=int, default=None, help="pairs per step (2; 1 with --dry-run)")
    p.add_argument("--gen-batch", type=int, default=8)
    p.add_argument("--modes", default=",".join(MODES))
    for hidden in ("--single", "--model-dir", "--shape-json", "--peaks"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--gpu-gb", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.length = args.length or (64 if args.dry_run else 1024)
    args.batch = args.batch or (1 if args.dry_run else 2)
    if args.single:
        return child(args)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        sys.exit(
            "error: --dry-run=false is invalid: allowed a machine with a CUDA GPU, or --dry-run (CPU, small shape)"
        )
    device = "cpu" if args.dry_run else "cuda"
    name = "cpu" if args.dry_run else torch.cuda.get_device_name()
    args.gpu_gb = None if args.dry_run else torch.cuda.get_device_properties(0).total_memory / 2**30
    shape_name = "tiny" if args.dry_run else "mistral-7b"
    peaks = {
        "measured": measured_peak_flops(device, torch.float32 if args.dry_run else torch.bfloat16),
        "spec": None if args.dry_run else spec_peak(name),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check-models-") as tmp:
        shape = shape_of(shape_name)
        model_dir = build_model_dir(shape, Path(tmp) / "full-depth", device)
        modes = []
        for mode in args.modes.split(","):
            if mode == "full":
                layers = full_mode_layers(shape_name, args.length, args.batch, args.dry_run, args.gpu_gb)
                mode_shape = shape_of(shape_name, layers)
                mode_dir = (
                    model_dir
                    if layers == shape["num_hidden_layers"]
                    else build_model_dir(mode_shape, Path(tmp) / f"layers-{layers}", device)
                )
            else:
                mode_shape, mode_dir = shape, model_dir
            modes.append(run_child(args, mode, mode_dir, mode_shape, peaks))
            print(json.dumps(modes[-1]), flush=True)
        generation = run_child(args, "generate", model_dir, shape, peaks)
    report = {
        "device": name,
        "when": time.strftime("%Y-%m-%d"),
        "shape_name": shape_name,
        "length": args.length,
        "batch": args.batch,
        "steps": args.steps,
        "spec_peak_tflops": (peaks["spec"] or 0) / 1e12 or None,
        "measured_peak_tflops": peaks["measured"] / 1e12,
        "modes": modes,
        "generation": generation,
    }
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
