"""Generation: the trained policy and its reference answer prompts, batched with a KV cache on the run's
device and precision. Used after training for judged generations (evaluate.py), and by the export
command for external judges:

    python -m notus_lab.generate <run dir> [--alpaca-eval alpaca_eval.json] [--mt-bench question.jsonl]

Writes into <run dir>/generations/:
  alpaca_eval.json       [{"instruction", "output", "generator", "dataset"}]  (alpaca_eval --model_outputs)
  model_answer/<model_id>.jsonl {"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [...]}],
                          "tstamp"}  (FastChat's data/mt_bench/model_answer/: FastChat names the model by the file)
Without prompt files, the run's own held-out prompts are used for both (single-turn), so a bundled-world
run can be exported offline. MT-Bench questions are multi-turn: each turn sees the model's earlier answers.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from notus_lab.console import refuse
from notus_lab.tracking import write_json


def device_for(cfg) -> str:
    """The run's device: its own GPU under a multi-process launch, the CPU otherwise."""
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cfg.hardware.device == "cuda" else "cpu"


def load_policy(cfg, model_dir: Path, base: str):
    """(policy, tokenizer) as trained, on the run's device and precision: the full model, or the base
    (quantized as in training) with the LoRA adapter on top."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from notus_lab.model import attention, load_causal_lm, torch_dtype

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"  # decoder-only batches are padded on the left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = device_for(cfg)
    if (model_dir / "adapter_config.json").exists():
        from peft import PeftModel

        quantized = cfg.model.quantization != "none"
        base_model = load_causal_lm(cfg, base, quantized)
        if not quantized:
            base_model = base_model.to(device)
        policy = PeftModel.from_pretrained(base_model, str(model_dir))
    else:
        policy = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch_dtype(cfg.hardware.precision), attn_implementation=attention(cfg.hardware),
            use_safetensors=True).to(device)
    return policy.eval(), tokenizer


@contextmanager
def reference_of(cfg, policy, base: str):
    """The policy's DPO reference: the same model with its adapter off (LoRA), or the SFT base (full)."""
    if hasattr(policy, "disable_adapter"):
        with policy.disable_adapter():
            yield policy
        return
    from notus_lab.model import load_causal_lm

    reference = load_causal_lm(cfg, base, quantized=False).to(policy.device).eval()
    try:
        yield reference
    finally:
        del reference


