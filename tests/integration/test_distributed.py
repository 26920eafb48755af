"""Scale-out: real 2-process DDP and DeepSpeed ZeRO-3 runs through the entrypoint, and the profiles as data."""

import importlib.util
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from notus_lab.config.derived import gradient_accumulation_steps
from notus_lab.train.launcher import accelerate_command
from notus_lab.train.trainer import engine_arguments
from tests.helpers import QUICK, cli, compose

pytestmark = pytest.mark.slow  # trains or builds models: the full suite, not the fast tier


# A GPU profile rehearsed on this CPU box: its engine settings untouched, only where it runs changed
ON_TWO_CPU_RANKS = (
    "hardware.device=cpu",
    "hardware.num_processes=2",
    "hardware.precision=fp32",
    "hardware.attn_implementation=sdpa",
)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    proc = cli("notus_lab", "hardware=ddp_cpu_x2", "optimizer=rmsprop", *QUICK, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def test_two_process_ddp_trains_one_model_with_the_same_global_batch(tmp_path, ddp_run):
    """The silent failures: `accelerate launch --cpu` starting one process, and ranks that each train
    their own copy (no use_cpu): both show up as world_size 1 or a different number of steps."""
    one = cli("notus_lab", "optimizer=rmsprop", *QUICK, "wandb.mode=disabled", f"hydra.run.dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    two_dir, two = ddp_run
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((two_dir / "metrics.json").read_text())
    assert (m1["world_size"], m1["gradient_accumulation_steps"], m1["engine"]) == (1, 4, "no")  # 32 = 8 x 4 x 1
    assert (m2["world_size"], m2["gradient_accumulation_steps"], m2["engine"]) == (2, 2, "multi_cpu")  # 8 x 2 x 2
    assert m1["rank0_parameter_share"] == m2["rank0_parameter_share"] == 1.0  # DDP replicates
    assert m2["global_batch_size"] == m1["global_batch_size"] == 32
    assert m2["train"]["steps"] == m1["train"]["steps"] > 0  # same pairs per optimizer step
    log = two.stdout + two.stderr
    assert "accelerate.commands.launch" in log and "--num_processes 2" in log
    assert len(list((two_dir / "wandb").glob("offline-run-*"))) == 1  # rank 0 only
    assert log.count("wrote config.yaml, data_report.json, provenance.json") == 1  # one writer
    assert "rank 0 wrote config.yaml" in log


def test_two_ranks_never_race_on_the_run_records(tmp_path):
    """Every rank used to write config.yaml, data_report.json and provenance.json through one temp name:
    a race that killed jobs now and then. Rank 0 writes, the others wait: three runs in a row finish."""
    for i in range(3):
        proc = cli(
            "notus_lab",
            "hardware=ddp_cpu_x2",
            "data.world.rows=200",
            "train.max_steps=2",
            "eval.signals=[]",
            "judge=none",
            "wandb.mode=disabled",
            f"hydra.run.dir={tmp_path / str(i)}",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (proc.stdout + proc.stderr).count("wrote config.yaml, data_report.json, provenance.json") == 1
        assert not list((tmp_path / str(i)).glob("*.tmp"))


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="pip install -e '.[test]' brings deepspeed")
@pytest.mark.parametrize(
    "profile",
    [
        "a100_40gb_x8_offload",  # as Notus ran it: ZeRO-3, parameters and optimizer offloaded to CPU
        "a100_40gb_x8",  # ZeRO-3 without offload (what the memory preflight says fits 8 x 40 GB)
    ],
)
def test_zero3_profiles_shard_for_real_and_train_what_ddp_trains(tmp_path, ddp_run, profile):
    """The 8-GPU profiles' DeepSpeed settings, run for real on 2 gloo ranks: the model is really sharded
    (rank 0 holds half of it), every rank joins the gathered save, and the run learns what DDP learns."""
    from safetensors.torch import load_file

    proc = cli(
        "notus_lab",
        f"hardware={profile}",
        "optimizer=rmsprop",
        *ON_TWO_CPU_RANKS,
        *QUICK,
        "wandb.mode=disabled",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp_dir, _ = ddp_run
    sharded, ddp = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path, ddp_dir))
    assert (sharded["engine"], sharded["world_size"], sharded["gradient_accumulation_steps"]) == ("deepspeed", 2, 2)
    # the recipe's optimizer really steps: with offload, accelerate would have swapped in DeepSpeedCPUAdam
    assert sharded["optimizer"]["class"] == ddp["optimizer"]["class"] == "RMSprop"
    assert sharded["optimizer"]["lr"] == 2e-4 and sharded["optimizer"]["alpha"] == 0.99
    assert 0.45 < sharded["rank0_parameter_share"] < 0.55
    # loaded already partitioned (zero.Init): no rank ever held the whole policy, as 8 ranks of a 7B must not
    assert 0.45 < sharded["rank0_parameter_share_at_load"] < 0.55 and ddp["rank0_parameter_share_at_load"] == 1.0
    assert sharded["train"]["steps"] == ddp["train"]["steps"]
    assert sharded["train"]["mean_loss"] == pytest.approx(ddp["train"]["mean_loss"], rel=1e-4)
    for name, m in ddp["eval"].items():
        assert sharded["eval"][name]["loss"] == pytest.approx(m["loss"], rel=1e-4), name
    saved, reference = (load_file(d / "model" / "model.safetensors") for d in (tmp_path, ddp_dir))
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in reference.items()}  # whole, not a shard
    # the same training, to a small fraction of what it moved the weights: ZeRO-3 reduces its fp32 gradient
    # partitions in another order than DDP's all-reduce, and RMSprop divides by their running size (with
    # transformers 5.25 / accelerate 1.16 the two end up to 4.1e-5 apart, after moving the weights by far more)
    from notus_lab.config.options import base_option
    from notus_lab.models.loading import base_path

    base = load_file(Path(base_path(base_option())) / "model.safetensors")
    moved = max((reference[k] - base[k]).abs().max().item() for k in reference if k in base)
    apart = max((saved[k] - reference[k]).abs().max().item() for k in saved)
    assert apart < 0.1 * moved, (apart, moved)


