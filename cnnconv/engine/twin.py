"""The rounding yardstick: how far a change of computation may move a training curve.

Stacking seeds, replaying a CUDA graph or another cuDNN changes no arithmetic rule, only
the order in which sums are taken, and so the rounding. In fp64 that is invisible in the
stored (float32) losses; in the other modes a rounding difference in step 1 grows over
training like any other. The yardstick is a run's two *twins*: the same run with every
initial weight moved up, and then down, by one unit in the last place of the format its
products compute in (``train_seeds(..., nudge_ulps=±twin_ulps(precision))``). A change of
computation may move a curve by at most ``TWIN_FACTOR`` times what the farther twin moves
it (``rounding_floor``); more means it changed more than rounding (mixed seeds, a shared
statistic, a wrong gradient).

Why two. A rounding difference does not always grow smoothly: a tie in a max-pool, or a
CBAM gate whose one hidden ReLU sits near zero, flips at some step and the curve jumps
to another path -- at a step, and with a size, that any small perturbation decides by
chance. Nudged only up, seed 0 of ``tests/test_seeds.py``'s fp32 case jumped at step 12
(mean gap 0.0022) while its stacked run jumped at step 7 (0.0196: 9x, a failure on an
AVX2 CPU that no stacking error caused); nudged down it jumped at step 7 too (0.0190).
Rounding moves a value either way; one direction is half the yardstick.

Where to look. Over a long enough run any difference, rounding's or a bug's, grows into
another path of the same noisy descent, and the gaps stop telling them apart: over 30
steps of that test's configuration, each seed's tf32 run against its neighbour's -- what
a stack that mixed its seeds gives -- is 2.05-4.55x the floor, sometimes under the bound.
Over the first ``EARLY_STEPS`` it is 4.2-11.4x (fp32: 2,460x and more), while the stack
stays at 0.37-0.55x (fp32: at most 1.0x); ``python benchmarks/twin_ratios.py`` measures these,
and benchmarks/README.md has them per mode. The doctor's checks still compare whole
(20-step) curves: their window is unmeasured on a GPU.

``cnnconv doctor`` holds the GPU's stacked and graphed runs to this tolerance, and
``tests/test_seeds.py`` the CPU's; the ratios measured against it are in
``benchmarks/README.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from cnnconv.engine.precision import get_mode
from cnnconv.engine.result import RunResult

TWIN_FACTOR = 2.5
EARLY_STEPS = 8  # steps compared in tests/test_seeds.py (module docstring: where to look)


def twin_ulps(precision: str) -> int:
    """Units in the last place of a mode's weights per unit of the format its products see:
    1 where they are the same, 2^13 in tf32 and amp_fp16 (10 mantissa bits of fp32's 23),
    2^16 in amp_bf16. TF32 and amp round the weights for a product, which erases most
    1-ulp fp32 nudges."""
    mode = get_mode(precision)
    products = 2.0**-10 if mode.tf32 else torch.finfo(mode.autocast_dtype or mode.param_dtype).eps
    return round(products / torch.finfo(mode.param_dtype).eps)


def mean_gap(runs_a: Sequence[RunResult], runs_b: Sequence[RunResult],
             steps: int | None = None) -> float:
    """Mean absolute difference of the loss curves of paired runs, over their first
    ``steps`` steps (all by default)."""
    return float(np.mean([np.abs(a.losses[:steps] - b.losses[:steps]).mean()
                          for a, b in zip(runs_a, runs_b)]))


def rounding_floor(reference: Sequence[RunResult], precision: str,
                   train_twins: Callable[[int], Sequence[RunResult]],
                   steps: int | None = None) -> float:
    """How far rounding alone moves ``reference``'s curves (over their first ``steps``):
    the larger ``mean_gap`` of its two twins, ``train_twins(nudge_ulps)`` called with
    ``+twin_ulps`` and ``-twin_ulps``."""
    ulps = twin_ulps(precision)
    return max(mean_gap(reference, train_twins(sign * ulps), steps) for sign in (1, -1))
