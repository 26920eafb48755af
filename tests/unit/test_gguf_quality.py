"""The GGUF quality table's statistics and its input checks, without llama.cpp: the interval is checked by
simulation through judge_files (the function the export calls) on planted files with a known win rate."""

import json
import math

import numpy as np
import pytest

from notus_lab.core.errors import ConfigError
from notus_lab.judging.quantized import head_to_head, judge_files, prompt_interval
from notus_lab.models.gguf import parse_quantizations, pre_tokenizer


class ScoreJudge:
    """Scores an answer by the number it carries: the planted quality."""

    name = "planted"

    def score(self, prompts, answers):
        return [float(a) for a in answers]


def planted_files(rng, prompts: int, samples: int, mean: float, spread: float, p_tie: float = 0.3):
    """A quantized file against f16 on prompts drawn from a population. Each prompt leans towards one file by its
    own amount (uniform around `mean`, sd `spread`), shared by its samples as a prompt's are; ties come at rate
    p_tie. The true win rate is the population's: p_tie / 2 + (1 - p_tie)(0.5 + mean). Returns (answered, truth)."""
    lean = mean + spread * np.sqrt(3) * rng.uniform(-1, 1, prompts)
    truth = p_tie / 2 + (1 - p_tie) * (0.5 + mean)
    tie = rng.random((prompts, samples)) < p_tie
    win = (rng.random((prompts, samples)) < 0.5 + lean[:, None]) & ~tie
    quant = np.where(tie, 1.0, np.where(win, 2.0, 0.0))
    base = np.ones((prompts, samples))
    as_answers = lambda a: {"answers": [[str(x) for x in row] for row in a]}  # noqa: E731
    return {"f16": as_answers(base), "q": as_answers(quant)}, truth


# (prompts, samples per prompt, mean lean, its spread over prompts): an even match, a real loss, prompts that lean
DESIGNS = [(20, 1, 0.0, 0.0), (40, 2, -0.1, 0.15), (100, 2, 0.0, 0.25), (300, 4, 0.05, 0.1), (30, 8, 0.1, 0.2)]


@pytest.mark.parametrize("prompts,samples,mean,spread", DESIGNS)
def test_the_interval_against_f16_covers_95_percent_of_planted_win_rates(prompts, samples, mean, spread):
    rng = np.random.default_rng(prompts * 7 + samples)
    covered, reps = 0, 1500
    for _ in range(reps):
        answered, truth = planted_files(rng, prompts, samples, mean, spread)
        got = judge_files(ScoreJudge(), [f"p{i}" for i in range(prompts)], answered, None, "f16")["q"]["vs_f16"]
        low, high = got["ci"]
        covered += low <= truth <= high
    assert 0.93 <= covered / reps <= 0.97, covered / reps


def test_negative_control_pairs_counted_as_independent_undercover_when_prompts_lean():
    """Why the samples of a prompt are averaged first: the same data as independent answer pairs (a t over all
    P x n pairs) covers well under 95 % once prompts lean, because a prompt's samples share its lean."""
    from notus_lab.core.intervals import t_interval

    rng = np.random.default_rng(5)
    ours = naive = 0
    reps = 800
    for _ in range(reps):
        answered, truth = planted_files(rng, 40, 4, 0.0, 0.25, p_tie=0.0)
        q = np.array([[float(x) for x in row] for row in answered["q"]["answers"]]) / 2
        _, lo, hi = t_interval(list(q.ravel()))
        naive += lo <= truth <= hi
        got = prompt_interval(list(q.mean(axis=1)))
        ours += got["ci"][0] <= truth <= got["ci"][1]
    assert ours / reps >= 0.93
    assert naive / reps < 0.90, naive / reps


