"""Quality per quantization, measured.

Each GGUF file answers the run's held-out prompts in llama-cpp-python on the CPU. llama.cpp applies the chat
template from the file's metadata, and the decoding is the run's own, in transformers' order (`decoding`). Sample k
of a prompt has its own seed (`sample_seed`), the same in every file, so sample k of a quantized file is paired
with sample k of the f16 file. The run's judge scores every answer. Each file is then compared head to head:
- with the f16 file, on the same prompt and sample;
- with the SFT reference's answers that the run itself was judged against (generations.jsonl).

The interval. One run is one trained model, so its files are compared over prompts. A prompt's samples are
averaged first: they share the prompt, not a seed effect across prompts. The interval is a Student t over the P
prompts' mean outcomes, with P - 1 degrees of freedom; a win counts 1 and a tie 0.5, as AlpacaEval counts them.
It says how sure one can be about these files. It says nothing about quantizing another seed's model. Where
every prompt gives the same outcome there is no interval: a zero-width one would claim a certainty that P
prompts cannot give. A file is flagged (`vs_f16.differs`) where the quantization measurably changed the answers'
quality: Holm's step-down over the run's quantized files (`flag`), so that the family-wise error stays at 5 %
however many files are made. The study's report pools the files of every run (notus_lab/study/quantized.py).
"""

from __future__ import annotations

import math
import time
import zlib

from notus_lab.core import chat
from notus_lab.core.intervals import holm_steps, t_interval, t_p_value
from notus_lab.judging.judges import win_rate, winner

CONFIDENCE = 0.95


def decoding(g, top_k: int) -> dict:
    """llama-cpp-python's sampling arguments for the run's decoding (generation.*), in transformers' order.
    transformers divides the logits by the temperature first, then keeps the top_k, then the top_p nucleus of
    the tempered distribution. llama.cpp's chain takes the nucleus before it applies the temperature, which at
    0.7 keeps more words. So the temperature goes first, as a logits processor, and llama.cpp samples at
    temperature 1. `top_k` is the model's own (its generation config's, 50 where unset); there is no min_p and no
    repeat penalty (llama.cpp's defaults, not transformers'). Greedy is temperature 0."""
    plain = {"min_p": 0.0, "repeat_penalty": 1.0}
    if not g.do_sample:
        return {"temperature": 0.0, "top_p": 1.0, "top_k": 1, **plain}
    from llama_cpp import LogitsProcessorList

    t = g.temperature
    return {
        "temperature": 1.0,
        "logits_processor": LogitsProcessorList([lambda ids, logits: logits / t]),
        "top_p": g.top_p,
        "top_k": top_k,
        **plain,
    }


def transformers_top_k(model_dir) -> int:
    """The top_k transformers samples a model with: its generation config's, else transformers' own default
    (50: GenerationConfig's global defaults, filled in at generate time)."""
    from transformers import GenerationConfig

    try:
        own = GenerationConfig.from_pretrained(model_dir).top_k
    except OSError:  # no generation_config.json (an adapter dir)
        own = None
    if own is not None:
        return own
    defaults = getattr(GenerationConfig, "_get_default_generation_params", None)
    return defaults()["top_k"] if defaults else 50


def answer_with(path, prompts: list[str], g, top_k: int, threads: int) -> dict:
    """Every prompt's answers from one GGUF file: {answers: [P][n], tokens, seconds, tokens_per_s}."""
    from notus_lab.models.gguf import load

    llm = load(
        path,
        n_ctx=max(2048, g.max_new_tokens + 1024),
        n_threads=threads,
        n_threads_batch=threads,
        seed=g.seed,
    )
    n = g.samples_per_prompt if g.do_sample else 1
    sampling = decoding(g, top_k)
    answers, tokens = [], 0
    start = time.perf_counter()
    for p in prompts:
        row = []
        for k in range(n):
            out = llm.create_chat_completion(
                chat.prompt_messages(p), max_tokens=g.max_new_tokens, seed=sample_seed(g.seed, p, k), **sampling
            )
            row.append(out["choices"][0]["message"]["content"].strip())
            tokens += out["usage"]["completion_tokens"]
        answers.append(row)
    seconds = time.perf_counter() - start
    return {
        "answers": answers,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
    }


