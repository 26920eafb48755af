"""Every study a researcher writes runs as written: the sweepers driven over generated study shapes by a stub launcher
that plants judged run dirs (no training: seconds). Keys in the experiment, on the command line or both; 1-3 levels a
factor; seeds given or not; failed arms in any round; strategies with no arm; world keys. Each shape ends in an
outcome that names what happened, or one line: never a traceback, never an arm trained twice, never "decided" on
nothing."""

import itertools
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from notus_lab.config.compose import preflight, sweep_variants
from notus_lab.config.science import run_dir_name
from notus_lab.core.errors import ConfigError
from notus_lab.core.overrides import factors
from notus_lab.study import rounds, sequential
from tests.helpers import PlantingLauncher
from tests.unit.test_sequential import BASE as SEQUENTIAL_BASE

STRATEGIES = ("critique", "critique_fixed", "mean_rating")
BASE = {**SEQUENTIAL_BASE, "max_seeds": 4}  # small studies: every shape runs in a second or so


def StubLauncher(sweep_dir, gap=0.0, fails=lambda given: False, prompts=120):
    """tests/helpers.PlantingLauncher with this file's arms: any strategy, seeds and data possibly left out."""
    return PlantingLauncher(
        sweep_dir,
        gap,
        fails=lambda given, name: fails(given),
        prompts=prompts,
        rng_key=lambda given, name: [
            int(given.get("train.seed", 0)),
            STRATEGIES.index(given.get("data", "mean_rating")),
            len(name),
        ],
        compute={"device_hours": 0.1},
    )


def stub(cls, sweep_dir, launcher, params, **changes):
    from hydra_plugins.notus_lab_sweepers import sweepers

    kind = getattr(sweepers, cls)
    sweeper = (
        kind(**{**BASE, **changes}, params=params) if cls == "SequentialSweeper" else kind(params=params, **changes)
    )
    sweeper.config = OmegaConf.create(
        {"sweep_name": "named", "hydra": {"sweep": {"dir": str(sweep_dir)}}, "wandb": {"mode": "disabled"}}
    )
    sweeper.hydra_context = type("Context", (), {"config_loader": None})()
    sweeper.launcher = launcher
    return sweeper


def one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and " is invalid" in err[0], err
    return err[0]


def spell(key: str, values: list[str], where: str) -> tuple[dict, list[str]]:
    """(params, command line) giving `key` its values from the experiment, the command line, or both (the
    experiment then holds other values, which the command line replaces)."""
    text = ",".join(values)
    if where == "params":
        return {key: text}, []
    if where == "command":
        return {}, [f"{key}={text}"]
    return {key: "0.5,0.7,0.9" if key == "beta" else "critique_curated"}, [f"{key}={text}"]


