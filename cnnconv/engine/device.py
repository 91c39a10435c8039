"""Where a run trains: the torch device, its free memory, its fast-kernel settings, and
the environment recorded with every run."""

from __future__ import annotations

import contextlib
import functools
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from cnnconv.engine.kernels import product_rules
from cnnconv.engine.spec import ENGINE_VERSION


def resolve_device(name: str) -> torch.device:
    """A torch device, with a clear error where CUDA is asked for but absent."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} asked for, but CUDA is not available here; use cpu")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name!r} asked for, but this machine has "
                               f"{torch.cuda.device_count()} CUDA device(s): use cuda:0 .. "
                               f"cuda:{torch.cuda.device_count() - 1}")
    return device


# How many processes train on each CUDA device of this machine at once (pytest-xdist
# workers sharing a GPU); set by the plugin through ``share_device``.
_processes_per_device = 1


def share_device(processes: int) -> None:
    """Declare that ``processes`` processes (this one among them) train on this process's
    CUDA device at once, so that each plans its stacks within its share of the memory."""
    global _processes_per_device
    if processes < 1:
        raise ValueError(f"share_device: processes must be >= 1, got {processes}")
    _processes_per_device = processes


def free_memory(device: torch.device) -> int | None:
    """Bytes a new stack may use on a CUDA device: free on the device
    (``torch.cuda.mem_get_info``) plus what PyTorch's allocator holds but does not use,
    and at most this process's share of the device (``share_device``) less what it has
    allocated -- without the share, workers starting together on one GPU would each plan
    for all of its free memory. None on a CPU, where the engine does not plan memory."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    reusable = torch.cuda.memory_reserved(device) - allocated
    return max(0, min(free + reusable, total // _processes_per_device - allocated))


def driver_version() -> str:
    """The NVIDIA kernel driver's version, read from /proc (torch does not report it)."""
    path = Path("/proc/driver/nvidia/version")
    if not path.exists():
        return "unknown"
    words = path.read_text().split()
    return next((w for w in words if w[:1].isdigit() and w.count(".") >= 1), "unknown")


@contextlib.contextmanager
def fast_kernels(device: torch.device, seeds: int = 1) -> Iterator[None]:
    """The fastest kernels for a run of ``seeds`` stacked seeds on ``device``.

    On CUDA, cuDNN times its convolution algorithms once per shape and keeps the fastest
    (``cudnn.benchmark``): a stacked run's grouped convolutions otherwise get a heuristic
    choice. The flag is set directly: ``cudnn.flags()`` would also write the legacy
    ``allow_tf32`` setter, which ``precision`` must not mix with. On a CPU, a stack's thin
    grouped convolutions run seed by seed (``kernels``: oneDNN's grouped kernel is slow
    there). Restored on exit."""
    if device.type != "cuda":
        with product_rules(seeds=seeds) if seeds > 1 else contextlib.nullcontext():
            yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def device_name(device: torch.device) -> str:
    """The name throughput is measured under: the GPU's name, or the CPU's model with the
    threads torch uses (a CPU's speed depends on both)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{_cpu_model()}, {torch.get_num_threads()} threads"


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, read once per process)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def environment(device: torch.device) -> dict[str, str]:
    """Library versions and the device, recorded with every run. The device index is
    recorded here, not in the run's key (spec.py)."""
    from cnnconv import __version__

    env = {
        "cnnconv": __version__,
        "engine": str(ENGINE_VERSION),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "threads": str(torch.get_num_threads()),
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        env.update({
            "device": torch.cuda.get_device_name(index),
            "device_index": str(index),
            "cuda": str(torch.version.cuda),
            "cudnn": str(torch.backends.cudnn.version()),
            "driver": driver_version(),
        })
    else:
        env["device"] = platform.processor() or platform.machine() or "cpu"
    return env