def test_negative_control_one_seed_per_sample_shared_by_every_prompt_breaks_the_interval():
    """Why every prompt's sample has a seed of its own (quantized.sample_seed): where sample k draws from one
    random stream for every prompt, a lucky stream lifts all prompts at once and the interval over prompts misses
    far more than 5 %; with a seed per prompt and sample the same luck is spread over prompts and it holds."""
    rng = np.random.default_rng(11)
    prompts, samples, reps = 200, 2, 600
    missed = {"shared": 0, "own": 0}
    for _ in range(reps):
        for design in missed:
            luck = rng.normal(0, 0.1, samples if design == "shared" else (prompts, samples))
            p_win = np.clip(0.5 + np.broadcast_to(luck, (prompts, samples)), 0, 1)
            q = np.where(rng.random((prompts, samples)) < p_win, 2.0, 0.0)
            answered = {"f16": {"answers": [["1"] * samples] * prompts}, "q": {"answers": q.astype(str).tolist()}}
            got = judge_files(ScoreJudge(), [f"p{i}" for i in range(prompts)], answered, None, "f16")["q"]["vs_f16"]
            missed[design] += not got["ci"][0] <= 0.5 <= got["ci"][1]
    assert missed["own"] / reps <= 0.07, missed
    assert missed["shared"] / reps > 0.2, missed


def test_every_prompt_and_sample_has_its_own_seed_and_every_file_the_same_ones():
    from notus_lab.judging.quantized import sample_seed

    prompts = [f"the river and the {i} ." for i in range(300)]
    seeds = [sample_seed(0, p, k) for p in prompts for k in range(4)]
    assert len(set(seeds)) == len(seeds)
    assert seeds == [sample_seed(0, p, k) for p in prompts for k in range(4)]
    assert sample_seed(1, prompts[0], 0) != sample_seed(0, prompts[0], 0)  # generation.seed moves them all


@pytest.mark.parametrize(
    "per_prompt,why",
    [([0.5] * 30, "every answer tied"), ([1.0] * 30, "every prompt won"), ([0.7], "one prompt")],
)
def test_degenerate_outcomes_give_no_interval_and_no_flag_never_a_zero_width_one(per_prompt, why):
    from notus_lab.judging.quantized import flag

    got = prompt_interval(per_prompt)
    assert got["ci"] is None and got["p_value"] is None, why
    assert not math.isnan(got["win_rate"])
    flag({"q": got})
    assert got["differs"] is False and got["adjusted_ci"] is None


def test_a_clear_loss_is_flagged_and_counts_wins_ties_losses():
    scores = [[0.0, 1.0]] * 10 + [[0.0, 0.0]] * 20  # 10 prompts split, 20 lost on both samples
    other = [[1.0, 1.0]] * 30
    from notus_lab.judging.quantized import flag

    got = head_to_head(scores, other)
    flag({"q": got})
    assert got["differs"] and got["ci"][1] < 0.5 and got["adjusted_ci"] == got["ci"]  # one file: Holm is nominal
    assert (got["wins"], got["ties"], got["losses"]) == (0, 10, 50)
    assert got["win_rate"] == pytest.approx((10 * 0.25) / 30, abs=1e-4)


def test_a_runs_flags_keep_the_family_wise_error_at_5_percent_over_its_files():
    """Four quantized files of one run, none of which changes quality: Holm flags one in at most ~5 % of runs; each
    file flagged by its own 95 % interval (the negative control) flags one in far more."""
    rng = np.random.default_rng(8)
    holm_any = nominal_any = 0
    reps = 1000
    prompts = [f"p{i}" for i in range(50)]
    for _ in range(reps):
        answered = {"f16": planted_files(rng, 50, 2, 0.0, 0.2)[0]["f16"]}
        for name in ("q8_0", "q5_0", "q4_0", "q2_k"):
            answered[name] = planted_files(rng, 50, 2, 0.0, 0.2)[0]["q"]
        got = judge_files(ScoreJudge(), prompts, answered, None, "f16")
        vs = [got[n]["vs_f16"] for n in answered if n != "f16"]
        holm_any += any(v["differs"] for v in vs)
        nominal_any += any(not v["ci"][0] <= 0.5 <= v["ci"][1] for v in vs)
    assert holm_any / reps <= 0.06, holm_any / reps
    assert nominal_any / reps > 0.12, nominal_any / reps


def test_the_table_compares_with_the_sft_reference_and_counts_identical_text():
    answered = {"f16": {"answers": [["1", "1"], ["2", "0"]]}, "q8_0": {"answers": [["1", "2"], ["2", "0"]]}}
    reference = [["0", "0", "9"], ["1", "1", "9"]]  # a third reference sample beyond the files' two is ignored
    got = judge_files(ScoreJudge(), ["a", "b"], answered, reference, "f16")
    assert got["f16"]["vs_f16"] is None and got["f16"]["same_text_as_f16"] == 1.0
    assert got["q8_0"]["same_text_as_f16"] == 0.75
    assert got["q8_0"]["vs_f16"]["wins"] == 1 and got["q8_0"]["vs_f16"]["ties"] == 3
    assert got["q8_0"]["vs_reference"]["wins"] == 3 and got["q8_0"]["vs_reference"]["losses"] == 1