shapes = st.fixed_dictionaries(
    {
        "strategies": st.lists(st.sampled_from(STRATEGIES), min_size=1, max_size=3, unique=True),
        "data_where": st.sampled_from(["params", "command", "both"]),
        "betas": st.lists(st.sampled_from(["0.01", "0.1", "0.3"]), min_size=1, max_size=3, unique=True),
        "beta_where": st.sampled_from(["params", "command", "both"]),
        "seeds": st.sampled_from([None, [1], [1, 2], [3, 5, 7], [1, 2, 3, 4, 5]]),
        "world": st.sampled_from([None, "200", "200,300"]),
        # failed arms: none, a seed in round 1, a whole strategy (a strategy with no arm), a seed added later
        "fail": st.sampled_from([None, ("seed", 1), ("seed", 2), ("strategy", 0), ("seed", 4), ("all", None)]),
        "gap": st.sampled_from([0.0, 0.3]),
    }
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=shapes)
def test_every_study_shape_ends_in_an_outcome_that_names_what_happened_or_one_line(shape, tmp_path_factory, capsys):
    sweep_dir = tmp_path_factory.mktemp("shape") / "study"
    params, command = spell("data", shape["strategies"], shape["data_where"])
    more_params, more_command = spell("beta", shape["betas"], shape["beta_where"])
    params, command = {**params, **more_params}, command + more_command
    if shape["seeds"] is not None:
        command.append("train.seed=" + ",".join(map(str, shape["seeds"])))
    if shape["world"] is not None:
        command.append(f"data.world.rows={shape['world']}")
    kind, what = shape["fail"] or (None, None)

    def fails(given):
        if kind == "seed":
            return given["train.seed"] == str(what)
        if kind == "strategy":
            return given["data"] == shape["strategies"][what]
        return kind == "all"

    launcher = StubLauncher(sweep_dir, shape["gap"], fails)
    capsys.readouterr()
    try:
        stub("SequentialSweeper", sweep_dir, launcher, params).sweep(command)
    except SystemExit as stopped:  # refused: one line, and nothing trained
        assert stopped.code == 2
        line = one_line_error(capsys)
        assert launcher.launched == [] and not (sweep_dir / "multirun.yaml").exists()
        assert len(shape["strategies"]) < 2 or (shape["seeds"] and len(shape["seeds"]) > BASE["max_seeds"]), line
        return
    assert len(shape["strategies"]) >= 2 and not (shape["seeds"] and len(shape["seeds"]) > BASE["max_seeds"])
    state = rounds.load(sweep_dir)
    assert state["outcome"] in sequential.OUTCOMES
    # the command line replaced the experiment's values key by key: each seed trains one arm per distinct config
    configs = len(shape["strategies"]) * len(shape["betas"]) * (2 if shape["world"] == "200,300" else 1)
    for name in set(launcher.launched):
        keys = [part.split("=", 1)[0] for part in name.split(",") if "=" in part]
        assert len(keys) == len(set(keys)), name  # a run dir name never holds a key twice
        assert "critique_curated" not in name and "beta=0.5" not in name  # the replaced values never run
        failed = (sweep_dir / name / "failed.json").exists()
        assert launcher.launched.count(name) == (2 if failed else 1), name  # retried once, only if it failed
    by_seed = {}
    for name in set(launcher.launched):
        seed = next(p for p in name.split(",") if p.startswith("train.seed="))
        by_seed.setdefault(seed, set()).add(name)
    assert all(len(arms) <= configs for arms in by_seed.values())
    last = state["rounds"][-1]
    if state["outcome"] == "decided":  # never on nothing, never with a strategy unmeasured
        assert last["pairs"] and not last["unmeasured"]
        assert all(p["decision"] in sequential.FINAL for p in last["pairs"])
    out = capsys.readouterr().out
    assert f"study {state['outcome']} after" in out and "Traceback" not in out
    text = (sweep_dir / "report.md").read_text()
    for u in last["unmeasured"]:  # a strategy with no finished arm is named in the verdict
        assert f"**{u['strategy']}**" in text and "was not measured" in text
    if kind == "strategy" or kind == "all":
        gone = shape["strategies"] if kind == "all" else [shape["strategies"][what]]
        assert {u["strategy"] for u in last["unmeasured"]} >= set(gone) and state["outcome"] == "not_measured"


def test_the_command_line_replaces_the_experiments_values_and_never_multiplies_them(tmp_path):
    """`+experiment=critique_vs_rating hydra/sweeper=sequential data=critique_fixed,mean_rating beta=0.1`: the
    experiment sweeps data x beta (0.01, 0.1); the command line's data and beta replace its own, so each seed trains
    2 arms (it used to train 40 arms for 8 configs, in dirs holding beta twice)."""
    params = {"data": "critique_fixed,critique_curated,mean_rating", "beta": "0.01,0.1", "train.seed": "1,2,3"}
    launcher = StubLauncher(tmp_path / "s", gap=0.3)
    stub("SequentialSweeper", tmp_path / "s", launcher, params, max_seeds=5).sweep(
        ["data=critique_fixed,mean_rating", "beta=0.1"]
    )
    round_one = rounds.load(tmp_path / "s")["rounds"][0]
    assert sorted(round_one["launched"]) == sorted(
        f"beta=0.1,data={d},train.seed={s}" for d in ("critique_fixed", "mean_rating") for s in (1, 2, 3)
    )
    # the preflight checks the same design the sweeper runs
    variants = sweep_variants(["data=critique_fixed,mean_rating", "beta=0.1"], params)
    assert {v for vs in variants for v in vs if v.startswith(("data=", "beta="))} == {
        "data=critique_fixed",
        "data=mean_rating",
        "beta=0.1",
    }


def test_a_key_given_twice_is_one_line_and_a_job_never_names_a_key_twice():
    with pytest.raises(ConfigError, match=r"^beta='0.2' is invalid: beta is given twice"):
        factors(["beta=0.1", "beta=0.2"])
    with pytest.raises(ConfigError, match=r"^data='mean_rating' is invalid: data is given twice"):
        factors(["data=critique", "+data=mean_rating"])
    with pytest.raises(ConfigError, match=r"is given twice"):
        run_dir_name(["data=critique", "data=mean_rating"])
    # sorted, these two used to name one dir for two configs
    assert factors(["+data=critique"], {"data": "a,b"})[0].values == ("critique",)