def test_zero3_profiles_offload_only_where_memory_needs_it():
    offload = engine_arguments(compose("hardware=a100_40gb_x8_offload").hardware)["deepspeed"]["zero_optimization"]
    assert offload["stage"] == 3
    assert offload["offload_param"]["device"] == offload["offload_optimizer"]["device"] == "cpu"
    for profile in ("a100_40gb_x8", "a100_80gb_x8", "h100_x8"):
        zero = engine_arguments(compose(f"hardware={profile}").hardware)["deepspeed"]["zero_optimization"]
        assert zero["stage"] == 3 and "offload_param" not in zero and "offload_optimizer" not in zero
    fsdp = engine_arguments(compose("hardware=fsdp_x8").hardware)
    assert fsdp["fsdp"] is True and fsdp["fsdp_config"]["version"] == 2
    assert fsdp["fsdp_config"]["reshard_after_forward"] is True  # full shard
    assert fsdp["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["MistralDecoderLayer"]
    assert engine_arguments(compose("hardware=ddp_cpu_x2").hardware) == {}


@pytest.mark.parametrize(
    "experiment,hardware,accumulation",
    [
        ("notus_7b_v1", "a100_40gb_x8", 1),  # 64 = 8 x 1 x 8, as Notus ran it
        ("notus_7b_v1", "gpu", 8),  # the same global batch on one GPU
        ("notus_7b_v1_lora", "h100_x8", 32),  # 512 = 2 x 32 x 8: the recipe sets 2 per device
        ("handbook_2024", "fsdp_x8", 2),  # 128 = 8 x 2 x 8
    ],
)
def test_profiles_keep_the_recipes_global_batch(experiment, hardware, accumulation):
    cfg = compose(f"+experiment={experiment}", f"hardware={hardware}")
    hw = cfg.hardware
    assert gradient_accumulation_steps(cfg) == accumulation
    assert hw.per_device_batch_size * accumulation * hw.num_processes == cfg.train.global_batch_size
    assert (
        cfg.train == compose(f"+experiment={experiment}").train
        and cfg.beta == compose(f"+experiment={experiment}").beta
    )


def test_the_fsdp_profile_becomes_accelerates_fsdp2_plugin():
    """FSDP runs on GPUs only (accelerate), so here the profile goes as far as CPU allows: through the
    Trainer's arguments into accelerate's own plugin, which rejects unknown or FSDP1-only settings."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    from notus_lab.train.trainer import dpo_config

    cfg = compose("hardware=fsdp_x8", "train.global_batch_size=128", "hardware.device=cpu", "hardware.precision=fp32")
    plugin = FullyShardedDataParallelPlugin(**dpo_config(cfg, Path("unused"), []).fsdp_plugin_args)
    assert (plugin.fsdp_version, plugin.reshard_after_forward, plugin.activation_checkpointing) == (2, True, True)
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    assert plugin.state_dict_type.name == "FULL_STATE_DICT" and plugin.cpu_ram_efficient_loading


def test_a_run_refuses_an_engine_other_than_the_profiles():
    from notus_lab.train.runtime_checks import check_engine

    check_engine(compose("hardware=ddp_cpu_x2").hardware, "multi_cpu", 2)
    check_engine(compose("hardware=a100_40gb_x8").hardware, "deepspeed", 8)
    with pytest.raises(
        RuntimeError,
        match="^hardware.distributed='fsdp' asks for fsdp over 8 processes, but accelerate set up multi_gpu over 8",
    ):
        check_engine(compose("hardware=fsdp_x8").hardware, "multi_gpu", 8)
    with pytest.raises(RuntimeError, match="over 2 processes, but accelerate set up no over 1"):
        check_engine(compose("hardware=ddp_cpu_x2").hardware, "no", 1)  # `accelerate launch --cpu`


def test_multi_node_launch_takes_rank_and_master_from_slurm(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu-a,gpu-b")
    monkeypatch.setenv("MASTER_PORT", "29511")
    cfg = compose("hardware=h100_x8", "hardware.num_nodes=2")
    cmd = " ".join(accelerate_command(cfg, tmp_path, ["hardware=h100_x8", "hardware.num_nodes=2"]))
    assert "--num_processes 16 --num_machines 2" in cmd
    assert "--machine_rank 1 --main_process_ip gpu-a --main_process_port 29511" in cmd
    assert cmd.endswith(f"-m notus_lab hardware=h100_x8 hardware.num_nodes=2 hydra.run.dir='{tmp_path}'")
    monkeypatch.delenv("MASTER_PORT")  # then the port comes from the job id: every node of a job agrees,
    monkeypatch.setenv("SLURM_JOB_ID", "123456")  # and two jobs sharing a node differ
    assert "--main_process_port 23456" in " ".join(accelerate_command(cfg, tmp_path, []))


def test_the_ranks_find_a_sweep_arms_dir_whatever_its_name(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arm = tmp_path / "+experiment=x,beta=0.1,data=it's"
    cmd = accelerate_command(compose("hardware=ddp_cpu_x2"), arm, ["hardware=ddp_cpu_x2"])
    parsed = OverridesParser.create().parse_override(cmd[-1])
    assert parsed.key_or_group == "hydra.run.dir" and parsed.value() == str(arm)


def test_the_multinode_slurm_preset_follows_the_hardware_profile():
    cfg = compose("hardware=h100_x8", "hardware.num_nodes=4", "hydra/launcher=slurm_multinode", return_hydra=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (4, 1, 8)
    cpu = compose("hardware=ddp_cpu_x2", "hardware.num_nodes=2", "hydra/launcher=slurm_multinode", return_hydra=True)
    assert OmegaConf.to_container(cpu.hydra.launcher, resolve=True)["gpus_per_node"] is None  # CPU ranks ask for none


def test_a_run_refuses_to_train_with_another_optimizer_than_it_asked_for():
    """What DeepSpeed's optimizer offload did to Notus's recipe: RMSprop asked, DeepSpeedCPUAdam stepping."""
    import torch
    from transformers import TrainerControl, TrainerState

    from notus_lab.train.runtime_checks import optimizer_check_callback

    class DeepSpeedCPUAdam(torch.optim.Adam):  # the class name is what the check reads
        pass

    class Wrapper:  # accelerate's and ZeRO's wrappers keep the real one under .optimizer
        def __init__(self, inner):
            self.optimizer = inner

    params = [torch.nn.Parameter(torch.zeros(2))]
    record = {}
    check = optimizer_check_callback("rmsprop", record)
    with pytest.raises(RuntimeError, match="^optimizer.name='rmsprop' asks for RMSprop, but DeepSpeedCPUAdam steps"):
        check.on_train_begin(
            None, TrainerState(), TrainerControl(), optimizer=Wrapper(Wrapper(DeepSpeedCPUAdam(params)))
        )
    assert record["class"] == "DeepSpeedCPUAdam"
    check.on_train_begin(
        None, TrainerState(), TrainerControl(), optimizer=Wrapper(torch.optim.RMSprop(params, lr=5e-7, alpha=0.9))
    )
    assert (record["class"], record["lr"], record["alpha"]) == ("RMSprop", 5e-7, 0.9)
