"""DPO throughput, peak memory and MFU for real model shapes (random init), full / LoRA / QLoRA.

    python benchmarks/dpo_mfu.py                       # CPU: a ~50M-parameter Mistral shape
    python benchmarks/dpo_mfu.py --shape mistral-7b    # on a GPU: Mistral-7B's shape at 1024 tokens

MFU = model FLOPs per second / the peak measured in this same run by a large matmul on the same device
(so it is honest on whatever machine runs it). Model FLOPs per trained token (N parameters, l layers,
h hidden, s sequence; attention counted as in PaLM's appendix B):
  policy full   6N + 12 l h s      (forward + backward of activations and weights)
  policy LoRA   4N +  8 l h s      (frozen base: backward of activations only; adapter FLOPs ignored)
  reference     2N +  4 l h s      (forward only; zero when log-probs are precomputed)
Each token of a pair is counted (chosen and rejected are both forwarded), padding is not.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notus_lab.study.cost import NOTUS_PAIRS as NOTUS_EPOCH_PAIRS  # noqa: E402  Notus v1's pairs, for the projection

SHAPES = {  # hidden, layers, heads, kv heads, intermediate, vocab
    "mistral-7b": (4096, 32, 32, 8, 14336, 32000),
    "cpu-50m": (512, 8, 8, 4, 1536, 32000),
    "tiny": (64, 2, 4, 2, 128, 1024),
}


def measured_peak_flops(device: str, dtype) -> float:
    import torch

    n = 8192 if device == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps, t = (20 if device == "cuda" else 4), time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def build(shape: str, mode: str, device: str, dtype):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, MistralConfig

    hidden, layers, heads, kv, inter, vocab = SHAPES[shape]
    config = MistralConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        vocab_size=vocab,
        max_position_embeddings=4096,
        attn_implementation="sdpa",
        dtype=dtype,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # of the full-precision shape, before any quantization; the input embedding is a lookup, not FLOPs
    n_params = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    if mode == "qlora":  # bitsandbytes quantizes on load: save the random weights, reload them as 4-bit nf4
        import tempfile

        tmp = tempfile.mkdtemp()
        model.save_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(
            tmp,
            dtype=dtype,
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            ),
            device_map={"": 0} if device == "cuda" else None,
        )
    elif device == "cuda":
        model = model.to(device)
    return model, config, n_params


def model_flops(n_params: float, layers: int, hidden: int, seq: float, mode: str, precompute: bool) -> float:
    """Model FLOPs per trained token: notus_lab.study.cost's formula, the one the report's projections use."""
    from notus_lab.study.cost import dpo_flops_per_token

    return dpo_flops_per_token(n_params, "full" if mode == "full" else "lora", not precompute, layers, hidden, seq)


def dataset(pairs: int, length: int):
    """Text pairs of about `length` tokens (prompt half, completion half) in the tiny tokenizer's words;
    the exact token counts are read back from TRL's tokenized dataset."""
    import random

    import datasets

    from notus_lab.data.world import vocabulary_text

    words, rng, half = sorted(set(vocabulary_text().split())), random.Random(0), length // 2
    text = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    return datasets.Dataset.from_dict(
        {
            "prompt": [text(half) for _ in range(pairs)],
            "chosen": [text(half) for _ in range(pairs)],
            "rejected": [text(half) for _ in range(pairs)],
        }
    )


def pad_tokenizer():
    """The data is already token ids; TRL only needs a tokenizer for its pad id (notus_lab's tiny one)."""
    from transformers import AutoTokenizer

    from notus_lab.config.options import base_option
    from notus_lab.models.loading import base_path

    return AutoTokenizer.from_pretrained(base_path(base_option()))


