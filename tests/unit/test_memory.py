"""The memory preflight: known cases of the 7B recipes, decided before anything loads."""

import pytest

from notus_lab.config import memory
from notus_lab.config.validate import validate
from notus_lab.core.errors import ConfigError
from tests.helpers import cli, compose

SHAPE_7B = dict(total_params=7.24e9, largest_layer_params=32000 * 4096)  # Mistral-7B: the embedding / lm_head


@pytest.mark.parametrize("offload_optimizer, offload_param", [(False, False), (True, False), (True, True)])
def test_zero3_model_states_are_deepspeeds_own_estimate_on_the_7b_shape(offload_optimizer, offload_param):
    """DeepSpeed's estimator (Adam: 12 bytes of master + moments a parameter), on 8 GPUs of one node."""
    stage3 = pytest.importorskip("deepspeed.runtime.zero.stage3")
    cpu, gpu, _ = stage3.estimate_zero3_model_states_mem_needs(
        num_gpus_per_node=8,
        num_nodes=1,
        cpu_offload=offload_optimizer,
        cpu_offload_params=offload_param,
        zero_init=True,
        additional_buffer_factor=1.5,
        **SHAPE_7B,
    )
    ours_cpu, ours_gpu = memory.zero3_model_states(
        SHAPE_7B["total_params"],
        SHAPE_7B["largest_layer_params"],
        8,
        1,
        offload_optimizer,
        offload_param,
        optimizer_bytes=12,
    )
    assert ours_gpu == pytest.approx(gpu, rel=1e-6)
    assert ours_cpu == pytest.approx(cpu, rel=1e-6, abs=1)  # DeepSpeed's zero_init on-GPU case keeps ~0 on the CPU
    assert memory.largest_module(compose("+experiment=notus_7b_v1").base.shape) == SHAPE_7B["largest_layer_params"]


def test_a100_40gb_x8_fits_a_notus_full_run_without_offload_and_the_offload_profile_needs_the_node():
    """Corrected ZeRO-3: fp32 gradient partitions (4 bytes), fp32 master + RMSprop (8), the gathered layer."""
    cfg = compose("+experiment=notus_7b_v1")
    assert cfg.hardware.name == "a100_40gb_x8" and cfg.hardware.deepspeed.zero_optimization.offload_param is None
    need = memory.estimate(cfg)
    n = 7.24e9 / 8 / 2**30  # parameters per GPU, in Gi
    assert need["weights"] == pytest.approx(2 * n, abs=0.1) and need["gradients"] == pytest.approx(4 * n, abs=0.1)
    assert need["optimizer"] == pytest.approx(8 * n, abs=0.1) and need["reference"] == pytest.approx(2 * n, abs=0.1)
    assert 24 < need["total"] < 40  # fits 40 GB with a margin: no offload needed
    validate(cfg)
    offload = compose("+experiment=notus_7b_v1", "hardware=a100_40gb_x8_offload")
    gpu, host = memory.estimate(offload), memory.host_estimate(offload)
    assert gpu["optimizer"] == gpu["gradients"] == gpu["weights"] == 0 and gpu["total"] < need["total"]
    # on the node: 7.24B x (2 bf16 params + 4 fp32 grads + 4 master + 4 RMSprop) x 1.5, and the offloaded reference
    assert host["deepspeed_states"] == pytest.approx(7.24e9 * 14 * 1.5 / 2**30, abs=0.1)
    assert host["offloaded_reference"] == pytest.approx(7.24e9 * 2 * 1.5 / 2**30, abs=0.1)
    assert memory.host_estimate(cfg)["total"] < 128 < host["total"] < offload.hardware.node.mem_gb
    validate(offload)


def test_a_node_without_the_host_memory_the_run_needs_is_refused_in_one_line():
    cfg = compose("+experiment=notus_7b_v1", "hardware=a100_40gb_x8_offload", "hardware.node.mem_gb=128")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    line = str(err.value)
    assert "\n" not in line and line.startswith("hardware.node.mem_gb=128 is invalid: full fine-tuning of ")
    assert "GB of host memory per node (deepspeed_states 141.6" in line and "hardware.node.mem_gb >= " in line


def test_every_rank_holding_its_copy_counts_in_host_memory():
    """Without ZeRO-3's partitioned load, 8 DDP ranks each hold a whole bf16 base while loading."""
    lora = memory.host_estimate(
        compose("+experiment=notus_7b_v1_lora", "hardware=gpu", "hardware.num_processes=8", "hardware.distributed=ddp")
    )
    assert lora["checkpoint_loading"] == pytest.approx(8 * 7.24e9 * 2 / 2**30, abs=0.2)


def test_the_preflight_line_shows_both_memories(capsys):
    memory._said.clear()
    memory.check(compose("+experiment=critique_vs_rating_7b", "hardware=a100_40gb_x8"))
    line = capsys.readouterr().err.strip()
    assert line.startswith("memory preflight (hardware=a100_40gb_x8): ~30 GB per GPU of 40; ~")
    assert "GB host per node of the 128 GB the node asks for (deepspeed_states 5.9, checkpoint_loading 40" in line


