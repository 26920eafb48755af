"""Short real DPO runs (TRL DPOTrainer on the tiny model) that assert on what a run leaves behind."""

import json
from pathlib import Path

import pytest

from notus_lab.models.loading import base_path
from notus_lab.train.pipeline import run
from tests.helpers import QUICK, cli, compose, without_timings

pytestmark = pytest.mark.slow  # trains or builds models: the full suite, not the fast tier

# planted at run time, shaped like real ones (an HF token is hf_ + 30+ letters), never a literal in source
FAKE_WANDB_KEY = "wandbkey_" + "0123456789abcdef" * 2
FAKE_HF_TOKEN = "hf" + "_" + "FAKE" * 7 + "123456"


def text_artefacts(run_dir: Path):
    for p in run_dir.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".yaml", ".md", ".log", ".txt", ".jinja", ".wandb", ""):
            yield p


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    import os

    os.environ["WANDB_API_KEY"], os.environ["HF_TOKEN"] = FAKE_WANDB_KEY, FAKE_HF_TOKEN
    run_dir = tmp_path_factory.mktemp("full")
    try:
        metrics = run(compose("model=full", *QUICK), run_dir)
    finally:
        os.environ.pop("WANDB_API_KEY"), os.environ.pop("HF_TOKEN")
    return run_dir, metrics


def test_full_run_leaves_every_artefact(full_run):
    run_dir, metrics = full_run
    assert (run_dir / "model" / "model.safetensors").stat().st_size > 10_000
    assert not (run_dir / "model" / "pytorch_model.bin").exists()  # weights are safetensors only
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report["rows_in"] + report["held_out"]["prompts_rows"] == 300
    assert report["pairs_out"] == report["rows_in"] - sum(report["rows_dropped"].values()) > 200
    assert 0.3 < report["chosen_differs_critique_vs_mean_rating"] < 0.7
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for signal in ("critique", "mean_rating", "truth"):
        assert set(on_disk["eval"][signal]) >= {"loss", "rewards/accuracies", "rewards/margins"}
    assert on_disk["truth_accuracy"] == on_disk["eval"]["truth"]["rewards/accuracies"]
    assert on_disk["train"]["steps"] > 0 and "rewards/accuracies" in on_disk["train"]
    # how it ran, read off what was built: attention, precision, the optimizer that stepped
    assert on_disk["attention"] == "sdpa" and on_disk["precision"]["policy_weights"] == "float32"
    assert (on_disk["optimizer"]["class"], on_disk["optimizer"]["lr"]) == ("AdamW", 2e-4)
    timings = on_disk["timings_s"]  # where the wall time went, stage by stage
    assert set(timings) == {"data", "model", "train", "evaluate", "save", "generate", "reference_precompute", "total"}
    stages = [v for k, v in timings.items() if k not in ("total", "reference_precompute")]
    assert timings["total"] >= sum(stages) - 0.005 * (len(stages) + 1)  # each figure is rounded to 0.01 s
    compute = on_disk["compute"]  # what the run cost: wall seconds x the cores it held
    assert compute["device"] == "cpu" and compute["unit"] == "CPU core-hours" and compute["wall_s"] == timings["total"]
    assert compute["device_hours"] == pytest.approx(compute["wall_s"] * compute["devices"] / 3600, rel=1e-3)
    assert compute["devices"] == on_disk["torch_threads"] * on_disk["world_size"]
    assert timings["train"] > 0 and timings["evaluate"] > 0 and timings["reference_precompute"] == 0  # not asked for
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["packages"]["trl"] and len(prov["data_fingerprint"]) == 16 and len(prov["base_fingerprint"]) == 16
    card = (run_dir / "README.md").read_text()
    assert "mean_rating" in card and f"{on_disk['eval']['truth']['rewards/accuracies']:.4f}" in card
    assert "beta: 0.1" in (run_dir / "config.yaml").read_text()


def test_wandb_offline_run_files_are_written(full_run):
    run_dir, _ = full_run
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))


def test_secrets_never_land_in_artefacts(full_run):
    run_dir, _ = full_run
    for p in text_artefacts(run_dir):
        data = p.read_bytes()
        assert FAKE_WANDB_KEY.encode() not in data and FAKE_HF_TOKEN.encode() not in data, p