@pytest.mark.parametrize(
    "changes, argv, expected",
    [
        (dict(first_seeds=2.5), ["train.seed=1,2"], r"^hydra.sweeper.first_seeds=2.5 is invalid: allowed an integer"),
        (dict(max_seeds="abc"), ["train.seed=1,2"], r"^hydra.sweeper.max_seeds='abc' is invalid: allowed an integer"),
        (dict(metric="generation/win_rate"), [], r"^hydra.sweeper.metric='generation/win_rate' is invalid: allowed"),
        (dict(metric=["alpaca_eval/win_rate", "mt_bench/score"]), [], r"^hydra.sweeper.metric=.* one metric only"),
        (dict(margin=-0.1), [], r"^study.margin=-0.1 is invalid"),
        (dict(margin=None), [], r"^study.margin=None is invalid"),
    ],
)
def test_every_sequential_setting_is_checked_by_type_and_name_before_anything_starts(changes, argv, expected):
    from notus_lab.config.study import Settings

    with pytest.raises(ConfigError, match=expected):
        Settings(**{**BASE, **changes}).check()


@pytest.mark.parametrize(
    "params, argv, expected",
    [
        ({"beta": "0.1,0.2"}, [], r"^data=None is invalid: hydra/sweeper=sequential compares strategies"),
        ({"data": "mean_rating"}, ["beta=0.1,0.2"], r"^data='mean_rating' is invalid: .*no pair to decide"),
        ({"data": "critique,mean_rating"}, ["train.seed=1,2,3,4,5"], r"^train.seed='1,2,3,4,5' is invalid: 5 seeds"),
        ({"data": "critique,mean_rating"}, ["train.seed=1,x"], r"^train.seed='1,x' is invalid: allowed integers"),
        ({"data": "critique,mean_rating"}, ["generation.batch_size=8,16"], r"^generation.batch_size='16' is invalid"),
    ],
)
def test_a_design_the_study_cannot_run_is_one_line_and_trains_nothing(params, argv, expected, tmp_path, capsys):
    launcher = StubLauncher(tmp_path / "s")
    with pytest.raises(SystemExit) as stopped:
        stub("SequentialSweeper", tmp_path / "s", launcher, params).sweep(argv)
    import re

    assert stopped.value.code == 2 and re.search(expected, one_line_error(capsys)[len("error: ") :])
    assert launcher.launched == [] and not (tmp_path / "s").exists()


def test_one_missing_arm_in_round_one_is_never_decided_on_nothing(tmp_path):
    """2 strategies, one arm of round 1 failing twice: the pair has one seed in common, so the look measures
    nothing; the study goes on (it used to print "no pair measured yet; study decided")."""
    launcher = StubLauncher(
        tmp_path / "s", gap=0.3, fails=lambda g: g["data"] == "mean_rating" and g["train.seed"] == "2"
    )
    stub("SequentialSweeper", tmp_path / "s", launcher, {"data": "critique,mean_rating"}).sweep(["train.seed=1,2"])
    state = rounds.load(tmp_path / "s")
    first = state["rounds"][0]
    assert first["pairs"] == [] and {u["strategy"] for u in first["unmeasured"]} == {"critique", "mean_rating"}
    assert len(state["rounds"]) >= 2 and state["rounds"][-1]["pairs"]  # seed 3 brought a second common seed
    assert state["outcome"] != "decided" or all(p["decision"] in sequential.FINAL for p in state["rounds"][-1]["pairs"])


def test_every_arm_failing_ends_not_measured_naming_the_strategies_and_their_failures(tmp_path, capsys):
    launcher = StubLauncher(tmp_path / "s", fails=lambda g: True)
    stub("SequentialSweeper", tmp_path / "s", launcher, {"data": "critique,mean_rating"}).sweep([])
    state = rounds.load(tmp_path / "s")
    assert state["outcome"] == "not_measured" and len(state["rounds"]) == 1 and len(launcher.launched) == 8
    out = capsys.readouterr().out
    assert "study not_measured after 1 round(s)" in out and "study decided" not in out
    text = (tmp_path / "s" / "report.md").read_text()
    assert "**critique** was not measured: no arm finished: 2 arm(s) failed twice (see" in text
    assert "failed.json" in text and "no pair of strategies was measured" in text


