"""`python -m notus_lab.export <run dir | sweep dir> --gguf f16,q8_0,q4_k_m`: GGUF files of finished runs, each
with the quality it keeps, measured.

    python -m notus_lab.export <run dir | sweep dir> [--gguf f16,q8_0,q4_k_m] [--threads N]

Steps, per run:
1. Merge a LoRA adapter into its base; merged/ is used where export.merge already made it.
2. Convert with llama.cpp's own converter, then quantize with llama.cpp's own quantizer
   (notus_lab/models/gguf.py).
3. Check each file: its tokenizer gives the run's token ids on the world's texts, and its chat template is the run's.
4. Answer the held-out prompts with every file, with the run's decoding, and judge the answers
   (notus_lab/judging/quantized.py).
5. Write gguf/<run>.<TYPE>.gguf, gguf/answers.jsonl, metrics.json["gguf"] and the model card's GGUF section.

The files that are already made and measured with the same settings are not made again. `export.gguf=[...]` does
the same at the end of a training run. This needs the `gguf` extra: pip install 'notus_lab[gguf]'.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from notus_lab.config.validate import require_llama_cpp
from notus_lab.core import chat
from notus_lab.core.console import gguf_lines
from notus_lab.core.errors import ConfigError, refuse, run_command
from notus_lab.core.files import read_jsonl, write_json, write_jsonl
from notus_lab.core.keys import cache_root
from notus_lab.core.redaction import redact
from notus_lab.core.run_dir import RunDir, finished_runs
from notus_lab.data.prepare import held_out_prompts
from notus_lab.judging.benchmarks import run_config
from notus_lab.models import gguf


def file_name(run_dir: Path, name: str) -> str:
    """<run>.<TYPE>.gguf, as GGUF repositories on the hub name their files (notus-7b-v1.Q4_K_M.gguf)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(run_dir).resolve().name).strip("-.") or "model"
    return f"{stem}.{name.upper()}.gguf"


def settings_of(cfg, threads: int) -> dict:
    """What the measurements depend on: a change to any of these measures every file again."""
    g = cfg.generation
    return {
        "llama_cpp_python": require_llama_cpp(),
        "judge": cfg.judge.name,
        "threads": threads,
        "decoding": {
            k: g[k] for k in ("samples_per_prompt", "do_sample", "temperature", "top_p", "max_new_tokens", "seed")
        },
        "max_prompts": g.max_prompts,
    }


def ensure_gguf(run_dir, quantizations, threads: int | None = None, max_prompts: int | None = None) -> dict:
    """Idempotent: make and measure the GGUF files of `quantizations` (a list, or a --gguf string) and return the
    run's metrics with their "gguf" entry. A file already made and answered with the same settings is kept with
    its answers (gguf/answers.jsonl); the judge then compares every file again. Bad input, a missing install or
    a failed check is a one-line ConfigError, and a check that fails leaves no new file behind."""
    rd = RunDir(run_dir)
    names = gguf.parse_quantizations(quantizations, "--gguf")
    if not rd.metrics.exists() or not rd.model.is_dir():
        raise ConfigError(f"{rd.path} is not a finished run (metrics.json and model/): nothing to export")
    cfg = run_config(rd.path)
    if max_prompts is not None:  # a 7B file on the CPU answers slowly: a first look on fewer prompts
        cfg.generation.max_prompts = max_prompts
    threads = threads or cfg.hardware.threads or os.cpu_count() or 1
    settings = settings_of(cfg, threads)
    metrics = json.loads(rd.metrics.read_text())
    kept = kept_files(rd, metrics.get("gguf"), settings)
    if all(n in kept for n in names):
        return metrics
    out = rd.gguf
    out.mkdir(exist_ok=True)
    names = [n for n in gguf.GGUF_TYPES if n in names or n in kept]  # the table's order: f16 first, then by size
    files = {n: out / file_name(rd.path, n) for n in names}
    tokenizer = _tokenizer(rd)
    new = {n: p for n, p in files.items() if n not in kept}
    for p in new.values():  # a file of other settings, or of a crashed attempt, is made again
        p.unlink(missing_ok=True)
    with _merged_model(rd) as model_dir:
        made = _make_files(cfg, model_dir, files, new, tokenizer, threads)
    prompts = held_out_prompts(cfg.data)
    prompts = prompts[: cfg.generation.max_prompts] if cfg.generation.max_prompts else prompts
    measured = _measure(cfg, rd, prompts, files, kept, tokenizer, threads)
    entry = {"settings": settings, "baseline": gguf.BASELINE, "n_prompts": len(prompts), "files": {}}
    for n in names:
        made_n = made.get(n) or {k: kept[n][k] for k in MADE}
        entry["files"][n] = {"file": str(files[n].relative_to(rd.path)), **made_n, **measured["files"][n]}
    entry["chat_prompt_ids_identical"] = measured["chat_prompt_ids_identical"]
    metrics["gguf"] = entry
    _record(cfg, rd, metrics)
    return metrics


