"""Composition of every group option; bad input fails fast, in one line, before anything loads."""

import time

import pytest

from notus_lab.config.compose import preflight
from notus_lab.config.derived import gradient_accumulation_steps
from notus_lab.config.options import group_options
from notus_lab.config.validate import validate
from notus_lab.core.errors import ConfigError
from tests.helpers import cli, compose

GROUPS = ("data", "model", "optimizer", "hardware", "base")


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in group_options(g)])
def test_every_group_option_composes_and_validates(group, option):
    extra = ["data.source=tests/rows.py"] if option == "prebinarized" else []
    if group == "hardware":  # 8-GPU profiles need a global batch of at least 8 x 8
        extra = ["train.global_batch_size=128"]
    cfg = compose(f"{group}={option}", *extra)
    if group != "data":
        validate(cfg)
    assert cfg[group] is not None


def test_the_adapter_groups_build_the_peft_and_bitsandbytes_configs_of_the_recipes(tmp_path):
    """What peft and bitsandbytes receive (Notus v1 LoRA's card: r 64, alpha 16, dropout 0.1 on q/k/v/o; the
    handbook's QLoRA config: nf4, r 128 on the seven projections), and what TRL receives from the tiny base."""
    import torch

    from notus_lab.models.loading import lora_config, quantization_config
    from notus_lab.train.trainer import dpo_config

    lora = lora_config(compose("model=lora").model)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, sorted(lora.target_modules)) == (
        64,
        16,
        0.1,
        ["k_proj", "o_proj", "q_proj", "v_proj"],
    )
    qlora_cfg = compose("model=qlora", "hardware=gpu")
    qlora, bnb = lora_config(qlora_cfg.model), quantization_config(qlora_cfg)
    assert (qlora.r, len(qlora.target_modules)) == (128, 7) and "gate_proj" in qlora.target_modules
    assert (bnb.load_in_4bit, bnb.bnb_4bit_quant_type, bnb.bnb_4bit_compute_dtype) == (True, "nf4", torch.bfloat16)
    assert quantization_config(compose("model=lora")) is None
    # the tiny base rescales the 7B learning rate and adds an NLL term (conf/base/tiny.yaml says why)
    tiny = dpo_config(compose("optimizer=rmsprop"), tmp_path, [])
    seven = dpo_config(compose("optimizer=rmsprop", "base=zephyr_sft_full", "hardware=cpu"), tmp_path, [])
    assert tiny.learning_rate > 100 * seven.learning_rate and seven.learning_rate == 5e-7
    assert "sft" in tiny.loss_type and seven.loss_type == ["sigmoid"]
    assert dpo_config(compose("optimizer=rmsprop", "optimizer.lr=1e-4"), tmp_path, []).learning_rate == 1e-4


def test_hardware_never_changes_the_global_batch():
    cpu, gpu = compose("hardware=cpu"), compose("hardware=gpu", "hardware.per_device_batch_size=16")
    assert cpu.train.global_batch_size == gpu.train.global_batch_size == 32
    assert gradient_accumulation_steps(cpu) * cpu.hardware.per_device_batch_size == 32
    assert gradient_accumulation_steps(gpu) == 2
    with pytest.raises(ConfigError, match=r"train.global_batch_size=20 .*multiple of .* 8 x 1 = 8"):
        validate(compose("train.global_batch_size=20"))