def complete(model, tokenizer, conversations: list[list[dict]], g) -> list[list[str]]:
    """`g.samples_per_prompt` answers (one when greedy) per chat conversation, in the Zephyr template with
    an empty system turn. Batched, KV-cached; each batch's sampling seed is fixed, so a policy and its
    reference draw with the same random numbers."""
    import torch

    n = g.samples_per_prompt if g.do_sample else 1
    sampling = dict(do_sample=True, temperature=g.temperature, top_p=g.top_p) if g.do_sample else dict(do_sample=False)
    out = []
    for b, i in enumerate(range(0, len(conversations), g.batch_size)):
        texts = [tokenizer.apply_chat_template([{"role": "system", "content": ""}] + c, tokenize=False,
                                               add_generation_prompt=True) for c in conversations[i:i + g.batch_size]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        torch.manual_seed(g.seed + b)
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=g.max_new_tokens, num_return_sequences=n, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id, **sampling)
        answers = [t.strip() for t in tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
        out += [answers[k:k + n] for k in range(0, len(answers), n)]
    return out


def answer_prompts(cfg, model_dir: Path, base: str, prompts: list[str]) -> tuple[list[list[str]], list[list[str]], object]:
    """(policy answers, reference answers, tokenizer) for single-turn prompts, same decoding for both."""
    policy, tokenizer = load_policy(cfg, model_dir, base)
    chats = [[{"role": "user", "content": p}] for p in prompts]
    policy_answers = complete(policy, tokenizer, chats, cfg.generation)
    with reference_of(cfg, policy, base) as reference:
        reference_answers = complete(reference, tokenizer, chats, cfg.generation)
    return policy_answers, reference_answers, tokenizer


# ---------------------------------------------------------------------------------------------
# Export for external judges


def run_config(run_dir: Path):
    from omegaconf import OmegaConf

    from notus_lab.config import NotusConfig

    return OmegaConf.merge(OmegaConf.structured(NotusConfig), OmegaConf.load(run_dir / "config.yaml"))


def held_out_prompts(cfg) -> list[str]:
    """The run's held-out prompts, re-derived from its saved data config (same split, same order)."""
    from notus_lab import data as D

    d = D.as_data_config(cfg.data)
    rows, _ = D.load_rows(d)
    return D.held_out_prompts(rows, D.split_for(rows, d)[1], d)


def export(run_dir: Path, alpaca_file: Path | None, mt_bench_file: Path | None, model_id: str | None,
           max_new_tokens: int, batch_size: int, limit: int | None, device: str | None = None) -> dict:
    from omegaconf import OmegaConf

    from notus_lab.model import base_path

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if device:
        cfg.hardware.device = device
    # one answer per prompt with the run's decoding (AlpacaEval and MT-Bench take one per question)
    cfg.generation = OmegaConf.merge(cfg.generation, {"samples_per_prompt": 1, "max_new_tokens": max_new_tokens,
                                                      "batch_size": batch_size})
    model_id = model_id or run_dir.name
    out_dir = run_dir / "generations"
    out_dir.mkdir(exist_ok=True)
    if alpaca_file:
        alpaca = json.loads(Path(alpaca_file).read_text())
    if mt_bench_file:
        mt = [json.loads(line) for line in Path(mt_bench_file).read_text().splitlines() if line.strip()]
    if not (alpaca_file and mt_bench_file):
        prompts = held_out_prompts(cfg)
        if not alpaca_file:
            alpaca = [{"instruction": p, "dataset": "notus_lab_held_out"} for p in prompts]
        if not mt_bench_file:
            mt = [{"question_id": i + 1, "category": "notus_lab_held_out", "turns": [p]} for i, p in enumerate(prompts)]
    alpaca, mt = alpaca[:limit], mt[:limit]
    model_dir = run_dir / "merged" if (run_dir / "merged").is_dir() else run_dir / "model"
    model, tokenizer = load_policy(cfg, model_dir, base_path(cfg.base))

    outputs = complete(model, tokenizer, [[{"role": "user", "content": a["instruction"]}] for a in alpaca], cfg.generation)
    write_json(out_dir / "alpaca_eval.json", [
        {"instruction": a["instruction"], "output": o[0], "generator": model_id, "dataset": a.get("dataset", "")}
        for a, o in zip(alpaca, outputs)])

    chats = [[] for _ in mt]
    for turn in range(max((len(q["turns"]) for q in mt), default=0)):
        active = [i for i, q in enumerate(mt) if turn < len(q["turns"])]
        for i in active:
            chats[i].append({"role": "user", "content": mt[i]["turns"][turn]})
        for i, answer in zip(active, complete(model, tokenizer, [chats[i] for i in active], cfg.generation)):
            chats[i].append({"role": "assistant", "content": answer[0]})
    (out_dir / "model_answer").mkdir(exist_ok=True)
    with open(out_dir / "model_answer" / f"{model_id}.jsonl", "w") as f:
        for q, chat in zip(mt, chats):
            f.write(json.dumps({"question_id": q["question_id"], "answer_id": uuid.uuid4().hex, "model_id": model_id,
                                "choices": [{"index": 0, "turns": [m["content"] for m in chat if m["role"] == "assistant"]}],
                                "tstamp": time.time()}) + "\n")
    return {"alpaca_eval": len(alpaca), "mt_bench": len(mt), "dir": str(out_dir), "device": str(model.device),
            "dtype": str(next(model.parameters()).dtype)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m notus_lab.generate", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a finished run dir (with model/)")
    p.add_argument("--alpaca-eval", type=Path, help="AlpacaEval prompts: a json list of {instruction, dataset}")
    p.add_argument("--mt-bench", type=Path, help="MT-Bench questions: question.jsonl with question_id and turns")
    p.add_argument("--model-id", help="name the judges will show (default: the run dir's name)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, help="only the first N prompts of each set (quick looks)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: the run's own hardware.device")
    args = p.parse_args(argv)
    problems = [("run_dir", args.run_dir, "a finished run dir containing model/")
                for _ in [0] if not (args.run_dir / "model").is_dir()]
    problems += [(k, v, "an existing file") for k, v in (("--alpaca-eval", args.alpaca_eval), ("--mt-bench", args.mt_bench))
                 if v is not None and not v.is_file()]
    problems += [(k, v, "an integer > 0") for k, v in (("--max-new-tokens", args.max_new_tokens),
                                                      ("--batch-size", args.batch_size), ("--limit", args.limit))
                 if v is not None and v <= 0]
    if not problems and args.device != "cpu" and run_config(args.run_dir).hardware.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            problems.append(("--device", args.device or "cuda (the run's)", "cpu on a machine without CUDA"))
    refuse(problems)
    done = export(args.run_dir, args.alpaca_eval, args.mt_bench, args.model_id, args.max_new_tokens,
                  args.batch_size, args.limit, args.device)
    print(f"wrote {done['alpaca_eval']} AlpacaEval outputs and {done['mt_bench']} MT-Bench answers to {done['dir']} "
          f"({done['device']}, {done['dtype']})")


if __name__ == "__main__":
    main()
