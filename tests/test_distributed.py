"""Scale-out: a real 2-process DDP run through the entrypoint, and the distributed profiles as data."""

import json

import pytest
from omegaconf import OmegaConf

from notus_lab.config import gradient_accumulation_steps
from notus_lab.distributed import accelerate_command
from notus_lab.train import engine_arguments

from conftest import QUICK, cli, compose


def test_two_process_ddp_trains_one_model_with_the_same_global_batch(tmp_path):
    """The silent failures: `accelerate launch --cpu` starting one process, and ranks that each train
    their own copy (no use_cpu): both show up as world_size 1 or a different number of steps."""
    one = cli("notus_lab", *QUICK, "wandb.mode=disabled", f"hydra.run.dir={tmp_path / 'one'}")
    two = cli("notus_lab", "hardware=ddp_cpu_x2", *QUICK, f"hydra.run.dir={tmp_path / 'two'}")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (m1["world_size"], m1["gradient_accumulation_steps"]) == (1, 4)  # 32 = 8 x 4 x 1
    assert (m2["world_size"], m2["gradient_accumulation_steps"]) == (2, 2)  # 32 = 8 x 2 x 2
    assert m2["global_batch_size"] == m1["global_batch_size"] == 32
    assert m2["train"]["steps"] == m1["train"]["steps"] > 0  # same pairs per optimizer step
    log = two.stdout + two.stderr
    assert "accelerate.commands.launch" in log and "--num_processes 2" in log
    assert len(list((tmp_path / "two" / "wandb").glob("offline-run-*"))) == 1  # rank 0 only


def test_zero3_profiles_offload_only_where_memory_needs_it():
    offload = engine_arguments(compose("hardware=a100_40gb_x8").hardware)["deepspeed"]["zero_optimization"]
    assert offload["stage"] == 3
    assert offload["offload_param"]["device"] == offload["offload_optimizer"]["device"] == "cpu"
    for profile in ("a100_80gb_x8", "h100_x8"):
        zero = engine_arguments(compose(f"hardware={profile}").hardware)["deepspeed"]["zero_optimization"]
        assert zero["stage"] == 3 and "offload_param" not in zero and "offload_optimizer" not in zero
    fsdp = engine_arguments(compose("hardware=fsdp_x8").hardware)
    assert fsdp["fsdp"] == "full_shard auto_wrap"
    assert fsdp["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["MistralDecoderLayer"]
    assert engine_arguments(compose("hardware=ddp_cpu_x2").hardware) == {}


@pytest.mark.parametrize("experiment,hardware,accumulation", [
    ("notus_7b_v1", "a100_40gb_x8", 1),  # 64 = 8 x 1 x 8, as Notus ran it
    ("notus_7b_v1", "gpu", 8),  # the same global batch on one GPU
    ("notus_7b_v1_lora", "h100_x8", 32),  # 512 = 2 x 32 x 8: the recipe sets 2 per device
    ("handbook_2024", "fsdp_x8", 2),  # 128 = 8 x 2 x 8
])
def test_profiles_keep_the_recipes_global_batch(experiment, hardware, accumulation):
    cfg = compose(f"+experiment={experiment}", f"hardware={hardware}")
    hw = cfg.hardware
    assert gradient_accumulation_steps(cfg) == accumulation
    assert hw.per_device_batch_size * accumulation * hw.num_processes == cfg.train.global_batch_size
    assert cfg.train == compose(f"+experiment={experiment}").train and cfg.beta == compose(f"+experiment={experiment}").beta


def test_multi_node_launch_takes_rank_and_master_from_slurm(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu-a,gpu-b")
    monkeypatch.setenv("MASTER_PORT", "29511")
    cfg = compose("hardware=h100_x8", "hardware.num_nodes=2")
    cmd = " ".join(accelerate_command(cfg, tmp_path, ["hardware=h100_x8", "hardware.num_nodes=2"]))
    assert "--num_processes 16 --num_machines 2" in cmd
    assert "--machine_rank 1 --main_process_ip gpu-a --main_process_port 29511" in cmd
    assert cmd.endswith(f"-m notus_lab hardware=h100_x8 hardware.num_nodes=2 hydra.run.dir='{tmp_path}'")


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