BAD = [  # (overrides, text the one-line error must contain)
    (["model=nope"], "model='nope' is invalid: allowed one of full, lora, qlora"),
    (["data=nope"], "data='nope' is invalid: allowed one of aspect, critique"),
    (["beta=0"], "beta=0.0 is invalid: allowed a number > 0"),
    (["beta=-0.1"], "beta=-0.1 is invalid"),
    (["beta=abc"], "beta='abc' is invalid"),
    (["model=lora", "model.lora_r=0"], "model.lora_r=0 is invalid: allowed an integer > 0"),
    (["train.global_batch_size=30"], "train.global_batch_size=30 is invalid: allowed a multiple"),
    (["train.max_length=0"], "train.max_length=0 is invalid"),
    (["train.max_prompt_length=300"], "train.max_prompt_length=300 is invalid"),
    (["data.source=/no/such/file.jsonl"], "data.source='/no/such/file.jsonl' is invalid"),
    (["train.foo=1"], "train.foo='1' is invalid: unknown key; allowed keys of train:"),
    (["bogus=1"], "bogus='1' is invalid: unknown key"),
    (["train.epochs=many"], "train.epochs='many' is invalid"),
    (["loss_type=dpo"], "loss_type='dpo' is invalid: allowed one of sigmoid"),
    (["data=aspect", "data.aspect=tone"], "data.aspect='tone' is invalid: allowed one of helpfulness"),
    (["model=full", "model.quantization=4bit"], "model.quantization='4bit' is invalid"),
    (["hardware.precision=fp16"], "hardware.precision='fp16' is invalid: allowed fp32 or bf16 on hardware.device=cpu"),
    (
        [
            "hardware=fsdp_x8",
            "hardware.device=cpu",
            "hardware.precision=fp32",
            "hardware.attn_implementation=sdpa",
            "train.global_batch_size=128",
        ],
        "hardware.distributed='fsdp' is invalid: allowed none, ddp or deepspeed on hardware.device=cpu",
    ),
    (["hardware.num_processes=2"], "hardware.distributed='none' is invalid"),
    (["optimizer.name=lion"], "optimizer.name='lion' is invalid"),
    (["optimizer.lr=0"], "optimizer.lr=0.0 is invalid"),
    (["data.test_size=0"], "data.test_size=0.0 is invalid"),
    (["data.world.critique_bug_rate=2"], "data.world.critique_bug_rate=2.0 is invalid"),
    (["wandb.mode=maybe"], "wandb.mode='maybe' is invalid"),
    (["export.merge=true"], "export.merge=True is invalid"),
    (["data=prebinarized"], "data.source='world' is invalid"),
    (["data.decontaminate=everything"], "data.decontaminate='everything' is invalid"),
    (["eval.signals=[nope]"], "eval.signals='nope' is invalid: allowed one of aspect, critique"),
    (["sweep_name=a/b"], "sweep_name='a/b' is invalid: allowed letters, digits"),
    (["hardware=fsdp_x8", "train.global_batch_size=128", "hardware.fsdp=null"], "hardware.fsdp=None is invalid"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_override_is_one_clear_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        preflight(overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


SWEEPS = [  # each sweep holds one bad value; Hydra's parser must expand it for the preflight to see it
    (["-m", "beta=range(-0.1,0.2,0.1)"], "beta=-0.1 is invalid: allowed a number > 0"),
    (["-m", "beta=choice(0.1,-1)"], "beta=-1.0 is invalid"),
    (["-m", "train.seed=range(1,3)", "optimizer=glob(*)", "optimizer.lr=-1"], "optimizer.lr=-1.0 is invalid"),
    (
        ["-m", "+experiment=critique_vs_rating", "data.world.critique_bug_rate=0.5,3"],
        "data.world.critique_bug_rate=3.0 is invalid",
    ),
    (["-m", "beta=range(0.1"], "no viable alternative at input 'range(0.1'"),
]


@pytest.mark.parametrize("overrides,message", SWEEPS, ids=[" ".join(o) for o, _ in SWEEPS])
def test_sweeps_are_read_with_hydras_own_parser(overrides, message):
    with pytest.raises(ConfigError) as err:
        preflight(overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_sweep_values_expand_as_hydra_expands_them():
    from notus_lab.config.compose import sweep_variants

    variants = sweep_variants(["beta=range(0.01,0.1,0.04)", "data=glob(critique*)", "run_name='a,b'"])
    assert {v[1] for v in variants} == {"beta=0.01", "beta=0.05", "beta=0.09"}
    assert {v[2] for v in variants} == {"data=critique", "data=critique_curated", "data=critique_fixed"}
    assert all(v[0] == "run_name='a,b'" for v in variants)  # a quoted comma is one value, not a sweep
    # an experiment's own sweep (hydra.sweeper.params) is checked too, unless the command line sets the key
    assert sweep_variants(["beta=0.1"], {"beta": "0.5,0.6", "train.seed": "1,2"}) == [
        ["beta=0.1", "train.seed=1"],
        ["beta=0.1", "train.seed=2"],
    ]
    preflight(["-m", "+experiment=critique_vs_rating", "beta=range(0.1,0.3,0.1)", "run_name='a,b'"])


def test_bad_overrides_fail_fast_from_the_command_line():
    """The real CLI: exit 2, one line on stderr, no model or data loaded, well under 10 s."""
    for overrides, message in (BAD[0], BAD[2], BAD[10]):
        start = time.time()
        proc = cli("notus_lab", *overrides)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"error: {message}"] or message in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert time.time() - start < 10


def test_run_dirs_of_different_commands_never_collide():
    from notus_lab.config.science import _slug

    assert _slug("beta=0.1,data=critique") == "beta=0.1,data=critique" and _slug("") == "default"
    long_a = "data.source=/some/very/long/path/" + "x" * 200 + ",train.seed=1"
    long_b = long_a.replace("train.seed=1", "train.seed=2")
    assert _slug(long_a) != _slug(long_b) and len(_slug(long_a)) <= 200
    assert _slug(long_a) == _slug(long_a)  # the same command finds the same dir


def test_qlora_without_a_usable_bitsandbytes_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` now fails, as on a bare box
    with pytest.raises(
        ConfigError,
        match=r"^model.quantization='4bit' is invalid: bitsandbytes is not usable here "
        r"\((ImportError|ModuleNotFoundError)\); allowed none$",
    ):
        preflight(["model=qlora"])


def test_deepspeed_profiles_without_a_usable_deepspeed_are_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "deepspeed", None)  # as on a box where it is not installed
    with pytest.raises(
        ConfigError,
        match=r"^hardware.distributed='deepspeed' is invalid: deepspeed is not usable "
        r"here \((ImportError|ModuleNotFoundError); pip install -e '\.\[deepspeed\]'\); allowed",
    ):
        preflight(["hardware=a100_40gb_x8"])


def test_flash_attention_asked_where_it_cannot_load_is_one_line_naming_the_install(monkeypatch):
    import importlib.util

    from notus_lab.config import validate as P

    monkeypatch.setattr(P, "_on_a_cuda_machine", lambda: True)  # the GPU node the job runs on
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flash_attn" else real(name, *a))
    with pytest.raises(
        ConfigError,
        match=r"^hardware.attn_implementation='flash_attention_2' is invalid: allowed auto, "
        r"sdpa or eager: flash_attn is not installed here \(pip install flash-attn",
    ):
        validate(compose("+experiment=notus_7b_v1"))
    validate(compose("+experiment=notus_7b_v1", "hardware.attn_implementation=auto"))  # `auto` falls back, recorded


def test_auto_attention_takes_flash_attention_only_where_it_runs(monkeypatch):
    import importlib.util

    import torch

    from notus_lab.models.loading import attention

    gpu = compose("hardware=gpu").hardware
    assert gpu.attn_implementation == "auto" and attention(compose().hardware) == "sdpa"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else real(name, *a)
    )
    assert attention(gpu) == "flash_attention_2"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flash_attn" else real(name, *a))
    assert attention(gpu) == "sdpa"


@pytest.mark.parametrize(
    "overrides",
    [
        ["hardware=_defaults"],
        ["--cfg", "job", "hardware=_defaults"],
        ["-m", "data=critique,_defaults"],
        ["--help", "model=_defaults"],
    ],
    ids=["run", "cfg job", "sweep", "help"],
)
def test_a_groups_defaults_file_is_refused_as_an_option_in_one_line(overrides):
    with pytest.raises(ConfigError) as err:
        preflight(overrides)
    group = next(o for o in overrides if "=" in o).split("=")[0]
    assert str(err.value).startswith(f"{group}='_defaults' is invalid: conf/{group}/_defaults.yaml holds the defaults")
    assert "_defaults," not in str(err.value).split("allowed one of ")[1] and "\n" not in str(err.value)


def test_help_is_notus_labs_own_hydra_template():
    """`--help` (Hydra's hydra.help, conf/hydra/help/notus.yaml): every group with its options and never `_defaults`,
    the science knobs at the command's values, three examples, where the docs are; not "powered by Hydra"."""
    proc = cli("notus_lab", "--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "powered by Hydra" not in out and "_defaults" not in out
    for group in ("data", "model", "base", "optimizer", "hardware", "judge", "experiment", "hydra/launcher"):
        assert f"{group}  " in out and ", ".join(group_options(group)) in out, group
    assert "beta=0.1" in out and "rpo_alpha=1.0" in out and "optimizer.lr=0.0002" in out  # the tiny base's values
    assert out.count("python -m notus_lab") >= 2 and "./sweep.sh" in out and "docs/reference/config.md" in out
    seven = cli("notus_lab", "--help", "base=zephyr_sft_full").stdout  # the command's own values
    assert "rpo_alpha=0.0" in seven and "optimizer.lr=5e-07" in seven
