"""Losing nothing: kill and resume, half-written checkpoints, crashed arms, concurrent runs, W&B down,
fuzzed data, safe loading. Each test fails if its guarantee breaks."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notus_lab.config.schema import DataConfig, WorldConfig
from notus_lab.data.pairs import binarize
from notus_lab.data.prepare import prepare
from notus_lab.data.world import generate_rows
from tests.helpers import QUICK, ROOT, cli, compose, without_timings

pytestmark = pytest.mark.slow  # trains or builds models: the full suite, not the fast tier

# ---------------------------------------------------------------------------------------------
# Kill a real training process, run the same command again, get the uninterrupted result

LONG = (
    "data.world.rows=300",
    "train.max_steps=40",
    "train.save_steps=1000",
    "train.logging_steps=1",
    "hardware.eval_batch_size=128",
    "model=lora",
    "wandb.mode=disabled",
)


def start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "notus_lab", *LONG, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


def interrupt_mid_training(run_dir: Path, sig: int) -> tuple[int, str]:
    proc = start(run_dir)
    seen, deadline = [], time.time() + 240
    for line in proc.stdout:  # the Trainer logs every step: stop it a few steps in
        seen.append(line)
        if "'epoch'" in line and sum("'epoch'" in s for s in seen) >= 5:
            proc.send_signal(sig)
            break
        assert time.time() < deadline, "training never started"
    out = "".join(seen) + proc.stdout.read()
    return proc.wait(timeout=120), out


def final(run_dir: Path) -> dict:
    return without_timings(json.loads((run_dir / "metrics.json").read_text()))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    assert start(run_dir).wait(timeout=300) == 0
    return final(run_dir)


def test_sigterm_checkpoints_and_the_same_command_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted):
    code, out = interrupt_mid_training(tmp_path, signal.SIGTERM)
    assert code == 130, out[-3000:]
    assert "caught SIGTERM: saving a checkpoint" in out and "run the same command again to resume" in out
    (ckpt,) = (tmp_path / "checkpoints").glob("checkpoint-*")
    assert 5 <= int(ckpt.name.split("-")[1]) < 40 and (ckpt / "trainer_state.json").exists()
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "failed.json").exists()

    again = start(tmp_path)
    out2, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out2[-3000:]
    assert f"resuming from {ckpt}" in out2
    resumed = final(tmp_path)
    assert resumed["train"]["steps"] == 40
    assert _close(resumed, uninterrupted)


def _close(a, b, rel=1e-5) -> bool:
    """Same numbers (to float round-off: resumed optimizer state goes through a save/load)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return all(_close(a[k], b[k], rel) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-7), (a, b)
        return True
    assert a == b, (a, b)
    return True


def test_sigint_also_stops_at_a_step_boundary_with_a_checkpoint(tmp_path):
    code, out = interrupt_mid_training(tmp_path, signal.SIGINT)
    assert code == 130, out[-3000:]
    assert "caught SIGINT" in out and "KeyboardInterrupt" not in out
    (ckpt,) = (tmp_path / "checkpoints").glob("checkpoint-*")
    assert (ckpt / "trainer_state.json").exists() and (ckpt / "adapter_model.safetensors").exists()


def test_the_same_signal_twice_at_once_is_one_request_and_a_later_one_stops_now(monkeypatch):
    """SLURM signals every process of a step and the launcher passes the signal on too: a rank gets it twice.
    That is one request (save, then stop); the same signal later is a second one (stop now)."""
    from notus_lab.train import stop_signals as run_dir

    later = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: later.append(signum))
    try:
        callback = run_dir.stop_on_signal_callback()
        callback.install()
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
        assert callback.received == signal.SIGTERM and later == []  # still saving a checkpoint
        monkeypatch.setattr(run_dir, "SAME_REQUEST_S", 0.0)
        signal.raise_signal(signal.SIGTERM)
        assert later == [signal.SIGTERM]  # handed to the previous handler
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_a_half_written_checkpoint_is_never_picked_up(tmp_path):
    from notus_lab.core.run_dir import latest_checkpoint

    done, torn = tmp_path / "checkpoint-10", tmp_path / "checkpoint-20"
    done.mkdir(), torn.mkdir()
    (done / "trainer_state.json").write_text("{}")
    (torn / "adapter_model.safetensors").write_bytes(b"partial")  # killed before trainer_state.json
    assert latest_checkpoint(tmp_path) == str(done)
    assert latest_checkpoint(tmp_path / "missing") is None


def test_train_resume_false_starts_over(tmp_path):
    from notus_lab.train.pipeline import run

    first = run(compose("model=lora", *QUICK), tmp_path)
    (tmp_path / "checkpoints" / "checkpoint-999").mkdir(parents=True)
    second = run(compose("model=lora", "train.resume=false", *QUICK), tmp_path)
    assert not (tmp_path / "checkpoints" / "checkpoint-999").exists()
    assert without_timings(first) == without_timings(second)


# ---------------------------------------------------------------------------------------------
# Crashes, concurrency, tracking


