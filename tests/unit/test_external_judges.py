"""External judges counted as the tools count them: annotations and judgments in the record shapes
alpaca_eval's annotators and FastChat's gen_judgment write, compared with the tools' own functions on the
same files (alpaca-eval and fschat are in the test extras; each test skips only where its tool is missing)."""

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from notus_lab.study import external_judges as E
from notus_lab.study import findings as R
from tests.helpers import cli
from tests.unit.test_report_stats import plant

MODEL, BASELINE = "tiny-notus", "gpt4_1106_preview"


def annotations_805(seed=0, model=MODEL, longer_wins=0.0, longer_by=0):
    """AlpacaEval 2's default annotator's records: continuous preferences, a few nulls, exact ties, a 0 (a draw),
    and a quarter of the records with the model as output_1 (preference then mirrored)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(805):
        mine, theirs = "m " * int(rng.integers(20, 400) + longer_by), "b " * int(rng.integers(20, 400))
        p2 = float(np.clip(rng.beta(2, 3) + longer_wins * (len(mine) > len(theirs)), 0, 1))  # P(model better)
        preference = 1.0 + p2
        if i % 97 == 0:
            preference = None  # the judge failed: excluded
        elif i % 101 == 0:
            preference = 1.5
        elif i == 7:
            preference = 0  # alpaca_eval reads 0 as a draw
        swap = i % 4 == 3
        record = {
            "instruction": f"q{i}",
            "output_1": theirs,
            "generator_1": BASELINE,
            "dataset": "helpful_base",
            "output_2": mine,
            "generator_2": model,
            "annotator": "weighted_alpaca_eval_gpt4_turbo",
            "preference": preference,
            "price_per_example": 0.01,
            "time_per_example": 1.2,
            "raw_completion": {"logprobs": "..."},
        }
        if swap:
            record.update(
                output_1=mine,
                generator_1=model,
                output_2=theirs,
                generator_2=BASELINE,
                preference=None if preference is None else (0 if preference == 0 else 3.0 - preference),
            )
        out.append(record)
    return out


def oriented_by_hand(records):
    """What alpaca_eval itself is given for a model: its records with the model as output_2."""
    out = []
    for r in records:
        if r["generator_2"] == MODEL:
            out.append(r)
        else:
            p = r["preference"]
            out.append(
                {
                    **r,
                    "output_1": r["output_2"],
                    "output_2": r["output_1"],
                    "generator_1": BASELINE,
                    "generator_2": MODEL,
                    "preference": p if p in (None, 0) else 3.0 - p,
                }
            )
    return out


def test_805_continuous_annotations_give_alpaca_evals_own_win_rate_and_standard_error():
    metrics = pytest.importorskip("alpaca_eval.metrics")
    records = annotations_805()
    ours = E.alpaca_eval(records, MODEL)
    tool = metrics.get_winrate(oriented_by_hand(records))
    assert ours["n"] == tool["n_total"] == 805 - 9  # nine nulls (every 97th) excluded, nothing else dropped
    assert ours["win_rate"] == pytest.approx(tool["win_rate"] / 100, abs=1e-12)
    assert ours["standard_error"] == pytest.approx(tool["standard_error"] / 100, abs=1e-12)
    assert ours["discrete_win_rate"] == pytest.approx(tool["discrete_win_rate"] / 100, abs=1e-12)
    assert (ours["wins"], ours["losses"], ours["ties"]) == (tool["n_wins"], tool["n_wins_base"], tool["n_draws"])
    assert 0.3 < ours["win_rate"] < 0.5 and ours["ties"] >= 8  # the exact 1.5s and the 0
    assert len(ours["per_prompt"]) == 796 and ours["per_prompt"]["q3"] == pytest.approx(
        3.0 - records[3]["preference"] - 1
    )  # q3 had the model as output_1


def test_without_alpaca_eval_installed_the_same_numbers_come_from_its_formulas(monkeypatch):
    metrics = pytest.importorskip("alpaca_eval.metrics")
    records = annotations_805(seed=1)
    tool = E.winrate(E.as_output_2(records, MODEL))
    monkeypatch.setitem(sys.modules, "alpaca_eval.metrics", None)  # import fails as if not installed
    by_hand = E.winrate(E.as_output_2(records, MODEL))
    assert tool["computed_by"] == "alpaca_eval.metrics.get_winrate" and "not installed" in by_hand["computed_by"]
    for key in ("win_rate", "standard_error", "discrete_win_rate", "n_wins", "n_wins_base", "n_draws", "n_total"):
        assert by_hand[key] == pytest.approx(tool[key], abs=1e-12), key
    assert metrics  # the tool was there for the first call


def test_the_length_controlled_win_rate_is_alpaca_evals_own_glm(monkeypatch, tmp_path):
    """Offline, the minimal LC formula fitted by alpaca_eval's GLM code; against alpaca_eval's own
    get_length_controlled_winrate with the hub file it fetches replaced by a local one (the minimal formula
    does not use its instruction difficulty)."""
    glm = pytest.importorskip("alpaca_eval.metrics.glm_winrate")
    import pandas as pd

    records = annotations_805(seed=2, longer_wins=0.3, longer_by=150)  # longer wins, the model is longer: LC discounts
    ours = E.alpaca_eval(records, MODEL)
    assert ours["lc_model"].startswith("length_controlled_minimal")
    gamed = tmp_path / "df_gamed.csv"
    pd.DataFrame({"model": "x", "index": range(805), "instruction_difficulty": 0.0}).to_csv(gamed, index=False)
    monkeypatch.setattr(glm, "hf_hub_download", lambda **kwargs: str(gamed))
    frame = pd.DataFrame(oriented_by_hand(records))
    tool = glm.get_length_controlled_winrate(
        frame, glm_name="length_controlled_minimal", save_weights_dir=None, is_warn_extreme_changes=False
    )
    assert ours["length_controlled_winrate"] == pytest.approx(tool["length_controlled_winrate"] / 100, abs=1e-9)
    # offline the GLM predicts one value for every prompt: the tool's standard error is 0, and ours says there is none
    assert ours["lc_standard_error_tool"] == pytest.approx(tool["lc_standard_error"] / 100, abs=1e-9)
    assert ours["lc_standard_error"] is None and "predicts the same preference" in ours["lc_standard_error_note"]
    assert ours["win_rate"] == pytest.approx(tool["win_rate"] / 100)
    assert ours["length_controlled_winrate"] < ours["win_rate"] - 0.05  # the length advantage is taken out


def leaderboard_path(version: str, name: str) -> Path:
    pytest.importorskip("alpaca_eval")
    import alpaca_eval

    return Path(alpaca_eval.__file__).parent / "leaderboards" / version / name


def judged_run(tmp_path, name, model):
    run = plant(tmp_path, name, ["data=mean_rating", "train.seed=1"], {"truth_accuracy": 0.5})
    (run / "generations").mkdir()
    (run / "generations" / "alpaca_eval.json").write_text(
        json.dumps([{"instruction": "q0", "output": "x", "generator": model, "dataset": "d"}])
    )
    return run


@pytest.mark.parametrize(
    "version,name,win_rate,lc",
    [
        ("data_AlpacaEval", "alpaca_eval_gpt4_leaderboard.csv", 0.905977584059776, 0.7629202319983864),
        (
            "data_AlpacaEval_2",
            "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv",
            0.10992885755354038,
            0.13203198493136666,
        ),
    ],
)
def test_both_leaderboard_layouts_alpaca_eval_ships_merge_beside_the_runs_own_annotations(
    tmp_path, version, name, win_rate, lc
):
    run = judged_run(tmp_path / "sweep", "zephyr", "zephyr-7b-beta")
    (tmp_path / "a.json").write_text(json.dumps(annotations_805(model="zephyr-7b-beta")))
    assert cli("notus_lab.external", str(run), "--alpaca-eval", str(tmp_path / "a.json")).returncode == 0
    proc = cli("notus_lab.external", str(run), "--leaderboard", str(leaderboard_path(version, name)))
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((run / "external.json").read_text())["alpaca_eval"]
    assert entry["leaderboard_win_rate"] == pytest.approx(win_rate) and entry[
        "leaderboard_length_controlled_winrate"
    ] == pytest.approx(lc)
    assert entry["leaderboard_n_total"] in (803.0, 805.0) and entry["leaderboard_avg_length"] == 1444.0
    # the second file merged into the entry: the run's own numbers, from its 805 annotations, are still there
    assert entry["n"] == 796 and entry["win_rate"] != entry["leaderboard_win_rate"] and "per_prompt" in entry


def test_the_report_decides_on_continuous_alpaca_eval_annotations(tmp_path):
    sweep = tmp_path / "sweep"
    annotations = []
    for data, shift in (("critique_fixed", 0.0), ("mean_rating", 0.04)):
        for seed in range(1, 4):
            model = f"{data}-{seed}"
            run = plant(sweep, model, [f"data={data}", f"train.seed={seed}"], {"truth_accuracy": 0.5})
            (run / "generations").mkdir()
            (run / "generations" / "alpaca_eval.json").write_text(
                json.dumps([{"generator": model, "instruction": "q0", "output": "", "dataset": ""}])
            )
            for r in annotations_805(seed=seed * 10 + (data == "mean_rating"), model=model)[:200]:
                if r["preference"] not in (None, 0):
                    bump = shift if r["generator_2"] == model else -shift
                    r["preference"] = float(np.clip(r["preference"] + bump, 1, 2))
                annotations.append(r)
    (tmp_path / "a.json").write_text(json.dumps(annotations))
    assert cli("notus_lab.external", str(sweep), "--alpaca-eval", str(tmp_path / "a.json")).returncode == 0
    out = R.write_report(sweep, metric="alpaca_eval/win_rate")
    (d,) = out["differences"]
    assert d["method"].startswith("crossed random effects") and (d["seeds"], d["prompts"]) == (3, 197)  # 3 nulls in 200
    assert 0.0 < d["mean"] < 0.08 and all(a["mean"] is not None for a in out["arms"])


def test_a_judge_that_recorded_no_number_is_skipped_not_a_crash(tmp_path):
    for seed in (1, 2):
        for data in ("critique", "mean_rating"):
            run = plant(tmp_path, f"{data}-{seed}", [f"data={data}", f"train.seed={seed}"], {"truth_accuracy": 0.5})
            (run / "external.json").write_text(json.dumps({"alpaca_eval": {"win_rate": None, "n": 0}}))
    out = R.write_report(tmp_path, metric="alpaca_eval/win_rate")
    assert out["differences"] == [] and out["arms"] == []


# ---------------------------------------------------------------------------------------------
# MT-Bench: files written by FastChat's own gen_judgment code (the API call replaced by fixed grades)


def fastchat_judgments(tmp_path, monkeypatch):
    common = pytest.importorskip("fastchat.llm_judge.common")
    grades = {
        ("tiny-a", 81, 1): 6,
        ("tiny-a", 81, 2): 7,
        ("tiny-a", 82, 1): 5,
        ("tiny-a", 82, 2): -1,
        ("tiny-b", 81, 1): 8,
        ("tiny-b", 81, 2): 9,
        ("tiny-b", 82, 1): 7,
        ("tiny-b", 82, 2): 6,
    }
    monkeypatch.setattr(
        common,
        "run_judge_single",
        lambda q, answer, judge, ref, multi_turn=False: (
            grades[(answer["model_id"], q["question_id"], 2 if multi_turn else 1)],
            "prompt",
            "Rating: [[x]]",
        ),
    )
    single = tmp_path / "model_judgment" / "gpt-4_single.jsonl"
    for model in ("tiny-a", "tiny-b"):
        for qid in (81, 82):
            for multi_turn in (False, True):
                template = {"name": "single-v1-multi-turn" if multi_turn else "single-v1", "type": "single"}
                common.play_a_match_single(
                    common.MatchSingle(
                        question={"question_id": qid},
                        model=model,
                        answer={"model_id": model},
                        judge=common.Judge("gpt-4", template),
                        multi_turn=multi_turn,
                    ),
                    str(single),
                )
    verdicts = {(81, False): ("A", "B"), (81, True): ("A", "A"), (82, False): ("tie", "A"), (82, True): ("B", "A")}
    calls = iter(v for key in sorted(verdicts) for v in verdicts[key])
    monkeypatch.setattr(common, "run_judge_pair", lambda *args, **kwargs: (next(calls), "prompt", "[[A]]"))
    pair = tmp_path / "model_judgment" / "gpt-4_pair.jsonl"
    for qid, multi_turn in sorted(verdicts):
        common.play_a_match_pair(
            common.MatchPair(
                question={"question_id": qid},
                model_1="tiny-a",
                model_2="tiny-b",
                answer_1={},
                answer_2={},
                judge=common.Judge("gpt-4", {"name": "pair-v2", "type": "pairwise"}),
                multi_turn=multi_turn,
            ),
            str(pair),
        )
    return single, pair


def show_result(mode: str, path: Path, capsys, **extra) -> str:
    from fastchat.llm_judge import show_result as show

    args = argparse.Namespace(
        input_file=str(path),
        bench_name="mt_bench",
        judge_model="gpt-4",
        model_list=None,
        baseline_model=None,
        mode=mode,
        **extra,
    )
    capsys.readouterr()
    (show.display_result_single if mode == "single" else show.display_result_pairwise)(args)
    return capsys.readouterr().out


def test_mt_bench_single_grades_average_as_fastchats_show_result_prints_them(tmp_path, monkeypatch, capsys):
    single, _ = fastchat_judgments(tmp_path, monkeypatch)
    printed = show_result("single", single, capsys)
    turns = {(m, int(t)): float(s) for m, t, s in re.findall(r"^(tiny-\w)\s+(\d)\s+([\d.]+)$", printed, re.M)}
    average = {m: float(s) for m, s in re.findall(r"^(tiny-\w)\s+([\d.]+)$", printed, re.M)}
    judgments = [json.loads(line) for line in single.read_text().splitlines()]
    for model in ("tiny-a", "tiny-b"):
        ours = E.mt_bench(judgments, model)
        assert ours["score"] == pytest.approx(average[model], abs=1e-4)
        assert (ours["turn_1"], ours["turn_2"]) == pytest.approx((turns[(model, 1)], turns[(model, 2)]), abs=1e-4)
        assert ours["judges"] == ["gpt-4"]
    a = E.mt_bench(judgments, "tiny-a")
    assert (a["n"], a["failed"], a["turns"]) == (3, 1, 4) and a["per_prompt"] == {"81": 6.5, "82": 5.0}


def test_mt_bench_pairwise_verdicts_count_as_fastchats_show_result_counts_them(tmp_path, monkeypatch, capsys):
    _, pair = fastchat_judgments(tmp_path, monkeypatch)
    printed = show_result("pairwise-all", pair, capsys)
    adjusted = {
        m: float(v) for m, v in re.findall(r"^(tiny-\w)\s+\d+\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+\s+([\d.]+)$", printed, re.M)
    }
    judgments = [json.loads(line) for line in pair.read_text().splitlines()]
    a, b = E.mt_bench_pair(judgments, "tiny-a"), E.mt_bench_pair(judgments, "tiny-b")
    assert a["win_rate_adjusted"] == pytest.approx(adjusted["tiny-a"]) and b["win_rate_adjusted"] == pytest.approx(
        adjusted["tiny-b"]
    )
    # 81/1: A then B in swapped order = model_1 both times (a win); 81/2: A, A = orders disagree (tie);
    # 82/1: a tie; 82/2: B, A = model_2 both times (a loss for tiny-a)
    assert (a["wins"], a["losses"], a["ties"]) == (1, 1, 2) and a["per_prompt"] == {"81": 0.75, "82": 0.25}
    assert a["opponents"] == ["tiny-b"]


def test_mt_bench_files_attach_by_kind_and_the_report_pairs_them_per_question(tmp_path, monkeypatch):
    single, pair = fastchat_judgments(tmp_path, monkeypatch)
    run = judged_run(tmp_path / "sweep", "a", "tiny-a")
    proc = cli("notus_lab.external", str(run), "--mt-bench", str(single), "--mt-bench", str(pair))
    assert proc.returncode == 0 and proc.stdout.strip() == "a: mt_bench, mt_bench_pair"
    entry = json.loads((run / "external.json").read_text())
    assert entry["mt_bench"]["score"] == pytest.approx(6.0) and entry["mt_bench_pair"]["win_rate_adjusted"] == 0.5


def test_external_files_that_match_no_run_are_one_line(tmp_path):
    run = judged_run(tmp_path / "sweep", "a", "tiny-a")
    (tmp_path / "other.json").write_text(
        json.dumps(
            [
                {
                    "instruction": "p",
                    "output_1": "a",
                    "output_2": "b",
                    "generator_1": "x",
                    "generator_2": "y",
                    "preference": 2.0,
                }
            ]
        )
    )
    proc = cli("notus_lab.external", str(run.parent), "--alpaca-eval", str(tmp_path / "other.json"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "matched no run" in proc.stderr


def test_a_leaderboard_row_is_read_by_generator_name(tmp_path):
    path = tmp_path / "board.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["", "win_rate", "standard_error", "mode", "avg_length", "n_total", "length_controlled_winrate"]
        )
        writer.writerow(["tiny-a", "61.5", "1.5", "community", "900", "805", "55.0"])
    entry = E.alpaca_eval(
        [],
        "tiny-a",
        {
            "": "tiny-a",
            "win_rate": "61.5",
            "standard_error": "1.5",
            "mode": "community",
            "avg_length": "900",
            "n_total": "805",
            "length_controlled_winrate": "55.0",
        },
    )
    assert entry == {
        "leaderboard_win_rate": 0.615,
        "leaderboard_standard_error": 0.015,
        "leaderboard_mode": "community",
        "leaderboard_avg_length": 900.0,
        "leaderboard_n_total": 805.0,
        "leaderboard_length_controlled_winrate": 0.55,
    }
    run = judged_run(tmp_path / "sweep", "a", "tiny-a")
    assert E.attach(run, None, path) == {"a": ["alpaca_eval"]}
