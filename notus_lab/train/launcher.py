"""Launch stage: a hardware profile with more than one process makes the entrypoint start itself again
under `accelerate launch`, one process per device (or CPU rank), so the user types one command.

Under SLURM each node's task launches the processes of its node; node rank and master address come
from the SLURM environment. DeepSpeed and FSDP settings travel as data in the profile and reach the
Trainer through its arguments (see train.dpo_config), never as hand-written launcher flags.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from notus_lab.config.derived import world_size
from notus_lab.core.errors import Interrupted
from notus_lab.judging.reward_judge import build_tiny_reward_model
from notus_lab.train.stop_signals import pass_on, preemption_signal, stop_signals

log = logging.getLogger("notus_lab")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_master_address() -> str:
    """The address of the allocation's first node: its NodeAddr, the address SLURM itself reaches it at
    (node names need not resolve), found with `scontrol show hostnames` (which expands n[1-4])."""
    nodes = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST") or "127.0.0.1"
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, timeout=30)
        hosts = out.stdout.split() if out.returncode == 0 else []
        first = hosts[0] if hosts else nodes.split(",")[0]
        node = subprocess.run(["scontrol", "show", "node", "-o", first], capture_output=True, text=True, timeout=30)
        addr = re.search(r"\bNodeAddr=(\S+)", node.stdout) if node.returncode == 0 else None
        return addr.group(1) if addr else first
    except OSError:
        return nodes.split(",")[0]


def accelerate_command(cfg, run_dir: Path, overrides: list[str]) -> list[str]:
    """`accelerate launch` of this same entrypoint for the profile in `cfg.hardware`."""
    hw = cfg.hardware
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(world_size(hw)),
        "--num_machines",
        str(hw.num_nodes),
        "--dynamo_backend",
        "no",
        "--mixed_precision",
        "no",
    ]
    # --multi_gpu starts the processes for DDP, DeepSpeed and FSDP alike (the Trainer sets the engine
    # up from its own arguments); on CPU it is also the only flag that really starts N ranks: `--cpu`
    # silently starts one. The ranks then join with gloo because the Trainer gets use_cpu=True.
    cmd.append("--multi_gpu")
    if hw.num_nodes > 1:  # every node's task computes the same port: two jobs sharing a node never collide
        port = os.environ.get("MASTER_PORT") or str(20000 + int(os.environ.get("SLURM_JOB_ID", "9500")) % 20000)
        cmd += [
            "--machine_rank",
            os.environ.get("SLURM_NODEID", "0"),
            "--main_process_ip",
            slurm_master_address(),
            "--main_process_port",
            port,
        ]
    else:
        cmd += ["--main_process_port", os.environ.get("MASTER_PORT") or str(free_port())]
    child_overrides = [o for o in overrides if not o.startswith(("hydra.run.dir", "hydra/"))]
    quoted = str(run_dir).replace("\\", "\\\\").replace("'", "\\'")  # a sweep's dir names hold '=' and ','
    return cmd + ["-m", "notus_lab", *child_overrides, f"hydra.run.dir='{quoted}'"]


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the ranks of an `accelerate launch`), from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def relaunch_if_needed(cfg, run_dir: Path, overrides: list[str]) -> bool:
    """Start the run's processes when the profile needs more than this one. True when it did.

    The ranks run in a session of their own, and this process passes a stop signal on to them: they save a
    checkpoint at the end of their step and exit. Then the signal's previous handler runs here (submitit's:
    requeue the arm), so a preempted multi-process arm resumes from that checkpoint like a single one."""

    preempt = preemption_signal()
    if "LOCAL_RANK" in os.environ:  # a rank: undo the launcher agent's ignore (see below), inherited through exec
        if preempt and signal.getsignal(preempt) == signal.SIG_IGN:
            signal.signal(preempt, signal.SIG_DFL)
        return False
    if world_size(cfg.hardware) == 1:
        return False
    prebuild(cfg)  # once, here: a build inside the ranks would set up training of its own among them
    cmd = accelerate_command(cfg, run_dir, overrides)
    log.info("launching %d processes: %s", world_size(cfg.hardware), " ".join(cmd))
    env = dict(os.environ)
    if cfg.hardware.device == "cpu":  # ranks share the cores: one thread pool slice each
        threads = cfg.hardware.threads or max(1, (os.cpu_count() or 1) // cfg.hardware.num_processes)
        env["OMP_NUM_THREADS"] = str(threads)
    # a session of their own: a terminal's Ctrl-C reaches this process only, and the launcher's agent never
    # turns a signal into a kill of ranks that are still saving. SLURM signals every process of the step:
    # the agent has no handler for the preemption signal and would die of it, so this process would requeue
    # the arm while its orphaned ranks still save (and, where SLURM tracks processes by parentage, outlive
    # the job and hold the run dir against the requeued attempt). The agent ignores it instead.
    proc = subprocess.Popen(
        cmd,
        env=env,
        start_new_session=True,
        preexec_fn=(lambda: signal.signal(preempt, signal.SIG_IGN)) if preempt else None,
    )
    received = []

    def forward(signum, frame):
        if not received:
            log.warning(
                "caught %s: the %d ranks save a checkpoint at the end of this step",
                signal.Signals(signum).name,
                world_size(cfg.hardware),
            )
        received.append(signum)
        for pid in child_pids(proc.pid):
            os.kill(pid, signum)

    previous = {}
    for sig in stop_signals():
        try:
            previous[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread
            pass
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        pass_on(previous.get(received[0]), received[0])  # submitit: requeue this arm, then exit
        raise Interrupted(
            f"stopped by {signal.Signals(received[0]).name}: the ranks saved a checkpoint in "
            f"{run_dir / 'checkpoints'}; run the same command again to resume"
        )
    if code != 0:
        raise RuntimeError(f"distributed run exited with code {code}; its log is in {run_dir}")
    return True


def join_deepspeed_comm(hw) -> None:
    """Under DeepSpeed, connect deepspeed.comm to the process group the training arguments set up, before
    any model loads: ZeRO-3's zero.Init (inside from_pretrained) counts the ranks through it, and without it
    sees one rank and refuses the global batch."""
    if hw.distributed != "deepspeed":
        return
    import deepspeed
    import torch.distributed as dist

    deepspeed.init_distributed(dist_backend=dist.get_backend() if dist.is_initialized() else None)


def prebuild(cfg) -> str:
    """Build (once per machine) what the run loads by name: the tiny base, the tiny reward-model judge.
    Called by the launcher of a multi-process run before it starts the ranks, and by every run: a build
    found in the cache costs nothing. Returns the base's local path or hub id."""
    from notus_lab.models.loading import base_path

    base = base_path(cfg.base)
    if cfg.judge.name == "reward_model" and cfg.judge.model == "tiny":
        build_tiny_reward_model(cfg.base)
    return base
