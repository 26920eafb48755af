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
        evals[name] = {
            "loss": entry.get(f"eval_{name}_loss"),
            **{k: entry[f"eval_{k}"] for k in HEADLINE[1:] if f"eval_{k}" in entry},
        }
    history = {
        name: [
            [h["step"], h["eval_rewards/accuracies"]]
            for h in log_history
            if f"eval_{name}_loss" in h and "eval_rewards/accuracies" in h and "step" in h
        ]
        for name in eval_names
    }
    out = {"train": train, "eval": evals, "eval_history": {k: v for k, v in history.items() if v}}
    if "truth" in evals:  # the bundled world knows which completion is really better
        out["truth_accuracy"] = evals["truth"].get("rewards/accuracies")
    return out