def test_a_strategy_whose_arms_all_fail_is_given_up_and_named_while_the_others_are_decided(tmp_path):
    launcher = StubLauncher(tmp_path / "s", gap=0.3, fails=lambda g: g["data"] == "critique")
    params = {"data": "critique,critique_fixed,mean_rating"}
    stub("SequentialSweeper", tmp_path / "s", launcher, params, max_seeds=6).sweep([])
    state = rounds.load(tmp_path / "s")
    assert state["outcome"] == "not_measured"
    assert [u["strategy"] for u in state["rounds"][-1]["unmeasured"]] == ["critique"]
    assert sum("data=critique," in n for n in launcher.launched) == 4  # round 1's 2 arms, each retried once: no more
    assert any(p["decision"] == "b_wins" for p in state["rounds"][-1]["pairs"])


def test_a_plain_sweep_launches_every_batch_after_a_failure_and_ends_with_the_dir_and_next_command(tmp_path, capsys):
    launcher = StubLauncher(tmp_path / "s", fails=lambda g: g["train.seed"] == "1")
    sweeper = stub("NotusSweeper", tmp_path / "s", launcher, {"data": "critique,mean_rating"}, max_batch_size=1)
    with pytest.raises(SystemExit) as stopped:
        sweeper.sweep(["train.seed=1,2"])
    assert stopped.value.code == 1 and len(launcher.launched) == 4  # the batches after the failed one ran
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == f"sweep {tmp_path / 's'}: 2 of 4 arm(s) finished, 2 failed (their failed.json says why)"
    assert out[-1] == f"  next: python -m notus_lab.report {tmp_path / 's'}"


def test_an_adhoc_multirun_gets_a_dir_of_its_own_named_by_its_swept_keys(tmp_path):
    launcher = StubLauncher(tmp_path / "x")
    sweeper = stub("NotusSweeper", tmp_path / "x", launcher, None)
    sweeper.config = OmegaConf.create(
        {"sweep_name": "adhoc", "hydra": {"sweep": {"dir": "${sweep_name}"}}, "wandb": {"mode": "disabled"}}
    )
    design = factors(["beta=0.1,0.2", "data=critique"])
    assert sweeper._own_dir(design) == ["sweep_name=adhoc-beta"] and sweeper.config.hydra.sweep.dir == "adhoc-beta"
    named = stub("NotusSweeper", tmp_path / "y", launcher, None)
    assert named._own_dir(factors(["beta=0.1,0.2", "sweep_name=mine"])) == []


def test_max_batch_size_is_checked_and_honoured(tmp_path):
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.max_batch_size=0 is invalid"):
        stub("NotusSweeper", tmp_path, StubLauncher(tmp_path), None, max_batch_size=0)
    sizes = []
    counting = StubLauncher(tmp_path / "s", gap=0.3)
    launch = counting.launch
    counting.launch = lambda job_overrides, initial_job_idx: (
        sizes.append(len(job_overrides)) or launch(job_overrides, initial_job_idx)
    )

    stub(
        "SequentialSweeper",
        tmp_path / "s",
        counting,
        {"data": "critique,mean_rating"},
        max_batch_size=3,
    ).sweep(["train.seed=1,2,3"])
    assert sizes[:2] == [3, 3] and max(sizes) <= 3


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["-m", "+experiment=critique_vs_rating", "hydra/sweeper=sequential", "hydra.sweeper.first_seeds=2.5"],
            r"^hydra.sweeper.first_seeds=2.5 is invalid",
        ),
        (
            ["-m", "+experiment=critique_vs_rating", "hydra/sweeper=sequential", "data=mean_rating"],
            r"^data='mean_rating' is invalid",
        ),
        (["-m", "hydra/sweeper=sequential", "study.margin=0.05", "beta=0.1,0.2"], r"^data=None is invalid"),
        (
            [
                "-m",
                "+experiment=critique_vs_rating",
                "hydra/sweeper=sequential",
                "hydra.sweeper.metric=generation/win_rate",
            ],
            r"^hydra.sweeper.metric='generation/win_rate' is invalid",
        ),
        (["-m", "beta=0.1", "beta=0.2"], r"^beta='0.2' is invalid: beta is given twice"),
        (["-m", "hydra.sweeper.max_batch_size=0", "beta=0.1,0.2"], r"^hydra.sweeper.max_batch_size=0 is invalid"),
    ],
)
def test_the_preflight_refuses_what_the_sweepers_would_refuse_before_anything_loads(argv, expected):
    with pytest.raises(ConfigError, match=expected):
        preflight(argv)


