"""Evaluate stage: turn the Trainer's flat logs into {train, eval: {signal: metrics}} for metrics.json."""

from __future__ import annotations

HEADLINE = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")


def mean_logged_loss(log_history: list[dict], fallback):
    """Training loss averaged over every logged step, weighted by the steps each log covers. Unlike the
    Trainer's `train_loss` (this session's steps only), a resumed run reports the same as an unbroken one."""
    total, steps, last = 0.0, 0, 0
    for h in log_history:
        if "loss" in h and "step" in h and h["step"] > last:
            total += h["loss"] * (h["step"] - last)
            steps += h["step"] - last
            last = h["step"]
    return total / steps if steps else fallback


def trained_tokens(log_history: list[dict]) -> int:
    """Tokens trained on (TRL's cumulative `num_tokens`). TRL's counter starts again from zero when a run
    resumes, while the restored log keeps the earlier values: add up each stretch."""
    total, last = 0, 0
    for h in log_history:
        if "num_tokens" in h:
            if h["num_tokens"] < last:
                total += last
            last = h["num_tokens"]
    return int(total + last)


def summarize(log_history: list[dict], train_metrics: dict, eval_names: list[str]) -> dict:
    """Final train metrics (last logged step) and held-out metrics per eval signal.

    TRL logs its reward metrics as `eval_rewards/...` in the same log entry as `eval_<name>_loss`,
    so each eval set's numbers are read from the entry that carries its loss.
    """
    last_train = next((h for h in reversed(log_history) if "rewards/accuracies" in h), {})
    train = {k: last_train[k] for k in HEADLINE if k in last_train}
    train["mean_loss"] = mean_logged_loss(log_history, train_metrics.get("train_loss"))
    train["runtime_s"] = train_metrics.get("train_runtime")
    train["steps"] = max((h.get("step", 0) for h in log_history), default=0)
    train["num_tokens"] = trained_tokens(log_history)
    evals = {}
    for name in eval_names:
        entry = next((h for h in reversed(log_history) if f"eval_{name}_loss" in h), {})
        evals[name] = {"loss": entry.get(f"eval_{name}_loss"),
                       **{k: entry[f"eval_{k}"] for k in HEADLINE[1:] if f"eval_{k}" in entry}}
    history = {name: [[h["step"], h["eval_rewards/accuracies"]] for h in log_history
                      if f"eval_{name}_loss" in h and "eval_rewards/accuracies" in h and "step" in h]
               for name in eval_names}
    out = {"train": train, "eval": evals, "eval_history": {k: v for k, v in history.items() if v}}
    if "truth" in evals:  # the bundled world knows which completion is really better
        out["truth_accuracy"] = evals["truth"].get("rewards/accuracies")
    return out


# ---------------------------------------------------------------------------------------------
# Judged generations: the policy and its reference answer the held-out prompts; a judge compares them


def text_stats(answers: list[str], tokenizer) -> dict:
    """Degeneration diagnostics of a set of answers: distinct-2 (unique word bigrams over bigrams, per answer,
    averaged; an answer of fewer than two words counts 0), mean length in model tokens, and the share of all
    words taken by the most frequent one."""
    from collections import Counter

    distinct, words = [], Counter()
    for a in answers:
        w = a.split()
        words.update(w)
        bigrams = list(zip(w, w[1:]))
        distinct.append(len(set(bigrams)) / len(bigrams) if bigrams else 0.0)
    lengths = [len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]] if answers else [0]
    total = sum(words.values())
    return {"distinct_2": round(sum(distinct) / max(len(distinct), 1), 4),
            "mean_tokens": round(sum(lengths) / len(lengths), 2),
            "top_word_share": round(words.most_common(1)[0][1] / total, 4) if total else 1.0}


def judged_generations(cfg, model_dir, base: str, prompts: list[str], truth_pairs: list[dict] | None = None):
    """(summary for metrics.json["generation"], one record per prompt x sample for generations.jsonl)."""
    from notus_lab.generate import answer_prompts, device_for
    from notus_lab.judge import agreement_with_truth, make_judge, win_rate, winner

    g = cfg.generation
    prompts = prompts[: g.max_prompts] if g.max_prompts else prompts
    policy_answers, reference_answers, tokenizer = answer_prompts(cfg, model_dir, base, prompts)
    judge = make_judge(cfg, device_for(cfg))
    flat = [(p, k, pa, ra) for p, pas, ras in zip(prompts, policy_answers, reference_answers)
            for k, (pa, ra) in enumerate(zip(pas, ras))]
    flat_prompts = [p for p, *_ in flat]
    policy_scores = judge.score(flat_prompts, [pa for _, _, pa, _ in flat])
    reference_scores = judge.score(flat_prompts, [ra for *_, ra in flat])
    records = [{"prompt": p, "sample": k, "reference": ra, "policy": pa, "reference_score": rs, "policy_score": ps,
                "winner": winner(ps, rs)} for (p, k, pa, ra), ps, rs in zip(flat, policy_scores, reference_scores)]
    winners = [r["winner"] for r in records]
    policy_stats = text_stats([r["policy"] for r in records], tokenizer)
    reference_stats = text_stats([r["reference"] for r in records], tokenizer)
    mean = lambda xs: round(sum(xs) / max(len(xs), 1), 4)  # noqa: E731
    summary = {
        "judge": judge.name, "n_prompts": len(prompts), "samples_per_prompt": len(policy_answers[0]) if prompts else 0,
        "win_rate_vs_reference": round(win_rate(winners), 4),
        "wins": winners.count("policy"), "losses": winners.count("reference"), "ties": winners.count("tie"),
        "policy_score": mean(policy_scores), "reference_score": mean(reference_scores),
        **{f"policy_{k}": v for k, v in policy_stats.items()}, **{f"reference_{k}": v for k, v in reference_stats.items()},
        "decoding": {k: g[k] for k in ("do_sample", "temperature", "top_p", "max_new_tokens", "seed")},
    }
    if truth_pairs:  # how far to trust this judge: its own agreement with the world's truth
        summary["judge_truth_agreement"] = agreement_with_truth(judge, truth_pairs)
    return summary, records