# what making a file records (the rest of its entry is measured)
MADE = ("bytes", "tensor_types", "tokenizer_pre", "tokenizer_check", "chat_template_in_metadata")
ANSWERED = ("tokens_per_s", "tokens", "seconds")


def kept_files(rd: RunDir, entry: dict | None, settings: dict) -> dict:
    """{name: entry} of the files recorded with these settings that are still on disk with their answers."""
    if not entry or entry.get("settings") != settings:
        return {}
    answers = rd.gguf_answers
    answered = {r["quantization"] for r in read_jsonl(answers)} if answers.exists() else set()
    return {n: f for n, f in entry["files"].items() if n in answered and (rd.path / f["file"]).exists()}


def _tokenizer(rd: RunDir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(rd.model)


class _merged_model:
    """The model dir to convert: model/ for a full fine-tune, merged/ where export.merge made it, else the
    adapter merged into its base in a temp dir (removed afterwards: a 7B merge is 14 GB)."""

    def __init__(self, rd: RunDir):
        self.rd, self.tmp = rd, None

    def __enter__(self) -> Path:
        rd = self.rd
        if not (rd.model / "adapter_config.json").exists():
            return rd.model
        if (rd.merged / "config.json").exists():
            return rd.merged
        from peft import AutoPeftModelForCausalLM

        self.tmp = Path(tempfile.mkdtemp(prefix=".merging-", dir=rd.path))
        merged = AutoPeftModelForCausalLM.from_pretrained(str(rd.model), use_safetensors=True)
        merged.merge_and_unload().save_pretrained(str(self.tmp))
        _tokenizer(rd).save_pretrained(str(self.tmp))
        return self.tmp

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _make_files(cfg, model_dir: Path, files: dict, new: dict, tokenizer, threads: int) -> dict:
    """Convert (f16) and quantize (the rest from f16) the `new` files, each described and checked. A check that
    fails removes the new files, with a one-line error that says what differed."""
    cache = cache_root(cfg.base.cache_dir)
    baseline = files[gguf.BASELINE]
    if not new:
        return {}
    if not baseline.exists():
        gguf.convert(model_dir, baseline, cache)
    for n, path in new.items():
        if not path.exists():
            gguf.quantize(baseline, path, n, threads)
    texts = world_texts(cfg, tokenizer)
    made = {}
    for n, path in new.items():
        described = gguf.describe(path)
        check = gguf.tokenizer_check(path, tokenizer, texts)
        problem = None
        if check["identical"] != check["texts"]:
            differ = check["texts"] - check["identical"]
            problem = (
                f"llama.cpp's tokenizer in {path.name} gives other token ids than the run's on {differ} of "
                f"{check['texts']} texts, e.g. {check['first_difference'][:80]!r}"
            )
        elif described["chat_template"] != tokenizer.chat_template:
            problem = f"{path.name} does not carry the run's chat template in tokenizer.chat_template"
        if problem:
            for p in new.values():
                p.unlink(missing_ok=True)
            raise ConfigError(f"export.gguf: {problem}; the new files were removed")
        made[n] = {
            "bytes": described["bytes"],
            "tensor_types": described["tensor_types"],
            "tokenizer_pre": described["tokenizer_pre"],
            "tokenizer_check": {"texts": check["texts"], "identical": check["identical"]},
            "chat_template_in_metadata": True,
        }
    return made


def world_texts(cfg, tokenizer) -> list[str]:
    """The texts the tokenizer check runs on, as the model sees them in the run's chat template: every held-out
    prompt as generation opens it, and every held-out pair's two answers."""
    from notus_lab.data.prepare import prepare

    prepared = prepare(cfg.data, audit_rows=False)
    texts = [
        tokenizer.apply_chat_template(chat.prompt_messages(p), tokenize=False, add_generation_prompt=True)
        for p in prepared["held_out_prompts"]
    ]
    for pair in prepared["test_pairs"]:
        for side in ("chosen", "rejected"):
            texts.append(tokenizer.apply_chat_template(chat.conversation(pair["prompt"], pair[side]), tokenize=False))
    return texts


def _measure(cfg, rd: RunDir, prompts: list[str], files: dict, kept: dict, tokenizer, threads: int) -> dict:
    """Every new file answers the prompts (a kept file's answers are read back); the run's judge scores them all
    against f16 and against the SFT reference."""
    from notus_lab.judging.head_to_head import make_judge
    from notus_lab.judging.quantized import answer_with, judge_files, llama_chat_prompt_ids, transformers_top_k

    top_k = transformers_top_k(rd.model)
    answers_file = rd.gguf_answers
    earlier = read_jsonl(answers_file) if kept and answers_file.exists() else []
    answered = {}
    for n, path in files.items():
        if n in kept:
            rows: dict[str, list] = {}
            for r in earlier:
                if r["quantization"] == n:
                    rows.setdefault(r["prompt"], []).append(r["answer"])
            answered[n] = {"answers": [rows[p] for p in prompts], **{k: kept[n][k] for k in ANSWERED}}
        else:
            answered[n] = answer_with(path, prompts, cfg.generation, top_k, threads)
    opening = tokenizer.apply_chat_template(
        chat.prompt_messages(prompts[0]), tokenize=False, add_generation_prompt=True
    )
    run_ids = tokenizer(opening, add_special_tokens=False)["input_ids"]  # what generation.complete feeds the model
    identical = llama_chat_prompt_ids(gguf.load(files[gguf.BASELINE], vocab_only=True), prompts[0]) == run_ids
    judge = make_judge(cfg) if cfg.judge.name != "none" else None
    reference = reference_answers(rd, prompts)
    quality = judge_files(judge, prompts, answered, reference, gguf.BASELINE) if judge else {}
    scores = {n: q.pop("scores") for n, q in quality.items()}
    write_jsonl(  # the report pools these over a study's runs (study/quantized.py)
        answers_file,
        [
            {
                "file": files[n].name,
                "quantization": n,
                "prompt": p,
                "sample": k,
                "answer": a,
                "score": scores[n][i][k] if n in scores else None,
            }
            for n, done in answered.items()
            for i, (p, row) in enumerate(zip(prompts, done["answers"]))
            for k, a in enumerate(row)
        ],
    )
    out = {n: {**{k: done[k] for k in ANSWERED}, **quality.get(n, {})} for n, done in answered.items()}
    return {"files": out, "chat_prompt_ids_identical": identical}


def reference_answers(rd: RunDir, prompts: list[str]) -> list[list[str]] | None:
    """The SFT reference's answers the run was judged against (generations.jsonl), per prompt by sample."""
    if not rd.generations.exists():
        return None
    by_prompt: dict[str, dict[int, str]] = {}
    for r in read_jsonl(rd.generations):
        by_prompt.setdefault(r["prompt"], {})[r["sample"]] = r["reference"]
    if any(p not in by_prompt for p in prompts):
        return None
    return [[by_prompt[p][k] for k in sorted(by_prompt[p])] for p in prompts]


def _record(cfg, rd: RunDir, metrics: dict) -> None:
    """The model card with its GGUF section, metrics.json, and the run's own W&B run (resumed: the same run dir is
    the same W&B run) with the table and its numbers in the summary."""
    from notus_lab.train.model_card import model_card

    report = json.loads(rd.data_report.read_text()) if rd.data_report.exists() else {}
    rd.card.write_text(redact(model_card(cfg, metrics, report)))
    write_json(rd.metrics, metrics)
    _log_to_wandb(cfg, rd, metrics["gguf"])


WANDB_COLUMNS = ("file", "quantization", "bytes", "tokens_per_s", "win_rate_vs_f16", "ci_low", "ci_high", "flagged")


def _log_to_wandb(cfg, rd: RunDir, entry: dict) -> None:
    from notus_lab.core.files import flatten
    from notus_lab.core.tracking import start_wandb

    wb = start_wandb(cfg.wandb, rd.path, {"export": {"gguf": list(entry["files"])}}, [], cfg.wandb.group, "train")
    if wb is None:
        return
    import wandb

    rows = []
    for n, f in entry["files"].items():
        vs = f.get("vs_f16") or {}
        ci = vs.get("ci") or [None, None]
        rows.append([f["file"], n, f["bytes"], f["tokens_per_s"], vs.get("win_rate"), *ci, vs.get("differs")])
    wb.log({"gguf": wandb.Table(columns=list(WANDB_COLUMNS), data=rows)})
    wb.summary.update({k: v for k, v in flatten({"gguf": entry}).items() if isinstance(v, (int, float))})
    wb.finish()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m notus_lab.export", description=__doc__.splitlines()[0])
    p.add_argument("path", type=Path, help="a finished run dir, or a sweep dir of them")
    p.add_argument(
        "--gguf",
        default="f16,q8_0,q4_k_m",
        help=f"the files to make, comma-separated, of: {', '.join(gguf.GGUF_TYPES)} (f16, the baseline the "
        "others are judged against, is always made)",
    )
    p.add_argument("--threads", type=int, help="llama.cpp's threads (default: hardware.threads, else every core)")
    p.add_argument(
        "--max-prompts",
        type=int,
        help="answer only the first N held-out prompts (default: the run's generation.max_prompts, else all)",
    )
    args = p.parse_args(argv)
    dirs = finished_runs(args.path)
    problems = [] if dirs else [("path", args.path, "a finished run dir (metrics.json, model/) or a sweep dir of them")]
    problems += [
        (k, v, "an integer > 0")
        for k, v in (("--threads", args.threads), ("--max-prompts", args.max_prompts))
        if v is not None and v <= 0
    ]
    refuse(problems)
    gguf.parse_quantizations(args.gguf, "--gguf")
    require_llama_cpp()
    for run_dir in dirs:
        metrics = ensure_gguf(run_dir, args.gguf, args.threads, args.max_prompts)
        print(f"{run_dir.name}: wrote {RunDir(run_dir).card} and metrics.json[gguf]")
        print("\n".join(f"  {line}" for line in gguf_lines(metrics["gguf"])))


if __name__ == "__main__":
    run_command(main)
