"""Judged generations: the contract other tools rely on (metrics.json["generation"], generations.jsonl,
the W&B summary and table), the judges themselves, and a reward model trained here as a judge."""

import json

import pytest

from notus_lab.data.world import text_quality
from notus_lab.judging.judges import TruthJudge, win_rate, winner
from notus_lab.train.pipeline import run
from tests.helpers import QUICK, cli, compose

pytestmark = pytest.mark.slow  # trains or builds models: the full suite, not the fast tier

GENERATION_KEYS = {
    "judge",
    "n_prompts",
    "samples_per_prompt",
    "win_rate_vs_reference",
    "policy_score",
    "reference_score",
    "policy_distinct_2",
    "reference_distinct_2",
    "policy_mean_tokens",
    "reference_mean_tokens",
}
RECORD_KEYS = {"prompt", "sample", "reference", "policy", "reference_score", "policy_score", "winner"}


def records_of(run_dir):
    return [json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def lora_and_full(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("judged")
    return {name: (tmp / name, run(compose(f"model={name}", *QUICK), tmp / name)) for name in ("lora", "full")}


def test_metrics_and_generations_file_keep_the_contract(lora_and_full):
    from notus_lab.data.prepare import prepare

    run_dir, metrics = lora_and_full["full"]
    g = metrics["generation"]
    assert GENERATION_KEYS <= set(g) and g["judge"] == "truth" and g["samples_per_prompt"] == 2
    cfg = compose(*QUICK)
    prepared = prepare(cfg.data)
    assert g["n_prompts"] == len(prepared["held_out_prompts"]) == 30  # every held-out prompt of the split
    records = records_of(run_dir)
    assert len(records) == g["n_prompts"] * g["samples_per_prompt"]
    assert [r["prompt"] for r in records[::2]] == prepared["held_out_prompts"]
    for r in records:
        assert set(r) == RECORD_KEYS
        assert r["policy_score"] == text_quality(r["prompt"], r["policy"])  # the judge's own reading
        assert r["reference_score"] == text_quality(r["prompt"], r["reference"])
        assert r["winner"] == winner(r["policy_score"], r["reference_score"])
    assert g["win_rate_vs_reference"] == pytest.approx(win_rate([r["winner"] for r in records]), abs=1e-4)
    assert g["policy_score"] == pytest.approx(sum(r["policy_score"] for r in records) / len(records), abs=1e-4)
    assert g["wins"] + g["losses"] + g["ties"] == len(records)
    assert g["judge_truth_agreement"] == 1.0  # the truth agrees with itself on held-out world pairs
    assert "Win rate vs the reference" in (run_dir / "README.md").read_text()
    assert "generate" in metrics["timings_s"]


def test_the_reference_is_the_sft_base_for_full_and_lora_alike(lora_and_full):
    """Same base, same decoding seed: the reference answers do not depend on what was trained, while the
    policies' answers do."""
    (lora_dir, _), (full_dir, _) = lora_and_full["lora"], lora_and_full["full"]
    lora, full = records_of(lora_dir), records_of(full_dir)
    assert [r["reference"] for r in lora] == [r["reference"] for r in full]
    assert [r["policy"] for r in lora] != [r["policy"] for r in full]


def test_wandb_gets_the_generation_summary_and_a_table(lora_and_full):
    from tests.wandb_records import summary

    run_dir, metrics = lora_and_full["full"]
    (wandb_file,) = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    logged = summary(wandb_file)
    assert logged["generation/win_rate_vs_reference"] == pytest.approx(metrics["generation"]["win_rate_vs_reference"])
    (table,) = list((run_dir / "wandb").glob("offline-run-*/files/media/table/generations_*.table.json"))
    data = json.loads(table.read_text())
    assert data["columns"] == ["prompt", "sample", "reference", "policy", "reference_score", "policy_score", "winner"]
    assert [row[3] for row in data["data"]] == [r["policy"] for r in records_of(run_dir)][: len(data["data"])]


def test_truth_judge_scores_texts_and_ties_count_half():
    judge = TruthJudge()
    prompt = "explain the river , the violin and the harbor briefly ."
    assert judge.score([prompt, prompt], ["", "precise " * 30]) == [0.0, 0.0]
    assert win_rate(["policy", "reference", "tie", "tie"]) == 0.5 and win_rate(["policy", "tie"]) == 0.75


def test_a_reward_model_trained_here_judges_a_run(tmp_path):
    rm = tmp_path / "rm"
    built = cli("notus_lab.reward_model", "--out", str(rm), "--rows", "600")
    assert built.returncode == 0, built.stderr[-3000:]
    card = json.loads((rm / "judge_card.json").read_text())
    assert card["labels"] == "truth" and card["train_pairs"] > 1000
    assert card["truth_agreement_held_out"] > 0.6  # it learned something of the truth, and says how much
    metrics = run(compose("judge=reward_model", f"judge.model={rm}", *QUICK), tmp_path / "run")
    g = metrics["generation"]
    assert g["judge"] == "reward_model" and GENERATION_KEYS <= set(g)
    assert 0.6 < g["judge_truth_agreement"] <= 1.0
    for r in records_of(tmp_path / "run"):
        assert r["winner"] == winner(r["policy_score"], r["reference_score"])
        assert isinstance(r["policy_score"], float)
    import torch

    from notus_lab.judging.head_to_head import make_judge

    # a bf16 run's judge still scores in fp32: bf16 would tie answers whose scores differ by < ~0.016
    judge = make_judge(compose("judge=reward_model", f"judge.model={rm}", "hardware.precision=bf16"))
    assert next(judge.model.parameters()).dtype == torch.float32


@pytest.mark.parametrize(
    "args, message",
    [
        (["judge=reward_model", "judge.model=/nonexistent/rm"], "judge.model='/nonexistent/rm' is invalid"),
        (
            ["data.source=org/name"],
            "judge.name='truth' is invalid: allowed reward_model or none with data.source='org/name'",
        ),
        (["generation.top_p=0"], "generation.top_p=0.0 is invalid"),
    ],
)
def test_bad_judge_or_generation_settings_are_one_line(args, message):
    proc = cli("notus_lab", *args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