def test_a_full_7b_on_one_80gb_gpu_does_not_fit_and_the_error_says_what_would():
    cfg = compose("+experiment=notus_7b_v1", "hardware=gpu")
    need = memory.estimate(cfg)
    # fp32 master weights + fp32 gradients + RMSprop state + a bf16 reference: ~100 GB before activations
    assert need["weights"] == need["gradients"] == need["optimizer"] == pytest.approx(7.24e9 * 4 / 2**30, abs=0.1)
    assert need["total"] > 80
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    line = str(err.value)
    assert "\n" not in line and line.startswith(
        "hardware.gpu_memory_gb=80 is invalid: full fine-tuning of "
        "alignment-handbook/zephyr-7b-sft-full on hardware=gpu needs ~"
    )
    assert "model=lora (~" in line and "model=qlora (~" in line and "hardware=a100_40gb_x8 (~" in line


def test_the_handbook_qlora_recipe_fits_one_gpu():
    cfg = compose("+experiment=handbook_qlora")
    need = memory.estimate(cfg)
    assert cfg.hardware.num_processes == 1 and need["total"] < 24  # fits a 24 GB card, let alone 80 GB
    assert need["reference"] == 0 and need["weights"] < 7.24e9 * 0.6 / 2**30 + 2  # 4-bit base + fp32 adapters
    validate(cfg)


def test_the_estimate_follows_batch_length_and_checkpointing():
    base = memory.estimate(compose("+experiment=notus_7b_v1", "hardware=h100_x8"))
    longer = memory.estimate(
        compose("+experiment=notus_7b_v1", "hardware=h100_x8", "train.max_length=2048", "train.max_prompt_length=512")
    )
    no_ckpt = memory.estimate(
        compose("+experiment=notus_7b_v1", "hardware=h100_x8", "hardware.gradient_checkpointing=false")
    )
    assert (
        longer["activations"] == pytest.approx(2 * base["activations"], rel=0.01)
        and longer["logits"] == 2 * base["logits"]
    )
    assert no_ckpt["activations"] > 5 * base["activations"]
    assert (
        memory.estimate(compose("+experiment=notus_7b_v1", "hardware=h100_x8", "train.precompute_reference=true"))[
            "reference"
        ]
        == 0
    )


def test_the_cli_refuses_a_run_that_cannot_fit_before_loading_anything():
    proc = cli("notus_lab", "+experiment=notus_7b_v1", "hardware=gpu")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "needs ~" in proc.stderr and "allowed model=lora" in proc.stderr


# ---------------------------------------------------------------------------------------------
# What DeepSpeed's estimator leaves out, and the optimizer state the recipes use, held to the libraries' own numbers


def test_zero3_counts_the_parameters_it_keeps_live_at_deepspeeds_default():
    """stage3_max_live_parameters: up to 1e9 bf16 parameters gathered at once (~1.9 GiB), DeepSpeed's own default;
    the profile's value moves the estimate."""
    zero_config = pytest.importorskip("deepspeed.runtime.zero.config")
    assert memory.MAX_LIVE_DEFAULT == zero_config.DeepSpeedZeroConfig().max_live_parameters
    cfg = compose("+experiment=notus_7b_v1")
    live = memory.estimate(cfg)["live_parameters"]
    assert live == pytest.approx(1e9 * 2 / memory.GB, abs=0.05)  # 1.9 GiB of bf16
    fewer = compose(
        "+experiment=notus_7b_v1", "hardware.deepspeed.zero_optimization.stage3_max_live_parameters=100000000"
    )
    assert memory.estimate(fewer)["live_parameters"] == pytest.approx(live / 10, abs=0.05)
    assert memory.estimate(fewer)["total"] < memory.estimate(cfg)["total"] - 1.5


def test_fsdp_counts_its_root_unit_as_torch_builds_the_model():
    """With every MistralDecoderLayer its own FSDP unit, the root holds what is left: the parameters of the model
    that transformers builds from the 7B shape, outside the decoder layers (counted on the meta device)."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    shape = compose("+experiment=notus_7b_v1", "hardware=fsdp_x8").base.shape
    config = MistralConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=2,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
    )
    with torch.device("meta"):
        model = MistralForCausalLM(config)
    in_layers = {id(p) for layer in model.model.layers for p in layer.parameters()}
    root = sum(p.numel() for p in model.parameters() if id(p) not in in_layers)
    assert memory.fsdp_root_parameters(shape) == root
    cfg = compose("+experiment=notus_7b_v1", "hardware=fsdp_x8")
    assert memory.estimate(cfg)["fsdp_root_unit"] == pytest.approx(root * 2 / memory.GB, abs=0.05)


@pytest.mark.parametrize("optim", ["rmsprop", "adamw_torch"])
def test_the_optimizer_state_per_parameter_is_what_torch_allocates(optim):
    """The recipes' RMSprop (Notus, Zephyr) and the handbook's AdamW, as the Trainer builds them: one step on a
    small model, then the bytes of the optimizer's state per trainable parameter."""
    import torch
    from transformers import Trainer, TrainingArguments

    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 8))
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(
        TrainingArguments(output_dir="unused", optim=optim, use_cpu=True)
    )
    opt = cls(model.parameters(), **kwargs)
    model(torch.randn(4, 64)).sum().backward()
    opt.step()
    state = sum(
        t.numel() * t.element_size()
        for s in opt.state.values()
        for t in s.values()
        if torch.is_tensor(t) and t.dim() > 0
    )
    assert state / sum(p.numel() for p in model.parameters()) == memory.OPTIMIZER_STATE[optim]
