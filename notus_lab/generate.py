"""Export completions of a trained run for external judges: AlpacaEval and MT-Bench.

    python -m notus_lab.generate <run dir> [--alpaca-eval alpaca_eval.json] [--mt-bench question.jsonl]

Writes into <run dir>/generations/:
  alpaca_eval.json       [{"instruction", "output", "generator", "dataset"}]  (alpaca_eval --model_outputs)
  mt_bench_answers.jsonl {"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [...]}],
                          "tstamp"}  (FastChat's data/mt_bench/model_answer/<model_id>.jsonl)
Without prompt files, the run's own held-out prompts are used for both (single-turn), so a bundled-world
run can be exported offline. MT-Bench questions are multi-turn: each turn sees the model's earlier answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

from notus_lab.tracking import write_json


def load_model(run_dir: Path):
    """The run's model: merged weights if exported, else the full model or base + LoRA adapter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = run_dir / "merged" if (run_dir / "merged").is_dir() else run_dir / "model"
    tokenizer = AutoTokenizer.from_pretrained(path)
    if (path / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    tokenizer.padding_side = "left"  # decoder-only batches are padded on the left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def complete(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy completions of chat conversations (the Zephyr template with an empty system turn)."""
    import torch

    out = []
    for i in range(0, len(conversations), batch_size):
        texts = [tokenizer.apply_chat_template([{"role": "system", "content": ""}] + c, tokenize=False,
                                               add_generation_prompt=True) for c in conversations[i:i + batch_size]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        out += [t.strip() for t in tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
    return out


def held_out_prompts(run_dir: Path) -> list[str]:
    """The run's held-out prompts, re-derived from its saved data config (same split, same order)."""
    from omegaconf import OmegaConf

    from notus_lab import data as D
    from notus_lab.config import NotusConfig

    cfg = OmegaConf.merge(OmegaConf.structured(NotusConfig), OmegaConf.load(run_dir / "config.yaml"))
    d = D.as_data_config(cfg.data)
    rows, _ = D.load_rows(d)
    _, test_idx = D.split_for(rows, d)
    return list(dict.fromkeys(p for i in test_idx if (p := D.prompt_text(rows[i], d))))


def export(run_dir: Path, alpaca_file: Path | None, mt_bench_file: Path | None, model_id: str | None,
           max_new_tokens: int, batch_size: int, limit: int | None) -> dict:
    run_dir = Path(run_dir)
    model_id = model_id or run_dir.name
    out_dir = run_dir / "generations"
    out_dir.mkdir(exist_ok=True)
    if alpaca_file:
        alpaca = json.loads(Path(alpaca_file).read_text())
    if mt_bench_file:
        mt = [json.loads(line) for line in Path(mt_bench_file).read_text().splitlines() if line.strip()]
    if not (alpaca_file and mt_bench_file):
        prompts = held_out_prompts(run_dir)
        if not alpaca_file:
            alpaca = [{"instruction": p, "dataset": "notus_lab_held_out"} for p in prompts]
        if not mt_bench_file:
            mt = [{"question_id": i + 1, "category": "notus_lab_held_out", "turns": [p]} for i, p in enumerate(prompts)]
    alpaca, mt = alpaca[:limit], mt[:limit]
    model, tokenizer = load_model(run_dir)

    outputs = complete(model, tokenizer, [[{"role": "user", "content": a["instruction"]}] for a in alpaca],
                       max_new_tokens, batch_size)
    write_json(out_dir / "alpaca_eval.json", [
        {"instruction": a["instruction"], "output": o, "generator": model_id, "dataset": a.get("dataset", "")}
        for a, o in zip(alpaca, outputs)])

    chats = [[] for _ in mt]
    for turn in range(max((len(q["turns"]) for q in mt), default=0)):
        active = [i for i, q in enumerate(mt) if turn < len(q["turns"])]
        for i in active:
            chats[i].append({"role": "user", "content": mt[i]["turns"][turn]})
        for i, answer in zip(active, complete(model, tokenizer, [chats[i] for i in active], max_new_tokens, batch_size)):
            chats[i].append({"role": "assistant", "content": answer})
    with open(out_dir / "mt_bench_answers.jsonl", "w") as f:
        for q, chat in zip(mt, chats):
            f.write(json.dumps({"question_id": q["question_id"], "answer_id": uuid.uuid4().hex, "model_id": model_id,
                                "choices": [{"index": 0, "turns": [m["content"] for m in chat if m["role"] == "assistant"]}],
                                "tstamp": time.time()}) + "\n")
    return {"alpaca_eval": len(alpaca), "mt_bench": len(mt), "dir": str(out_dir)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m notus_lab.generate", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a finished run dir (with model/)")
    p.add_argument("--alpaca-eval", type=Path, help="AlpacaEval prompts: a json list of {instruction, dataset}")
    p.add_argument("--mt-bench", type=Path, help="MT-Bench questions: question.jsonl with question_id and turns")
    p.add_argument("--model-id", help="name the judges will show (default: the run dir's name)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, help="only the first N prompts of each set (quick looks)")
    args = p.parse_args(argv)
    problems = [("run_dir", args.run_dir, "a finished run dir containing model/")
                for _ in [0] if not (args.run_dir / "model").is_dir()]
    problems += [(k, v, "an existing file") for k, v in (("--alpaca-eval", args.alpaca_eval), ("--mt-bench", args.mt_bench))
                 if v is not None and not v.is_file()]
    problems += [(k, v, "an integer > 0") for k, v in (("--max-new-tokens", args.max_new_tokens),
                                                      ("--batch-size", args.batch_size), ("--limit", args.limit))
                 if v is not None and v <= 0]
    if problems:
        key, value, allowed = problems[0]
        print(f"error: {key}={str(value)!r} is invalid: allowed {allowed}", file=sys.stderr)
        sys.exit(2)
    done = export(args.run_dir, args.alpaca_eval, args.mt_bench, args.model_id, args.max_new_tokens,
                  args.batch_size, args.limit)
    print(f"wrote {done['alpaca_eval']} AlpacaEval outputs and {done['mt_bench']} MT-Bench answers to {done['dir']}")


if __name__ == "__main__":
    main()