@pytest.mark.parametrize(
    "value,message",
    [
        ("q4_k_m,q9", "--gguf='q9' is invalid: allowed one or more of f16, bf16, q8_0"),
        ("q8_0,Q8_0", "q8_0 given twice"),
    ],
)
def test_bad_file_types_are_one_line_naming_what_is_allowed(value, message):
    with pytest.raises(ConfigError) as err:
        parse_quantizations(value, "--gguf")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_f16_is_always_made_first_whatever_the_order_or_case():
    assert parse_quantizations("Q4_K_M,q8_0") == ["f16", "q4_k_m", "q8_0"]
    assert parse_quantizations(["q8_0", "f16"]) == ["f16", "q8_0"]
    assert parse_quantizations([]) == []


def test_a_run_with_an_unknown_file_type_is_refused_before_any_model_loads():
    from notus_lab.config.validate import validate
    from tests.helpers import compose

    with pytest.raises(ConfigError) as err:
        validate(compose("export.gguf=[q4_k_m,q5]"))
    assert str(err.value).startswith("export.gguf=") and "q4_k_m" in str(err.value) and "q2_k" in str(err.value)


def test_a_run_that_asks_for_gguf_without_llama_cpp_installed_is_one_line(monkeypatch):
    import sys

    from notus_lab.config.validate import validate
    from tests.helpers import compose

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what a missing package looks like to import
    with pytest.raises(ConfigError) as err:
        validate(compose("export.gguf=[q8_0]"))
    assert str(err.value) == (
        "export.gguf needs llama-cpp-python and gguf (llama_cpp is missing): pip install 'notus_lab[gguf]'"
    )


