"""The rounding yardstick: how far a change of computation may move a training curve.

Stacking seeds, replaying a CUDA graph or another cuDNN changes no arithmetic rule, only
the order in which sums are taken, and so the rounding. In fp64 that is invisible in the
stored (float32) losses; in the other modes a rounding difference in step 1 grows over
training like any other. The yardstick is a run's *twin*: the same run with every
initial weight moved up by one unit in the last place of the format its products compute
in (``train_seeds(..., nudge_ulps=twin_ulps(precision))``). A change of computation may
move a curve by at most ``TWIN_FACTOR`` times what the twin moves it; more means it
changed more than rounding (mixed seeds, a shared statistic, a wrong gradient).

``cnnconv doctor`` holds the GPU's stacked and graphed runs to this tolerance, and
``tests/test_seeds.py`` the CPU's; the ratios measured against it are in
``benchmarks/README.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cnnconv.engine.precision import get_mode
from cnnconv.engine.result import RunResult

TWIN_FACTOR = 2.5


def twin_ulps(precision: str) -> int:
    """Units in the last place of a mode's weights per unit of the format its products see:
    1 where they are the same, 2^13 in tf32 and amp_fp16 (10 mantissa bits of fp32's 23),
    2^16 in amp_bf16. TF32 and amp round the weights for a product, which erases most
    1-ulp fp32 nudges."""
    mode = get_mode(precision)
    products = 2.0**-10 if mode.tf32 else torch.finfo(mode.autocast_dtype or mode.param_dtype).eps
    return round(products / torch.finfo(mode.param_dtype).eps)


def mean_gap(runs_a: Sequence[RunResult], runs_b: Sequence[RunResult]) -> float:
    """Mean absolute difference of the loss curves of paired runs."""
    return float(np.mean([np.abs(a.losses - b.losses).mean() for a, b in zip(runs_a, runs_b)]))