def one(shape: str, mode: str, precompute: bool, device: str, length: int, batch: int, steps: int, peak: float) -> dict:
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model, config, n_params = build(shape, mode, device, dtype)
    reference = build(shape, "full", device, dtype)[0].eval() if mode == "full" else None
    peft = (
        LoraConfig(
            r=64,
            lora_alpha=16,
            lora_dropout=0.0,
            task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        )
        if mode != "full"
        else None
    )

    class Clock(TrainerCallback):
        marks: list = []

        def on_step_end(self, args, state, control, **kw):
            sync(device)
            self.marks.append(time.perf_counter())

    clock = Clock()
    clock.marks = []
    warmup = 2
    data = dataset(batch * (steps + warmup), length)
    args = DPOConfig(
        output_dir="/tmp/notus_mfu",
        report_to=[],
        max_steps=steps + warmup,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        learning_rate=1e-6,
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        gradient_checkpointing=device == "cuda",
        max_length=2 * length,
        precompute_ref_log_probs=precompute,
        save_strategy="no",
        logging_steps=1000,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = DPOTrainer(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=data,
        peft_config=peft,
        processing_class=pad_tokenizer(),
        callbacks=[clock],
    )
    trainer.train()
    seconds = clock.marks[-1] - clock.marks[warmup - 1]
    tokenized = trainer.train_dataset
    per_pair = sum(
        2 * len(p) + len(c) + len(r)
        for p, c, r in zip(tokenized["prompt_ids"], tokenized["chosen_ids"], tokenized["rejected_ids"])
    ) / len(tokenized)
    tokens = steps * batch * per_pair  # prompt + completion, for the chosen and the rejected forward
    seq = per_pair / 2  # tokens of one forward sequence (prompt + one completion)
    flops = tokens * model_flops(n_params, config.num_hidden_layers, config.hidden_size, seq, mode, precompute)
    peak_mem = (
        torch.cuda.max_memory_allocated() / 2**30
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )  # KiB -> GiB: this process's peak RSS
    return {
        "mode": mode,
        "precompute_ref": precompute,
        "params": n_params,
        "tokens_per_s": tokens / seconds,
        "mfu": flops / seconds / peak,
        "peak_mem_gib": peak_mem,
        "step_s": seconds / steps,
    }


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default=None, help="default: mistral-7b on CUDA, cpu-50m on CPU")
    p.add_argument("--length", type=int, default=None, help="tokens per sequence (default 1024 on CUDA, 256 on CPU)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--modes", default="full,lora,qlora")
    p.add_argument("--single", help=argparse.SUPPRESS)
    p.add_argument("--peak", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = args.shape or ("mistral-7b" if device == "cuda" else "cpu-50m")
    length = args.length or (1024 if device == "cuda" else 256)
    batch = args.batch or (4 if device == "cuda" else 2)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    peak = args.peak or measured_peak_flops(device, dtype)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    if not args.single:
        print(
            f"device: {name}; measured matmul peak {peak / 1e12:.2f} TFLOP/s ({dtype}); shape {shape}; "
            f"{length} tokens x batch {batch}; {args.steps} timed steps after 2 warm-up"
        )
    try:
        import liger_kernel  # noqa: F401

        liger = "installed (not timed here)"
    except ImportError:
        liger = "not installed"
    if args.single:  # one configuration in its own process, so its peak memory is its own
        mode, precompute = args.single.split(":")
        print("RESULT " + json.dumps(one(shape, mode, precompute == "1", device, length, batch, args.steps, args.peak)))
        return
    rows = []
    for mode in args.modes.split(","):
        for precompute in (False, True):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--shape",
                    shape,
                    "--length",
                    str(length),
                    "--batch",
                    str(batch),
                    "--steps",
                    str(args.steps),
                    "--single",
                    f"{mode}:{int(precompute)}",
                    "--peak",
                    str(peak),
                ],
                capture_output=True,
                text=True,
            )
            found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not found:
                print(f"  {mode} precompute_ref={precompute}: failed\n{proc.stderr[-2000:]}")
                continue
            rows.append(json.loads(found[0][len("RESULT ") :]))
            r = rows[-1]
            print(
                f"  {mode:5s} precompute_ref={precompute!s:5s} {r['tokens_per_s']:9.0f} tok/s  MFU {r['mfu']:.1%}  "
                f"peak {r['peak_mem_gib']:.2f} GiB",
                flush=True,
            )
    print(
        "\n| mode | precomputed ref log-probs | params (no input embedding) | tokens/s | step (s) | MFU "
        "| peak memory (GiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {'yes' if r['precompute_ref'] else 'no'} | {r['params'] / 1e6:.1f} M | "
            f"{r['tokens_per_s']:.0f} | {r['step_s']:.2f} | {r['mfu']:.1%} | {r['peak_mem_gib']:.2f} |"
        )
    print(f"\nLiger kernels: {liger}. Padding-free: a no-op in TRL 1.16 (not measured).")
    notus_like = next((r for r in rows if r["mode"] == "full" and not r["precompute_ref"]), None)
    if notus_like is None:
        return
    from notus_lab.study.cost import projected_arm_gpu_hours

    # the report's own projection (python -m notus_lab.report --target-effect), at this run's MFU
    hours = projected_arm_gpu_hours(7.24e9, 8, 312, epochs=1, mfu=notus_like["mfu"]) / 8
    print(
        f"Projection: one Notus epoch ({NOTUS_EPOCH_PAIRS} pairs of <= 1024 tokens, full DPO with its reference "
        f"model) on 8 x A100 (312 TFLOP/s bf16 each) at this run's full-DPO MFU ({notus_like['mfu']:.1%}): "
        f"{hours:.1f} h. Only meaningful when this ran on that kind of GPU; Notus v1 took ~4 h per epoch."
    )


if __name__ == "__main__":
    main()