def llama_chat_prompt_ids(llm, prompt: str) -> list[int]:
    """The token ids llama-cpp-python feeds the model for a chat prompt: the file's own template applied by
    its Jinja2 chat formatter, then tokenized, as its create_chat_completion does."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    token = lambda i: llm._model.token_get_text(i) if i >= 0 else ""  # noqa: E731
    formatter = Jinja2ChatFormatter(
        llm.metadata["tokenizer.chat_template"], eos_token=token(llm.token_eos()), bos_token=token(llm.token_bos())
    )
    formatted = formatter(messages=chat.prompt_messages(prompt))
    return llm.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)


def sample_seed(seed: int, prompt: str, k: int) -> int:
    """The sampling seed of a prompt's k-th answer: the same in every file (common random numbers: where two files'
    logits agree, so do their draws), and another for every prompt. One seed per k for every prompt would share
    one random stream across prompts: a lucky stream lifts every prompt's answer at once, the seed becomes a
    factor crossed with the prompts, and an interval over prompts no longer holds (an f16 file against itself
    under other seeds was flagged 3 times in 15 that way)."""
    return zlib.crc32(f"{seed}|{k}|{prompt}".encode())


def outcome(score: float, other: float) -> float:
    """1 for a win, 0.5 for a tie, 0 for a loss (AlpacaEval's count)."""
    return {"policy": 1.0, "tie": 0.5, "reference": 0.0}[winner(score, other)]


def prompt_interval(per_prompt: list[float]) -> dict:
    """A win rate over prompts (each prompt's samples averaged) with its t interval over the prompts and the
    p-value of an even match (0.5); ci and p_value are None where there is no interval (fewer than 2 prompts, or
    every prompt's outcome the same)."""
    mean, low, high = t_interval(per_prompt, CONFIDENCE)
    ci = None if math.isnan(low) else [round(low, 4), round(high, 4)]
    return {"win_rate": round(mean, 4), "ci": ci, "p_value": t_p_value(per_prompt, 0.5), "per_prompt": per_prompt}


def head_to_head(scores: list[list[float]], other: list[list[float]]) -> dict:
    """Per prompt, the mean outcome of its samples against the other side's same samples, then the interval."""
    per_prompt = [sum(outcome(s, o) for s, o in zip(ss, os)) / len(ss) for ss, os in zip(scores, other)]
    flat = [winner(s, o) for ss, os in zip(scores, other) for s, o in zip(ss, os)]
    return {
        **prompt_interval(per_prompt),
        "wins": flat.count("policy"),
        "ties": flat.count("tie"),
        "losses": flat.count("reference"),
        "pooled": round(win_rate(flat), 4),
    }


def flag(comparisons: dict[str, dict]) -> None:
    """In place: which files' quantization measurably changed the answers' quality. Holm's step-down over the
    run's quantized files keeps the family-wise error at 5 % however many files were made: `differs` (the flag),
    `adjusted_alpha`, and `adjusted_ci`, the interval at that alpha, which excludes 0.5 exactly when flagged."""
    names = list(comparisons)
    for n, (rejected, level) in zip(names, holm_steps([comparisons[n]["p_value"] for n in names], 1 - CONFIDENCE)):
        c = comparisons[n]
        _, low, high = t_interval(c.pop("per_prompt"), 1 - level)
        c["differs"], c["adjusted_alpha"] = rejected, round(level, 6)
        c["adjusted_ci"] = None if math.isnan(low) else [round(low, 4), round(high, 4)]


def judge_files(judge, prompts: list[str], answered: dict, reference: list[list[str]] | None, baseline: str) -> dict:
    """{file: quality} for files answered as {name: answer_with(...)}: the judge's mean score, the share of answers
    identical to the baseline's, the head to head with the baseline (None for the baseline itself) and with the
    SFT reference's answers (None when the run kept none)."""
    scores = {}
    for name, done in answered.items():
        flat = judge.score([p for p, row in zip(prompts, done["answers"]) for _ in row], sum(done["answers"], []))
        it = iter(flat)
        scores[name] = [[next(it) for _ in row] for row in done["answers"]]
    reference_scores = None
    if reference is not None:
        n = len(next(iter(answered.values()))["answers"][0])
        flat = judge.score([p for p in prompts for _ in range(n)], [a for row in reference for a in row[:n]])
        it = iter(flat)
        reference_scores = [[next(it) for _ in range(n)] for _ in prompts]
    base = answered[baseline]["answers"]
    out = {}
    for name, done in answered.items():
        pairs = [(a, b) for ra, rb in zip(done["answers"], base) for a, b in zip(ra, rb)]
        vs_reference = None
        if reference_scores is not None:
            vs_reference = head_to_head(scores[name], reference_scores)
            vs_reference.pop("per_prompt")
        out[name] = {
            "judge_score": round(sum(map(sum, scores[name])) / max(sum(map(len, scores[name])), 1), 4),
            "same_text_as_f16": round(sum(a == b for a, b in pairs) / max(len(pairs), 1), 4),
            "scores": scores[name],
            "vs_f16": None if name == baseline else head_to_head(scores[name], scores[baseline]),
            "vs_reference": vs_reference,
        }
    flag({n: o["vs_f16"] for n, o in out.items() if o["vs_f16"] is not None})
    return out
