"""What a run cost: wall seconds times the devices it held, on which kind of device. The report adds these
up over a sweep and projects a design's cost from them."""

from __future__ import annotations

import platform


def device_kind(hw) -> str:
    """The device a run held: the GPU's name, or the CPU's."""
    if hw.device == "cuda":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine() or "cpu"


def compute_record(hw, wall_s: float, world_size: int) -> dict:
    """{device, kind, devices, wall_s, device_hours}: on GPUs a device is a GPU; on CPU it is a core (the
    torch threads of every rank), so CPU-hours are core-hours."""
    import torch

    on_gpu = hw.device == "cuda"
    devices = world_size if on_gpu else world_size * torch.get_num_threads()
    return {
        "device": "gpu" if on_gpu else "cpu",
        "kind": device_kind(hw),
        "devices": devices,
        "wall_s": round(wall_s, 2),
        "device_hours": round(wall_s * devices / 3600, 6),
        "unit": "GPU-hours" if on_gpu else "CPU core-hours",
    }
