"""pytest-xdist workers on one machine: which GPU each trains on, and each one's share of
the CPU cores and of its GPU's memory."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from cnnconv.engine.device import share_device


def worker_device(worker_id: str | None, device_count: int) -> str:
    """The CUDA device for an xdist worker: ``gwN`` -> ``cuda:(N mod count)``."""
    if not worker_id or not worker_id.startswith("gw") or device_count < 2:
        return "cuda"
    return f"cuda:{int(worker_id[2:]) % device_count}"


def workers_on_device(worker_id: str | None, workers: int, device_count: int) -> int:
    """How many of ``workers`` xdist workers train on ``worker_id``'s device (itself
    included): with 3 workers on 2 GPUs, gw0 and gw2 share cuda:0, gw1 has cuda:1."""
    if not worker_id or workers < 2:
        return 1
    mine = worker_device(worker_id, device_count)
    return sum(worker_device(f"gw{n}", device_count) == mine for n in range(workers))


def share_with_workers(environ: Mapping[str, str]) -> None:
    """In a pytest-xdist worker (``environ`` says how many there are), take a share of
    the machine: of the CPU cores, instead of oversubscribing them, and of the GPU it
    trains on, so that workers on one device each plan stacks within their share."""
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2:
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    if torch.cuda.is_available():
        share_device(workers_on_device(environ.get("PYTEST_XDIST_WORKER"), workers,
                                       torch.cuda.device_count()))


def claim_device(base: str) -> str:
    """The device a claim of a scale on ``base`` trains on in this process: its own GPU
    under xdist (``worker_device``), else ``base``."""
    if base != "cuda" or not torch.cuda.is_available():
        return base
    return worker_device(os.environ.get("PYTEST_XDIST_WORKER"), torch.cuda.device_count())
