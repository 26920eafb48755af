"""Judges: who decides whether the policy's answer beats the reference's (the AlpacaEval of notus_lab).

- `truth`: the bundled world's quality function read off the generated text (world.text_quality).
- `reward_model`: any sequence-classification reward model (a local dir, a hub id + revision, or the
  `tiny` one trained here by notus_lab/reward_model.py), scoring the conversation in its chat template.

A judge scores answers; a pair is won by the higher score, and equal scores are a tie (half a win, as
AlpacaEval counts them).
"""

from __future__ import annotations

from notus_lab.core import chat
from notus_lab.data.world import text_quality


class TruthJudge:
    name = "truth"

    def score(self, prompts: list[str], answers: list[str]) -> list[float]:
        return [text_quality(p, a) for p, a in zip(prompts, answers)]


class RewardModelJudge:
    name = "reward_model"

    def __init__(
        self,
        path: str,
        revision: str | None = None,
        trust_remote_code: bool = False,
        device: str = "cpu",
        batch_size: int = 64,
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        self.model = (
            AutoModelForSequenceClassification.from_pretrained(
                # fp32 whatever the run's precision: bf16 resolves a score near 2-4 only to ~0.016, and close
                # answers would tie
                path,
                revision=revision,
                trust_remote_code=trust_remote_code,
                dtype=torch.float32,
                use_safetensors=True,
            )
            .to(device)
            .eval()
        )
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size = batch_size

    def score(self, prompts: list[str], answers: list[str]) -> list[float]:
        import torch

        texts = [
            self.tokenizer.apply_chat_template(
                chat.conversation(p, a),
                tokenize=False,
            )
            for p, a in zip(prompts, answers)
        ]
        scores = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[i : i + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.model.device)
            with torch.no_grad():
                scores += self.model(**enc).logits[:, 0].float().tolist()
        return scores


def winner(policy_score: float, reference_score: float) -> str:
    return "policy" if policy_score > reference_score else "reference" if reference_score > policy_score else "tie"


def win_rate(winners: list[str]) -> float:
    """AlpacaEval's count: a win is 1, a tie 0.5."""
    return (sum(w == "policy" for w in winners) + 0.5 * sum(w == "tie" for w in winners)) / max(len(winners), 1)


def agreement_with_truth(judge, pairs: list[dict]) -> float | None:
    """How often the judge prefers the truly better of two held-out world completions (ties half)."""
    if not pairs:
        return None
    prompts = [p["prompt"] for p in pairs]
    chosen, rejected = (
        judge.score(prompts, [p["chosen"] for p in pairs]),
        judge.score(prompts, [p["rejected"] for p in pairs]),
    )
    return round(win_rate([winner(c, r) for c, r in zip(chosen, rejected)]), 4)