def test_the_report_refuses_a_metric_no_run_records_in_one_line(tmp_path, capsys):
    from notus_lab.report import main

    launcher = StubLauncher(tmp_path / "s")
    launcher.launch([[f"data={d}", f"train.seed={s}"] for d, s in itertools.product(STRATEGIES[:2], (1, 2))], 0)
    with pytest.raises(ConfigError, match=r"^--metric='generation/win_rate' is invalid: no finished run records it"):
        main([str(tmp_path / "s"), "--metric", "generation/win_rate"])


def test_a_study_decided_on_a_local_benchmark_evaluates_its_arms_between_launches_and_never_waits(
    tmp_path, monkeypatch, capsys
):
    """hydra.sweeper.metric=lm_eval/<task>/<metric> needs no external judge: the sweeper has each finished arm
    evaluated (notus_lab/evaluate.py: ensure_evaluated, here planting lm_eval's file shapes) and looks at once."""
    import notus_lab.evaluate

    calls = []

    def planted(run_dir, tasks, *args, **kwargs):
        calls.append((run_dir.name, tuple(tasks)))
        won = [
            json.loads(line)["winner"] == "policy" for line in (run_dir / "generations.jsonl").read_text().splitlines()
        ]
        samples = [
            {
                "task": "world_choice",
                "subtask": "world_choice",
                "doc_id": i,
                "prompt_hash": f"h{i}",
                "metrics": {"acc": float(w)},
            }
            for i, w in enumerate(won)
        ]
        (run_dir / "lm_eval_samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
        (run_dir / "lm_eval.json").write_text(
            json.dumps({"tasks": {"world_choice": {"metrics": {"acc": float(np.mean(won))}}}})
        )

    monkeypatch.setattr(notus_lab.evaluate, "ensure_evaluated", planted)
    launcher = StubLauncher(tmp_path / "s", gap=0.3)
    stub(
        "SequentialSweeper",
        tmp_path / "s",
        launcher,
        {"data": "critique,mean_rating"},
        metric="lm_eval/world_choice/acc",
    ).sweep([])
    state = rounds.load(tmp_path / "s")
    assert "waiting" not in state and state["rounds"][0]["metric"] == "lm_eval/world_choice/acc"
    assert state["outcome"] == "decided" and state["rounds"][-1]["pairs"][0]["decision"] == "b_wins"
    assert len(calls) == len(set(calls)) == len(set(launcher.launched))  # each arm evaluated once


def test_a_slurm_job_submitit_gave_up_on_while_it_was_requeued_is_waited_for_not_lost(tmp_path, monkeypatch, capsys):
    """submitit raises UncompletedJobError when its poll catches a requeued job between two accounting records;
    SLURM still holds the job, which then finishes. The sweeper waits for it to leave the queue and counts the arm
    by its run dir, instead of calling the batch lost. A job SLURM no longer lists is lost, as before."""
    from hydra.core.utils import JobStatus

    from hydra_plugins.notus_lab_sweepers import sweepers
    from tests.helpers import plant_judged

    bin_dir, calls = tmp_path / "bin", tmp_path / "squeue_calls"
    bin_dir.mkdir()
    # a fake squeue: lists job 36 for its first two calls (requeued, then running), then no longer knows it
    (bin_dir / "squeue").write_text(
        f'#!/bin/sh\necho x >> {calls}\nn=$(wc -l < {calls})\n[ "$n" -le 2 ] && echo 36 && exit 0\nexit 1\n'
    )
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    class UncompletedJobError(RuntimeError):
        pass

    exc = UncompletedJobError("Job 36 (task: 0) with path /x/.submitit/36/36_0_result.pkl")
    batch = [["data=mean_rating", "train.seed=1"], ["data=critique", "train.seed=1"]]
    plant_judged(tmp_path / run_dir_name(batch[0]), batch[0], [True, False])  # the requeued arm finished
    got = sweepers._after_requeue(exc, batch, tmp_path, poll_s=0.01)
    assert [r.status for r in got] == [JobStatus.COMPLETED, JobStatus.FAILED]
    assert len(calls.read_text().splitlines()) == 3
    calls.unlink()
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 1\n")  # a job SLURM no longer lists: it really died
    assert sweepers._after_requeue(exc, batch, tmp_path, poll_s=0.01) is None
    assert sweepers._after_requeue(RuntimeError("Job 36 died"), batch, tmp_path) is None
