"""A run's length in iterations, its learning rate at each of them, and where it is evaluated.

Both are computed once, on the host, before training: the loop reads the learning rate
of step ``i`` from a device tensor, so a step has no host arithmetic and a CUDA graph can
replay it.
"""

from __future__ import annotations

import numpy as np

from cnnconv.engine.spec import RunSpec


def total_iterations(spec: RunSpec, train_size: int) -> int:
    """The run's length in iterations (epochs times whole batches per epoch)."""
    if spec.iterations is not None:
        return spec.iterations
    assert spec.epochs is not None
    return max(1, round(spec.epochs * (train_size // spec.batch_size)))


def evaluation_points(spec: RunSpec, iterations: int) -> list[int]:
    """The iterations after which test accuracy is measured: ``eval_at`` within the run,
    and always the last."""
    return sorted({i for i in spec.eval_at if 0 < i < iterations} | {iterations})


def lr_multipliers(spec: RunSpec, iterations: int) -> np.ndarray:
    """The schedule as one multiplier per iteration."""
    t = np.arange(iterations) / iterations
    if spec.schedule == "constant":
        mult = np.ones(iterations)
    elif spec.schedule == "step":
        mult = spec.step_gamma ** np.searchsorted(np.array(spec.step_milestones), t, side="right")
    elif spec.schedule == "cosine":
        mult = 0.5 * (1 + np.cos(np.pi * t))
    else:
        xs, ys = zip(*spec.schedule_points)
        mult = np.interp(t, xs, ys)
    if spec.warmup > 0:
        mult = mult * np.minimum(1.0, (np.arange(iterations) + 1) / (spec.warmup * iterations))
    return mult