def test_lora_run_saves_an_adapter_and_merges_on_request(tmp_path):
    metrics = run(compose("model=lora", "export.merge=true", *QUICK), tmp_path)
    assert (tmp_path / "model" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "model" / "model.safetensors").exists()
    assert metrics["eval"]["truth"]["loss"] > 0
    # the merged export computes what base + adapter computes, and is not just the base
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        adapted = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "model")(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(ids).logits
        base = AutoModelForCausalLM.from_pretrained(base_path(compose().base))(ids).logits
    assert torch.allclose(merged, adapted, atol=1e-5)
    assert (merged - base).abs().max() > 1e-6


def test_qlora_quantizes_the_base_to_4bit_nf4_on_cpu(tmp_path):
    import bitsandbytes as bnb

    from notus_lab.models.loading import load_models

    cfg = compose("model=qlora", *QUICK)
    policy, reference, peft_config = load_models(cfg, base_path(cfg.base))
    assert reference is None and peft_config.r == 128
    assert policy.is_loaded_in_4bit and any(isinstance(m, bnb.nn.Linear4bit) for m in policy.modules())
    metrics = run(cfg, tmp_path)
    assert (tmp_path / "model" / "adapter_model.safetensors").exists() and metrics["train"]["steps"] > 0


def test_full_fine_tuning_gets_an_explicit_frozen_reference():
    from notus_lab.models.loading import load_models

    cfg = compose("model=full")
    policy, reference, peft_config = load_models(cfg, base_path(cfg.base))
    assert peft_config is None and reference is not None and reference is not policy
    assert not any(p.requires_grad for p in reference.parameters())


def test_same_command_twice_gives_identical_metrics(tmp_path):
    a = run(compose("model=lora", *QUICK), tmp_path / "a")
    b = run(compose("model=lora", *QUICK), tmp_path / "b")
    assert without_timings(a) == without_timings(b)


def test_default_run_writes_better_answers_than_its_sft_reference(tmp_path):
    """The embedded default (3,000 rows, 3 epochs, judged by the truth): the trained model beats the SFT
    base it started from on held-out prompts, without collapsing; reward accuracy is only the diagnostic."""
    metrics = run(compose(), tmp_path)
    g = metrics["generation"]
    assert g["n_prompts"] == 300 and g["judge"] == "truth"
    assert g["win_rate_vs_reference"] > 0.5 and g["policy_score"] > g["reference_score"]
    assert g["policy_distinct_2"] >= 0.5 * g["reference_distinct_2"] and g["policy_top_word_share"] < 0.3
    assert metrics["truth_accuracy"] > 0.7, metrics["eval"]


def test_cli_runs_end_to_end_and_a_finished_run_is_not_retrained(tmp_path):
    out = tmp_path / "run"
    proc = cli(
        "notus_lab", "data=critique", "model=lora", "beta=0.05", "optimizer=adamw", *QUICK, f"hydra.run.dir={out}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "critique" in (out / "README.md").read_text() and metrics["train"]["steps"] > 0
    before = (out / "metrics.json").stat().st_mtime_ns
    again = cli(
        "notus_lab", "data=critique", "model=lora", "beta=0.05", "optimizer=adamw", *QUICK, f"hydra.run.dir={out}"
    )
    assert again.returncode == 0 and "already finished" in again.stdout + again.stderr
    assert (out / "metrics.json").stat().st_mtime_ns == before


def test_generate_exports_alpaca_eval_and_multi_turn_mt_bench(full_run, tmp_path):
    run_dir, _ = full_run
    questions = tmp_path / "question.jsonl"
    questions.write_text(
        json.dumps({"question_id": 81, "category": "writing", "turns": ["plan the river", "now shorter"]})
        + "\n"
        + json.dumps({"question_id": 82, "category": "roleplay", "turns": ["review the violin"]})
        + "\n"
    )
    proc = cli(
        "notus_lab.generate",
        str(run_dir),
        "--mt-bench",
        str(questions),
        "--max-new-tokens",
        "8",
        "--limit",
        "6",
        "--model-id",
        "tiny-dpo",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    alpaca = json.loads((run_dir / "generations" / "alpaca_eval.json").read_text())
    held_out = json.loads((run_dir / "data_report.json").read_text())["held_out"]["prompts_rows"]
    assert len(alpaca) == min(6, held_out)
    assert all(
        set(a) == {"instruction", "output", "generator", "dataset"} and a["generator"] == "tiny-dpo" for a in alpaca
    )
    assert all(isinstance(a["output"], str) for a in alpaca)
    # FastChat names the model by the answer file's name: data/mt_bench/model_answer/<model_id>.jsonl
    answer_dir = run_dir / "generations" / "model_answer"
    assert sorted(p.name for p in answer_dir.iterdir()) == ["tiny-dpo.jsonl"]
    answers = [json.loads(line) for line in (answer_dir / "tiny-dpo.jsonl").read_text().splitlines()]
    assert [a["question_id"] for a in answers] == [81, 82] and all(a["model_id"] == "tiny-dpo" for a in answers)
    assert [len(a["choices"][0]["turns"]) for a in answers] == [2, 1]  # one answer per turn
    common = pytest.importorskip("fastchat.llm_judge.common")  # FastChat's own reader, where it installs
    assert {
        q: len(a["choices"][0]["turns"]) for q, a in common.load_model_answers(str(answer_dir))["tiny-dpo"].items()
    } == {81: 2, 82: 1}


def test_benchmark_presets_decode_as_the_published_numbers_were_made(full_run, tmp_path):
    from notus_lab.judging.benchmarks import ALPACA_EVAL, MT_BENCH_TEMPERATURE, mt_bench_decoding

    fastchat = pytest.importorskip("fastchat.llm_judge.common")
    assert MT_BENCH_TEMPERATURE == fastchat.temperature_config  # FastChat's own table
    assert mt_bench_decoding("math", 1024) == {
        "max_new_tokens": 1024,
        "do_sample": False,
        "temperature": 0.0,
        "top_p": 1.0,
    }
    assert mt_bench_decoding("writing", 1024)["do_sample"] and mt_bench_decoding("stem", 1024)["temperature"] == 0.1
    run_dir, _ = full_run
    questions = tmp_path / "question.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"question_id": q, "category": c, "turns": [t, "and then?"]}) + "\n"
            for q, c, t in (
                (81, "writing", "plan the river"),
                (111, "math", "count the violins"),
                (121, "coding", "review the bridge"),
            )
        )
    )
    proc = cli(
        "notus_lab.generate",
        str(run_dir),
        "--benchmark",
        "mt_bench",
        "--mt-bench",
        str(questions),
        "--max-new-tokens",
        "6",
        "--model-id",
        "tiny-mt",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    settings = json.loads((run_dir / "generations" / "settings.json").read_text())
    assert settings["benchmark"] == "mt_bench" and settings["mt_bench"]["temperature_by_category"]["coding"] == 0.0
    assert settings["dtype"] == "torch.float32" and "alpaca_eval" not in settings
    answers = fastchat.load_model_answers(str(run_dir / "generations" / "model_answer"))["tiny-mt"]
    assert sorted(answers) == [81, 111, 121] and all(len(a["choices"][0]["turns"]) == 2 for a in answers.values())
    proc = cli(
        "notus_lab.generate",
        str(run_dir),
        "--benchmark",
        "alpaca_eval",
        "--limit",
        "5",
        "--max-new-tokens",
        "6",
        "--model-id",
        "tiny-ae",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    settings = json.loads((run_dir / "generations" / "settings.json").read_text())
    assert settings["alpaca_eval"] == {**ALPACA_EVAL, "max_new_tokens": 6} and ALPACA_EVAL["max_new_tokens"] == 2048
    utils = pytest.importorskip("alpaca_eval.utils")  # alpaca_eval's own loader of --model_outputs
    outputs = utils.load_or_convert_to_dataframe(str(run_dir / "generations" / "alpaca_eval.json"))
    assert list(outputs["generator"].unique()) == ["tiny-ae"] and len(outputs) == 5


def test_length_batched_generation_returns_each_answer_to_its_own_prompt(full_run):
    from omegaconf import OmegaConf

    from notus_lab.judging.benchmarks import run_config
    from notus_lab.judging.generation import complete, load_policy
    from notus_lab.models.loading import base_path

    run_dir, _ = full_run
    cfg = run_config(run_dir)
    model, tokenizer = load_policy(cfg, run_dir / "model", base_path(cfg.base))
    prompts = ["plan the river near the old bridge at night please", "hi", "review the violin", "count"]
    g = OmegaConf.merge(cfg.generation, {"do_sample": False, "max_new_tokens": 6, "batch_size": 2})
    together = complete(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts], g)
    alone = [complete(model, tokenizer, [[{"role": "user", "content": p}]], g)[0] for p in prompts]
    assert together == alone  # greedy: the same answer whatever batch (and padding) it was in


def test_generate_rejects_a_dir_without_a_model(tmp_path):
    proc = cli("notus_lab.generate", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: run_dir={str(tmp_path)!r} is invalid: allowed a finished run dir containing model/"
    )


def test_qlora_under_zero3_or_fsdp_stores_4bit_weights_shardably_and_lets_the_engine_place_them(monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    from notus_lab.models.loading import load_causal_lm, quantization_config

    seen = {}
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda path, **kw: seen.update(kw))
    for profile, storage in (("h100_x8", torch.bfloat16), ("fsdp_x8", torch.bfloat16), ("gpu", torch.uint8)):
        cfg = compose("model=qlora", f"hardware={profile}", "train.global_batch_size=64")
        assert quantization_config(cfg).bnb_4bit_quant_storage == storage
        seen.clear()
        load_causal_lm(cfg, "unused", quantized=True, trainable=True)
        assert ("device_map" in seen) == (profile == "gpu")  # ZeRO-3 / FSDP place the shards themselves


def test_a_run_ends_with_its_headline_and_without_third_party_noise(tmp_path):
    quiet = cli("notus_lab", *QUICK, "wandb.mode=disabled", f"hydra.run.dir={tmp_path / 'q'}")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    out = quiet.stdout + quiet.stderr
    metrics = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert f"notus_lab: finished {tmp_path / 'q'}" in out
    assert f"judged win rate vs its SFT reference: {metrics['generation']['win_rate_vs_reference']:.3f}" in out
    assert "next: python -m notus_lab.generate" in out
    assert "kernels-community" not in out and "is_gradient_checkpointing" not in out
    loud = cli("notus_lab", "-v", *QUICK, "wandb.mode=disabled", f"hydra.run.dir={tmp_path / 'v'}")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert "is_gradient_checkpointing" in loud.stdout + loud.stderr  # -v hides nothing
