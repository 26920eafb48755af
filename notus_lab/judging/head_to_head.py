"""Judged generations: the trained policy and its SFT reference answer the held-out prompts, a judge
compares each pair of answers, and the run records who won."""

from __future__ import annotations

from notus_lab.judging.generation import answer_prompts, device_for, text_stats
from notus_lab.judging.judges import (
    RewardModelJudge,
    TruthJudge,
    agreement_with_truth,
    win_rate,
    winner,
)
from notus_lab.judging.reward_judge import build_tiny_reward_model


def make_judge(cfg, device: str = "cpu"):
    """The run's judge, or None for judge=none."""
    j = cfg.judge
    if j.name == "none":
        return None
    if j.name == "truth":
        return TruthJudge()
    path = j.model
    if path == "tiny":
        path = str(build_tiny_reward_model(cfg.base))
    return RewardModelJudge(path, j.revision, j.trust_remote_code, device, j.batch_size)


def judged_generations(
    cfg,
    model_dir,
    base: str,
    prompts: list[str],
    truth_pairs: list[dict] | None = None,
    base_fingerprint: str | None = None,
):
    """(summary for metrics.json["generation"], one record per prompt x sample for generations.jsonl).
    `base_fingerprint` lets arms that share the base share the reference's answers (generation.answer_prompts)."""
    g = cfg.generation
    prompts = prompts[: g.max_prompts] if g.max_prompts else prompts
    policy_answers, reference_answers, tokenizer = answer_prompts(cfg, model_dir, base, prompts, base_fingerprint)
    judge = make_judge(cfg, device_for(cfg))
    flat = [
        (p, k, pa, ra)
        for p, pas, ras in zip(prompts, policy_answers, reference_answers)
        for k, (pa, ra) in enumerate(zip(pas, ras))
    ]
    flat_prompts = [p for p, *_ in flat]
    policy_scores = judge.score(flat_prompts, [pa for _, _, pa, _ in flat])
    reference_scores = judge.score(flat_prompts, [ra for *_, ra in flat])
    records = [
        {
            "prompt": p,
            "sample": k,
            "reference": ra,
            "policy": pa,
            "reference_score": rs,
            "policy_score": ps,
            "winner": winner(ps, rs),
        }
        for (p, k, pa, ra), ps, rs in zip(flat, policy_scores, reference_scores)
    ]
    winners = [r["winner"] for r in records]
    policy_stats = text_stats([r["policy"] for r in records], tokenizer)
    reference_stats = text_stats([r["reference"] for r in records], tokenizer)
    mean = lambda xs: round(sum(xs) / max(len(xs), 1), 4)  # noqa: E731
    summary = {
        "judge": judge.name,
        "n_prompts": len(prompts),
        "samples_per_prompt": len(policy_answers[0]) if prompts else 0,
        "win_rate_vs_reference": round(win_rate(winners), 4),
        "wins": winners.count("policy"),
        "losses": winners.count("reference"),
        "ties": winners.count("tie"),
        "policy_score": mean(policy_scores),
        "reference_score": mean(reference_scores),
        **{f"policy_{k}": v for k, v in policy_stats.items()},
        **{f"reference_{k}": v for k, v in reference_stats.items()},
        "decoding": {k: g[k] for k in ("do_sample", "temperature", "top_p", "max_new_tokens", "seed")},
    }
    if truth_pairs:  # how far to trust this judge: its own agreement with the world's truth
        summary["judge_truth_agreement"] = agreement_with_truth(judge, truth_pairs)
    return summary, records
