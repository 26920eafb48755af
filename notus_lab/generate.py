"""Generation: the trained policy and its reference answer prompts, batched with a KV cache on the run's
device and precision. Used after training for judged generations (evaluate.py), and by the export
command for external judges:

    python -m notus_lab.generate <run dir> [--benchmark alpaca_eval|mt_bench] [--alpaca-eval alpaca_eval.json]
                                           [--mt-bench question.jsonl]

Writes into <run dir>/generations/:
  alpaca_eval.json       [{"instruction", "output", "generator", "dataset"}]  (alpaca_eval --model_outputs)
  model_answer/<model_id>.jsonl {"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [...]}],
                          "tstamp"}  (FastChat's data/mt_bench/model_answer/: FastChat names the model by the file)
  settings.json          the decoding each file was made with, the device and dtype
Without prompt files, the run's own held-out prompts are used for both (single-turn), so a bundled-world
run can be exported offline. MT-Bench questions are multi-turn: each turn sees the model's earlier answers.
`--benchmark` reproduces the decoding behind the published numbers (ALPACA_EVAL, MT_BENCH_TEMPERATURE).
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
from notus_lab.tracking import read_jsonl, write_json


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
    """`g.samples_per_prompt` answers (one when greedy) per chat conversation, in the base's own chat template
    with an empty system turn (Zephyr's `<|system|>\n</s>`). Batched by prompt length, so that a batch is not
    padded to the longest prompt of the set, KV-cached; each batch's sampling seed is fixed, so a policy and
    its reference draw with the same random numbers. Answers come back in the conversations' order."""
    import torch

    n = g.samples_per_prompt if g.do_sample else 1
    sampling = dict(do_sample=True, temperature=g.temperature, top_p=g.top_p) if g.do_sample else dict(do_sample=False)
    texts = [tokenizer.apply_chat_template([{"role": "system", "content": ""}] + c, tokenize=False,
                                           add_generation_prompt=True) for c in conversations]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda k: lengths[k])
    out = [None] * len(texts)
    for b, i in enumerate(range(0, len(order), g.batch_size)):
        batch = order[i:i + g.batch_size]
        enc = tokenizer([texts[k] for k in batch], return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        torch.manual_seed(g.seed + b)
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=g.max_new_tokens, num_return_sequences=n, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id, **sampling)
        answers = [t.strip() for t in tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
        for j, k in enumerate(batch):
            out[k] = answers[j * n:(j + 1) * n]
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


# The decoding behind the published numbers: alpaca_eval's models_configs/zephyr-7b-beta, and FastChat's
# gen_model_answer (1024 new tokens, one choice, a temperature per category: 0 is greedy; 0.7 for others)
ALPACA_EVAL = {"max_new_tokens": 2048, "do_sample": True, "temperature": 0.7, "top_p": 1.0}
MT_BENCH_TOKENS, MT_BENCH_DEFAULT_TEMPERATURE = 1024, 0.7
MT_BENCH_TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                        "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
BENCHMARKS = ("alpaca_eval", "mt_bench")


def mt_bench_decoding(category: str | None, max_new_tokens: int) -> dict:
    """FastChat's decoding for one question's category (fastchat/llm_judge/common.py temperature_config)."""
    t = MT_BENCH_TEMPERATURE.get(category, MT_BENCH_DEFAULT_TEMPERATURE)
    return {"max_new_tokens": max_new_tokens, "do_sample": t >= 1e-4, "temperature": t, "top_p": 1.0}


def benchmark_prompts(cfg, alpaca_file: Path | None, mt_bench_file: Path | None, limit: int | None):
    """AlpacaEval instructions and MT-Bench questions: the files given, else the run's held-out prompts."""
    alpaca = json.loads(Path(alpaca_file).read_text()) if alpaca_file else None
    mt = read_jsonl(mt_bench_file) if mt_bench_file else None
    if alpaca is None or mt is None:
        prompts = held_out_prompts(cfg)
        alpaca = alpaca if alpaca is not None else [{"instruction": p, "dataset": "notus_lab_held_out"} for p in prompts]
        mt = mt if mt is not None else [{"question_id": i + 1, "category": "notus_lab_held_out", "turns": [p]}
                                        for i, p in enumerate(prompts)]
    return alpaca[:limit], mt[:limit]


def answer_mt_bench(model, tokenizer, questions: list[dict], decoding) -> list[list[str]]:
    """Every turn of every question; each turn sees the model's earlier answers; decoding(question) -> g."""
    chats = [[] for _ in questions]
    for turn in range(max((len(q["turns"]) for q in questions), default=0)):
        active = [i for i, q in enumerate(questions) if turn < len(q["turns"])]
        for i in active:
            chats[i].append({"role": "user", "content": questions[i]["turns"][turn]})
        groups = {}
        for i in active:  # one generate pass per decoding (MT-Bench: per category temperature)
            g = decoding(questions[i])
            groups.setdefault(tuple(sorted((k, g[k]) for k in g)), []).append(i)
        for members in groups.values():
            for i, answer in zip(members, complete(model, tokenizer, [chats[i] for i in members], decoding(questions[members[0]]))):
                chats[i].append({"role": "assistant", "content": answer[0]})
    return [[m["content"] for m in chat if m["role"] == "assistant"] for chat in chats]


def export(run_dir: Path, alpaca_file: Path | None, mt_bench_file: Path | None, model_id: str | None,
           max_new_tokens: int | None, batch_size: int, limit: int | None, device: str | None = None,
           benchmark: str | None = None) -> dict:
    """Answers for the external judges in their own file formats, with the decoding recorded beside them:
    the benchmark's published settings with `benchmark`, else the run's decoding (one answer per prompt)."""
    from omegaconf import OmegaConf

    from notus_lab.model import base_path

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if device:
        cfg.hardware.device = device
    run_decoding = {"samples_per_prompt": 1, "batch_size": batch_size, "max_new_tokens": max_new_tokens or 512}
    model_id = model_id or run_dir.name
    out_dir = run_dir / "generations"
    out_dir.mkdir(exist_ok=True)
    alpaca, mt = benchmark_prompts(cfg, alpaca_file, mt_bench_file, limit)
    model_dir = run_dir / "merged" if (run_dir / "merged").is_dir() else run_dir / "model"
    model, tokenizer = load_policy(cfg, model_dir, base_path(cfg.base))

    def decoding(preset: dict):
        return OmegaConf.merge(cfg.generation, run_decoding, preset)

    settings = {"benchmark": benchmark, "device": str(model.device), "dtype": str(next(model.parameters()).dtype),
                "chat_template": "the base's own (tokenizer.apply_chat_template), empty system turn"}
    written = {}
    if benchmark in (None, "alpaca_eval"):
        preset = {**ALPACA_EVAL, **({"max_new_tokens": max_new_tokens} if max_new_tokens else {})} if benchmark else {}
        outputs = complete(model, tokenizer, [[{"role": "user", "content": a["instruction"]}] for a in alpaca], decoding(preset))
        write_json(out_dir / "alpaca_eval.json", [
            {"instruction": a["instruction"], "output": o[0], "generator": model_id, "dataset": a.get("dataset", "")}
            for a, o in zip(alpaca, outputs)])
        settings["alpaca_eval"] = {k: decoding(preset)[k] for k in ("max_new_tokens", "do_sample", "temperature", "top_p")}
        written["alpaca_eval"] = len(alpaca)
    if benchmark in (None, "mt_bench"):
        tokens = max_new_tokens or MT_BENCH_TOKENS
        per_question = (lambda q: decoding(mt_bench_decoding(q.get("category"), tokens))) if benchmark \
            else (lambda q: decoding({}))
        answers = answer_mt_bench(model, tokenizer, mt, per_question)
        (out_dir / "model_answer").mkdir(exist_ok=True)
        with open(out_dir / "model_answer" / f"{model_id}.jsonl", "w") as f:
            for q, turns in zip(mt, answers):
                f.write(json.dumps({"question_id": q["question_id"], "answer_id": uuid.uuid4().hex, "model_id": model_id,
                                    "choices": [{"index": 0, "turns": turns}], "tstamp": time.time()}) + "\n")
        settings["mt_bench"] = {"max_new_tokens": tokens, "temperature_by_category": MT_BENCH_TEMPERATURE,
                                "default_temperature": MT_BENCH_DEFAULT_TEMPERATURE} if benchmark else \
            {k: decoding({})[k] for k in ("max_new_tokens", "do_sample", "temperature", "top_p")}
        written["mt_bench"] = len(mt)
    write_json(out_dir / "settings.json", settings)
    return {"alpaca_eval": written.get("alpaca_eval", 0), "mt_bench": written.get("mt_bench", 0), "dir": str(out_dir),
            "device": settings["device"], "dtype": settings["dtype"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m notus_lab.generate", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a finished run dir (with model/)")
    p.add_argument("--alpaca-eval", type=Path, help="AlpacaEval prompts: a json list of {instruction, dataset}")
    p.add_argument("--mt-bench", type=Path, help="MT-Bench questions: question.jsonl with question_id and turns")
    p.add_argument("--model-id", help="name the judges will show (default: the run dir's name)")
    p.add_argument("--benchmark", choices=BENCHMARKS,
                   help="answer one benchmark with its published decoding: alpaca_eval (2048 new tokens, "
                        "temperature 0.7, top_p 1.0, sampled) or mt_bench (1024 new tokens, FastChat's "
                        "temperature per category, greedy where it is 0); recorded in generations/settings.json")
    p.add_argument("--max-new-tokens", type=int, help="default: the benchmark's own, else 512")
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
                  args.batch_size, args.limit, args.device, args.benchmark)
    print(f"wrote {done['alpaca_eval']} AlpacaEval outputs and {done['mt_bench']} MT-Bench answers to {done['dir']} "
          f"({done['device']}, {done['dtype']})")


if __name__ == "__main__":
    main()