def test_a_crashing_run_records_its_error_and_releases_the_run_dir(tmp_path, monkeypatch):
    import torch
    from trl import DPOTrainer

    from notus_lab.train.pipeline import run

    def out_of_memory(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(DPOTrainer, "train", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        run(compose("model=lora", *QUICK), tmp_path)
    failed = json.loads((tmp_path / "failed.json").read_text())
    assert failed["error"] == "OutOfMemoryError" and "Tried to allocate" in failed["message"]
    monkeypatch.undo()
    metrics = run(compose("model=lora", *QUICK), tmp_path)  # the lock was released; a retry succeeds
    assert metrics["train"]["steps"] > 0 and not (tmp_path / "failed.json").exists()


def test_two_processes_never_write_into_the_same_run_dir(tmp_path):
    from notus_lab.core.run_dir import run_dir_lock

    with run_dir_lock(tmp_path):  # this process is "training" there
        proc = cli("notus_lab", *QUICK, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 3
    assert f"error: another process is training in {tmp_path}" in proc.stderr
    assert not (tmp_path / "config.yaml").exists()


def test_wandb_down_falls_back_to_offline_and_the_run_finishes(tmp_path):
    env = {"WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "x" * 40}  # nothing listens on port 9
    proc = cli("notus_lab", *QUICK, "wandb.mode=online", "wandb.init_timeout=8", f"hydra.run.dir={tmp_path}", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "W&B online failed" in proc.stderr and "wandb sync" in proc.stderr
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert (tmp_path / "metrics.json").exists()


def test_weights_load_as_safetensors_without_remote_code(monkeypatch):
    from transformers import AutoModelForCausalLM

    from notus_lab.models.loading import base_path, load_causal_lm

    seen = {}

    def spy(path, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    cfg = compose()
    with pytest.raises(RuntimeError, match="stop here"):
        load_causal_lm(cfg, base_path(cfg.base), quantized=False)
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True


# ---------------------------------------------------------------------------------------------
# Fuzzed data: 1,200 malformed UltraFeedback-shaped rows among valid ones


ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
BAD_RATINGS = [
    math.nan,
    math.inf,
    -math.inf,
    -3,
    0,
    6,
    7.5,
    "five",
    "",
    "  ",
    "4 stars",
    None,
    [],
    {},
    True,
    "NaN",
    "inf",
]
BAD_SCORES = [math.nan, math.inf, -1, 0, 11, "ten", "", None, [], True]


def malformed(rng: random.Random, valid: dict, k: int) -> tuple[dict | object, str]:
    """One broken copy of a valid row and the reason the row must be dropped for ('' if only some of its
    completions break and the row may still binarize; '@strategies' when only those strategies read it)."""
    row = json.loads(json.dumps(valid))
    kind = k % 12
    if kind == 0:
        row.pop("instruction")
        return row, "missing_instruction"
    if kind == 1:
        row["instruction"] = rng.choice([None, 17, ["a"], {"q": 1}])
        return row, "missing_instruction"
    if kind == 2:
        row["instruction"] = rng.choice(["", "   ", "\n\t"])
        return row, "empty_instruction"
    if kind == 3:
        row.pop("completions") if rng.random() < 0.5 else row.update(completions=rng.choice([None, "x", 3, {}]))
        return row, "missing_completions"
    if kind == 4:
        return rng.choice([None, 42, "a string", ["list"], 3.5]), "not_an_object"
    if kind == 5:  # every completion's ratings broken
        for c in row["completions"]:
            for a in ASPECTS:
                c["annotations"][a]["Rating"] = rng.choice(BAD_RATINGS)
        return row, "fewer_than_2_valid_completions@mean_rating,multi_pair,aspect"
    if kind == 6:  # every critique score broken
        for c in row["completions"]:
            c["overall_score"] = rng.choice(BAD_SCORES)
        return row, "fewer_than_2_valid_completions@critique,critique_curated"
    if kind == 7:  # all responses the same text (duplicates) or empty
        text = rng.choice(["same answer", "", "   "])
        for c in row["completions"]:
            c["response"] = text
        return row, "fewer_than_2_valid_completions"
    if kind == 8:
        row["completions"] = row["completions"][: rng.choice([0, 1])]
        return row, "fewer_than_2_completions"
    if kind == 9:  # huge and unicode strings are data, not errors
        row["instruction"] = "résumé ☃ 文字 " * 2000 + row["instruction"]
        row["completions"][0]["response"] = "🙂" * 50_000
        return row, ""
    if kind == 10:  # some completions broken in assorted ways, two intact
        row["completions"][0] = rng.choice([None, "text", 5, {"response": 3}])
        row["completions"][1]["annotations"] = rng.choice([None, "x", {"helpfulness": "5"}])
        return row, ""
    row["completions"][2]["response"] = row["completions"][3]["response"]  # a duplicated completion
    return row, ""


def test_fuzzed_rows_never_crash_are_counted_by_reason_and_valid_rows_binarize_as_alone():
    rng = random.Random(7)
    valid = list(generate_rows(WorldConfig(rows=400, seed=5)))
    broken = [malformed(rng, valid[i % len(valid)], i) for i in range(1200)]
    tagged = [(r, "valid") for r in valid] + broken
    rng.shuffle(tagged)
    rows = [r for r, _ in tagged]
    for d in (
        DataConfig(strategy="mean_rating"),
        DataConfig(strategy="critique", tie_policy="keep"),
        DataConfig(strategy="critique_curated"),
        DataConfig(strategy="multi_pair"),
        DataConfig(strategy="aspect", aspect="honesty"),
    ):
        pairs, rep = binarize(rows, d)
        assert rep["rows_in"] == 1600 == rep["rows_with_pairs"] + sum(rep["rows_dropped"].values())
        expected = {}
        for _, why in broken:
            why, _, only = why.partition("@")
            if why and (not only or d.strategy in only.split(",")):
                expected[why] = expected.get(why, 0) + 1
        for why, n in expected.items():  # every bad row is counted, under its own reason
            assert rep["rows_dropped"].get(why, 0) >= n, (d.strategy, why, rep["rows_dropped"])
        assert {"malformed_completion", "empty_response", "duplicate_response"} <= set(rep["completions_dropped"])
        # every valid row gives exactly the pairs it gives alone
        got = {}
        for p in pairs:
            got.setdefault(p["row_index"], []).append({k: v for k, v in p.items() if k != "row_index"})
        for i, (row, tag) in enumerate(tagged):
            if tag == "valid":
                alone = [{k: v for k, v in p.items() if k != "row_index"} for p in binarize([row], d)[0]]
                assert got.get(i, []) == alone, (d.strategy, i)


def test_fuzzed_file_goes_through_the_whole_data_stage(tmp_path):
    rng = random.Random(11)
    valid = list(generate_rows(WorldConfig(rows=200, seed=9)))
    lines = [json.dumps(r) for r in valid] + [json.dumps(malformed(rng, valid[i % 200], i)[0]) for i in range(1000)]
    lines += ["{not json", "", "[1, 2", "\x00\x01", '{"instruction": "x", "completions": [NaN]}'] * 4
    rng.shuffle(lines)
    f = tmp_path / "fuzz.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = prepare(DataConfig(strategy="mean_rating", source=str(f)))
    rep = out["report"]
    assert rep["rows_unreadable"].get("unparseable_json", 0) >= 12
    assert rep["rows_in"] + rep["held_out"]["rows_in"] == len(out["rows"])
    assert len(out["train_pairs"]) >= 150


def test_a_finished_run_of_other_settings_or_other_code_is_never_handed_back(tmp_path):
    """The run dir is the command, but defaults and code change under it: relaunching into a finished run
    whose science or code differs says what changed, in one line, instead of returning stale metrics."""
    from notus_lab.core.errors import ConfigError
    from notus_lab.train.pipeline import run

    small = ("data.world.rows=200", "train.max_steps=2", "eval.signals=[]", "judge=none", "wandb.mode=disabled")
    first = run(compose(*small), tmp_path)
    assert run(compose(*small, "hardware.threads=1", "wandb.mode=offline"), tmp_path) == first  # not science
    with pytest.raises(
        ConfigError,
        match=r"^hydra.run.dir=.* is invalid: it holds a run made with another config "
        r"\(beta 0.1 -> 0.2\); allowed train.resume=false",
    ):
        run(compose(*small, "beta=0.2"), tmp_path)
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert len(provenance["science_fingerprint"]) == 16
    assert len(provenance["code_version"]) == 16 and provenance["git_commit"]
    (tmp_path / "provenance.json").write_text(json.dumps({**provenance, "code_version": "0" * 16}))
    with pytest.raises(ConfigError, match=r"another code \(0000000000000000 -> [0-9a-f]{16}; commits "):
        run(compose(*small), tmp_path)
    again = run(compose(*small, "train.resume=false"), tmp_path)  # starting over is one setting away
    assert again["train"]["steps"] == 2


def test_the_report_flags_runs_from_different_code_versions(tmp_path):
    from notus_lab.study import findings as R

    for i, (data, commit) in enumerate([("critique", "a" * 40), ("mean_rating", "b" * 40)]):
        run_dir = tmp_path / f"r{i}"
        (run_dir / ".hydra").mkdir(parents=True)
        (run_dir / ".hydra" / "overrides.yaml").write_text(f"- data={data}\n")
        (run_dir / "config.yaml").write_text("beta: 0.1\n")
        (run_dir / "metrics.json").write_text(json.dumps({"truth_accuracy": 0.7 + i / 10}))
        (run_dir / "provenance.json").write_text(json.dumps({"git_commit": commit, "code_version": commit[:16]}))
    out = R.write_report(tmp_path)
    assert out["code_versions"] == {"a" * 16: 1, "b" * 16: 1}
    text = (tmp_path / "report.md").read_text()
    assert "**Runs from 2 code versions**" in text and "| `aaaaaaaaaaaa` | 1: `r0` |" in text
