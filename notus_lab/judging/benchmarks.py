"""Answers for external judges, in their own file shapes and with their published decoding
(`python -m notus_lab.generate`).

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

import json
import time
import uuid
from pathlib import Path

from notus_lab.config.schema import NotusConfig
from notus_lab.core import chat
from notus_lab.core.files import read_jsonl, write_json
from notus_lab.core.run_dir import RunDir
from notus_lab.data.prepare import held_out_prompts
from notus_lab.judging.generation import complete, load_policy


def run_config(run_dir: Path):
    from omegaconf import OmegaConf

    return OmegaConf.merge(OmegaConf.structured(NotusConfig), OmegaConf.load(RunDir(run_dir).config))


# The decoding behind the published numbers: alpaca_eval's models_configs/zephyr-7b-beta, and FastChat's
# gen_model_answer (1024 new tokens, one choice, a temperature per category: 0 is greedy; 0.7 for others)
ALPACA_EVAL = {"max_new_tokens": 2048, "do_sample": True, "temperature": 0.7, "top_p": 1.0}


MT_BENCH_TOKENS, MT_BENCH_DEFAULT_TEMPERATURE = 1024, 0.7


MT_BENCH_TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}


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
        prompts = held_out_prompts(cfg.data)
        alpaca = (
            alpaca if alpaca is not None else [{"instruction": p, "dataset": "notus_lab_held_out"} for p in prompts]
        )
        mt = (
            mt
            if mt is not None
            else [{"question_id": i + 1, "category": "notus_lab_held_out", "turns": [p]} for i, p in enumerate(prompts)]
        )
    return alpaca[:limit], mt[:limit]


def answer_mt_bench(model, tokenizer, questions: list[dict], decoding) -> list[list[str]]:
    """Every turn of every question; each turn sees the model's earlier answers; decoding(question) -> g."""
    chats = [[] for _ in questions]
    for turn in range(max((len(q["turns"]) for q in questions), default=0)):
        active = [i for i, q in enumerate(questions) if turn < len(q["turns"])]
        for i in active:
            chats[i].append(chat.message("user", questions[i]["turns"][turn]))
        groups = {}
        for i in active:  # one generate pass per decoding (MT-Bench: per category temperature)
            g = decoding(questions[i])
            groups.setdefault(tuple(sorted((k, g[k]) for k in g)), []).append(i)
        for members in groups.values():
            for i, answer in zip(
                members, complete(model, tokenizer, [chats[i] for i in members], decoding(questions[members[0]]))
            ):
                chats[i].append(chat.message("assistant", answer[0]))
    return [[m["content"] for m in chat if m["role"] == "assistant"] for chat in chats]


def write_model_answers(path: Path, questions: list[dict], answers: list[list[str]], model_id: str) -> None:
    """FastChat's model_answer jsonl: one record per question, its turns as one choice."""
    path.parent.mkdir(exist_ok=True)
    with open(path, "w") as f:
        for q, turns in zip(questions, answers):
            record = {
                "question_id": q["question_id"],
                "answer_id": uuid.uuid4().hex,
                "model_id": model_id,
                "choices": [{"index": 0, "turns": turns}],
                "tstamp": time.time(),
            }
            f.write(json.dumps(record) + "\n")


def export(
    run_dir: Path,
    alpaca_file: Path | None,
    mt_bench_file: Path | None,
    model_id: str | None,
    max_new_tokens: int | None,
    batch_size: int,
    limit: int | None,
    device: str | None = None,
    benchmark: str | None = None,
) -> dict:
    """Answers for the external judges in their own file formats, with the decoding recorded beside them:
    the benchmark's published settings with `benchmark`, else the run's decoding (one answer per prompt)."""
    from omegaconf import OmegaConf

    from notus_lab.models.loading import base_path

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if device:
        cfg.hardware.device = device
    run_decoding = {"samples_per_prompt": 1, "batch_size": batch_size, "max_new_tokens": max_new_tokens or 512}
    model_id = model_id or run_dir.name
    rd = RunDir(run_dir)
    out_dir = rd.exports
    out_dir.mkdir(exist_ok=True)
    alpaca, mt = benchmark_prompts(cfg, alpaca_file, mt_bench_file, limit)
    model_dir = rd.merged if rd.merged.is_dir() else rd.model
    model, tokenizer = load_policy(cfg, model_dir, base_path(cfg.base))

    def decoding(preset: dict):
        return OmegaConf.merge(cfg.generation, run_decoding, preset)

    settings = {
        "benchmark": benchmark,
        "device": str(model.device),
        "dtype": str(next(model.parameters()).dtype),
        "chat_template": "the base's own (tokenizer.apply_chat_template), empty system turn",
    }
    written = {}
    if benchmark in (None, "alpaca_eval"):
        preset = {**ALPACA_EVAL, **({"max_new_tokens": max_new_tokens} if max_new_tokens else {})} if benchmark else {}
        outputs = complete(
            model, tokenizer, [[chat.message("user", a["instruction"])] for a in alpaca], decoding(preset)
        )
        write_json(
            out_dir / "alpaca_eval.json",
            [
                {
                    "instruction": a["instruction"],
                    "output": o[0],
                    "generator": model_id,
                    "dataset": a.get("dataset", ""),
                }
                for a, o in zip(alpaca, outputs)
            ],
        )
        settings["alpaca_eval"] = {
            k: decoding(preset)[k] for k in ("max_new_tokens", "do_sample", "temperature", "top_p")
        }
        written["alpaca_eval"] = len(alpaca)
    if benchmark in (None, "mt_bench"):
        tokens = max_new_tokens or MT_BENCH_TOKENS
        per_question = (
            (lambda q: decoding(mt_bench_decoding(q.get("category"), tokens)))
            if benchmark
            else (lambda q: decoding({}))
        )
        answers = answer_mt_bench(model, tokenizer, mt, per_question)
        write_model_answers(out_dir / "model_answer" / f"{model_id}.jsonl", mt, answers, model_id)
        settings["mt_bench"] = (
            {
                "max_new_tokens": tokens,
                "temperature_by_category": MT_BENCH_TEMPERATURE,
                "default_temperature": MT_BENCH_DEFAULT_TEMPERATURE,
            }
            if benchmark
            else {k: decoding({})[k] for k in ("max_new_tokens", "do_sample", "temperature", "top_p")}
        )
        written["mt_bench"] = len(mt)
    write_json(out_dir / "settings.json", settings)
    return {
        "alpaca_eval": written.get("alpaca_eval", 0),
        "mt_bench": written.get("mt_bench", 0),
        "dir": str(out_dir),
        "device": settings["device"],
        "dtype": settings["dtype"],
    }
