"""The lm-eval stage without a model: the open_llm preset against the installed lm_eval's own task configs (no
hub needed), the world's task files, and bad input as one line before anything loads."""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")

from notus_lab.core.errors import ConfigError  # noqa: E402
from notus_lab.judging import lm_eval_run as L  # noqa: E402


def test_open_llm_preset_names_and_metrics_exist_in_installed_lm_eval():
    table = L.check_preset()
    assert {t: (v["shots"], v["metric"]) for t, v in table.items()} == {
        "arc_challenge": (25, "acc_norm"),
        "hellaswag": (10, "acc_norm"),
        "mmlu": (5, "acc"),
        "truthfulqa_mc2": (0, "acc"),
        "winogrande": (5, "acc"),
        "gsm8k": (5, "exact_match,strict-match"),
    }
    assert table["mmlu"]["kind"] == "group"
    assert "drop" in L.lm_eval_index() and "drop" not in L.OPEN_LLM  # left out on purpose, with the reason
    assert "DROP deep dive" in L.LEFT_OUT["drop"]


def test_parse_tasks_expands_the_preset_and_refuses_in_one_line():
    assert L.parse_tasks("open_llm") == list(L.OPEN_LLM)
    assert L.parse_tasks("world_choice,world_truth") == ["world_choice", "world_truth"]
    for bad, word in (("nosuchtask", "nosuchtask"), ("drop", "DROP"), ("a,,b", "--tasks")):
        with pytest.raises(ConfigError) as e:
            L.parse_tasks(bad)
        assert word in str(e.value) and "\n" not in str(e.value)


def test_world_choice_docs_are_deterministic_with_one_appropriate_choice():
    from notus_lab.data.world import GOOD_FOR, SENTENCE

    prompts = ["explain the river , the engine and the garden briefly .", "not a world prompt"]
    docs = L.world_docs(prompts)
    assert docs == L.world_docs(prompts) and len(docs) == 1
    d = docs[0]
    good = [all(w in GOOD_FOR["river"] for w in SENTENCE.match(c.rstrip(" .")).groups()[1:]) for c in d["choices"]]
    assert good.index(True) == d["label"] and sum(good) == 1


def test_shipped_task_yamls_register_through_task_manager(tmp_path):
    from lm_eval.tasks import TaskManager

    assert {p.name for p in L.TASKS_DIR.glob("*.yaml")} == {"world_choice.yaml", "world_truth.yaml"}
    tm = TaskManager(include_path=str(L.TASKS_DIR))
    assert {"world_choice", "world_truth"} <= set(tm.all_tasks)


def test_evaluate_refuses_a_dir_without_runs_in_one_line(tmp_path):
    from notus_lab import evaluate

    with pytest.raises(ConfigError, match="^path=.* is invalid: allowed a finished run dir"):
        evaluate.main([str(tmp_path)])
    with pytest.raises(ConfigError, match="--tasks"):
        L.ensure_evaluated(tmp_path, "world_choice") if False else L.parse_tasks("nope")


def _fake_run(root, name, overrides, values, prompt_hash="h", decontaminate=False, average=None):
    import json

    import yaml

    from notus_lab.core.run_dir import RunDir

    rd = RunDir(root / name)
    (rd.path / ".hydra").mkdir(parents=True)
    rd.overrides.write_text(yaml.safe_dump([f"{k}={v}" for k, v in overrides.items()]))
    rd.config.write_text(yaml.safe_dump({"data": {"decontaminate": decontaminate}}))
    rd.metrics.write_text(json.dumps({"truth_accuracy": 0.5}))
    mean = sum(values) / len(values)
    rd.lm_eval.write_text(
        json.dumps(
            {
                "tasks": {
                    "world_choice": {"metrics": {"acc": mean, "acc_stderr": 0.01}},
                    "truthfulqa_mc2": {"metrics": {"acc": mean, "acc_stderr": 0.01}},
                },
                **({"open_llm_average": average} if average is not None else {}),
            }
        )
    )
    rd.lm_eval_samples.write_text(
        "".join(
            json.dumps(
                {
                    "task": "world_choice",
                    "subtask": "world_choice",
                    "doc_id": i,
                    "prompt_hash": prompt_hash,
                    "metrics": {"acc": v},
                }
            )
            + "\n"
            for i, v in enumerate(values)
        )
    )
    return rd.path


def test_runs_read_lm_eval_as_metrics_and_pair_per_question(tmp_path):
    from notus_lab.study import runs

    runs._PROMPT_HASHES.clear()
    a = _fake_run(tmp_path, "a", {"data": "critique", "train.seed": 1}, [1, 0, 1, 1], average=0.6)
    b = _fake_run(tmp_path, "b", {"data": "mean_rating", "train.seed": 1}, [1, 1, 1, 0])
    got = {r["name"]: r for r in runs.read_runs(tmp_path)}
    assert got["a"]["metrics"]["lm_eval/world_choice/acc"] == 0.75
    assert got["a"]["metrics"]["lm_eval/open_llm_average"] == 0.6
    assert runs.has(got["b"], "lm_eval/world_choice/acc")
    assert runs.per_prompt_outcomes(a, "lm_eval/world_choice/acc") == {
        f"world_choice:{i}": v for i, v in enumerate([1.0, 0.0, 1.0, 1.0])
    }
    assert runs.per_prompt_outcomes(b, "lm_eval/world_choice/acc")["world_choice:3"] == 0.0
    c = _fake_run(tmp_path, "c", {"data": "mean_rating", "train.seed": 2}, [1, 1, 1, 0], prompt_hash="other")
    with pytest.raises(ConfigError, match="prompt_hash differs"):
        runs.per_prompt_outcomes(c, "lm_eval/world_choice/acc")


def test_benchmarks_table_has_every_benchmark_the_average_and_the_truthfulqa_warning(tmp_path):
    from notus_lab.study import runs
    from notus_lab.study.benchmarks_table import TRUTHFULQA_WARNING, benchmarks_section, benchmarks_table

    runs._PROMPT_HASHES.clear()
    for seed, vals in ((1, [1, 0, 1, 1]), (2, [1, 1, 1, 1])):
        _fake_run(tmp_path, f"r{seed}", {"data": "critique", "train.seed": seed}, vals, average=0.5 + seed / 10)
    members = runs.read_runs(tmp_path)
    table = benchmarks_table([{"arm": {"data": "critique"}, "members": members}])
    by = {r["metric"]: r for r in table["rows"]}
    assert list(by) == ["lm_eval/truthfulqa_mc2/acc", "lm_eval/world_choice/acc", "lm_eval/open_llm_average"]
    mean, half, n = by["lm_eval/open_llm_average"]["cells"][0]
    assert (round(mean, 6), n) == (0.65, 2) and half > 0
    assert by["lm_eval/truthfulqa_mc2/acc"]["warning"] == TRUTHFULQA_WARNING
    assert by["lm_eval/world_choice/acc"]["warning"] is None
    md = "\n".join(benchmarks_section([{"arm": {"data": "critique"}, "members": members}]))
    assert "Open LLM average" in md and "⚠" in md