def test_the_converter_that_pip_cannot_fetch_is_one_line_naming_what_to_do(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    from notus_lab.config.validate import require_llama_cpp
    from notus_lab.models import gguf

    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip reaches no index: as offline
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        gguf.converter_dir(tmp_path / "cache")
    text = str(err.value)
    assert "llama-cpp-python==" in text and "pip could not fetch it" in text and "\n" not in text
    assert not (tmp_path / "cache" / "llama.cpp" / f"llama-cpp-python-{require_llama_cpp()}").exists()


def test_the_pre_tokenizer_is_named_only_for_gpt2s_byte_level_split(tmp_path):
    def with_pre(pre):
        (tmp_path / "tokenizer.json").write_text(json.dumps({"pre_tokenizer": pre}))
        return pre_tokenizer(tmp_path)

    assert with_pre({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}) == "gpt-2"
    assert with_pre({"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}) is None
    assert with_pre({"type": "Sequence", "pretokenizers": []}) is None
    (tmp_path / "tokenizer.json").unlink()
    assert pre_tokenizer(tmp_path) is None  # a SentencePiece model: llama.cpp reads tokenizer.model itself


# ---- a study's runs pooled (notus_lab/study/quantized.py): seed units x shared prompts, Holm over file types


def planted_units(rng, seeds: int, prompts: int, delta: float, seed_sd: float, prompt_sd: float, samples: int = 2):
    """Each seed unit's quantized model has its own effect (seed_sd), each prompt one shared by every seed
    (prompt_sd), both uniform around 0; ties at 0.3. Returns (units as `pooled` takes them, the true win rate)."""
    p_tie = 0.3
    seed_lean = seed_sd * np.sqrt(3) * rng.uniform(-1, 1, seeds)
    prompt_lean = prompt_sd * np.sqrt(3) * rng.uniform(-1, 1, prompts)
    lean = delta + seed_lean[:, None] + prompt_lean[None, :]
    tie = rng.random((seeds, prompts, samples)) < p_tie
    win = (rng.random((seeds, prompts, samples)) < 0.5 + lean[..., None]) & ~tie
    outcome = np.where(tie, 0.5, np.where(win, 1.0, 0.0)).mean(axis=-1)
    units = [[{f"p{j}": outcome[u, j] for j in range(prompts)}] for u in range(seeds)]
    return units, p_tie / 2 + (1 - p_tie) * (0.5 + delta)


@pytest.mark.parametrize("seeds", [2, 3, 6, 12])
def test_the_studys_pooled_interval_covers_the_planted_win_rate(seeds):
    from notus_lab.study.quantized import pooled

    rng = np.random.default_rng(seeds)
    covered, reps = 0, 1000
    for _ in range(reps):
        units, truth = planted_units(rng, seeds, 60, -0.05, 0.05, 0.1)
        low, high = pooled(units)["ci"]
        covered += low <= truth <= high
    assert 0.93 <= covered / reps <= 0.99, covered / reps


def test_holm_over_file_types_keeps_the_family_wise_error_at_5_percent_and_nominal_flags_do_not():
    """Three file types, none of which changes quality: Holm flags one in at most ~5 % of studies; flagging each
    by its own 95 % interval (the negative control) flags one far more often."""
    from notus_lab.study.quantized import flag, pooled

    rng = np.random.default_rng(3)
    holm_any = nominal_any = 0
    reps = 1500
    for _ in range(reps):
        rows = [pooled(planted_units(rng, 6, 60, 0.0, 0.03, 0.1)[0]) for _ in range(3)]
        nominal_any += any(not r["ci"][0] <= 0.5 <= r["ci"][1] for r in rows)
        holm_any += any(r["flagged"] for r in flag(rows))
    assert holm_any / reps <= 0.055, holm_any / reps
    assert nominal_any / reps > 0.08, nominal_any / reps


def test_one_seed_unit_gives_a_win_rate_without_an_interval_and_no_flag():
    from notus_lab.study.quantized import flag, pooled

    units, _ = planted_units(np.random.default_rng(0), 1, 40, -0.3, 0.0, 0.0)
    (row,) = flag([pooled(units)])
    assert "ci" not in row and row["flagged"] is False and row["win_rate"] < 0.4


def test_the_report_pools_the_gguf_files_of_a_sweeps_runs(tmp_path):
    """Planted run dirs: q2_k loses to f16 in every seed, q8_0 ties with it; the report's section says so."""
    from notus_lab.study import findings, render
    from tests.helpers import plant_judged

    rng = np.random.default_rng(1)
    prompts = [f"p{i}" for i in range(40)]
    for seed in range(1, 5):
        for strategy in ("critique", "mean_rating"):
            run_dir = plant_judged(
                tmp_path / f"{strategy}-{seed}", [f"data={strategy}", f"train.seed={seed}"], rng.random(40) < 0.6
            )
            records = []
            for p in prompts:
                for k in range(2):
                    base = float(rng.random())
                    worse = base - 0.3 if rng.random() < 0.7 else base + 0.3
                    for name, score in (("f16", base), ("q8_0", base), ("q2_k", worse)):
                        records.append({"quantization": name, "prompt": p, "sample": k, "answer": "a", "score": score})
            (run_dir / "gguf").mkdir()
            (run_dir / "gguf" / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            metrics = json.loads((run_dir / "metrics.json").read_text())
            metrics["gguf"] = {
                "files": {
                    n: {"bytes": b, "tokens_per_s": 100.0}
                    for n, b in (("f16", 800_000), ("q8_0", 450_000), ("q2_k", 300_000))
                }
            }
            (run_dir / "metrics.json").write_text(json.dumps(metrics))
    report = findings.build(tmp_path, None, None, "a100_80gb_x8")
    rows = {r["quantization"]: r for r in report.quantized}
    assert list(rows) == ["q8_0", "q2_k"]
    assert rows["q2_k"]["seeds"] == 4 and rows["q2_k"]["runs"] == 8 and rows["q2_k"]["prompts"] == 40
    assert rows["q2_k"]["flagged"] and rows["q2_k"]["adjusted_ci"][1] < 0.5
    assert rows["q8_0"]["win_rate"] == 0.5 and not rows["q8_0"]["flagged"] and "ci" not in rows["q8_0"]  # all tied
    md = render.markdown(report)
    assert "## GGUF files (each run's quantized file against its own f16)" in md and "| `q2_k` | 8 (4) x 40 |" in md
