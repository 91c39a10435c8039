"""GEMM-DTYPE, the hardware basis of P0's precision section (its refs [14][15]): on
tensor-core GPUs, TF32 and BF16 matrix products are far faster than FP32 and FP64.

Ten timings of an 8192^3 product per dtype (cnnconv.tools.gemm; CUDA events after a warm-up)
are compared on the log scale, so "k times faster" is a margin of log k. The factors
are a conservative reading of the datasheet (H100 SXM: FP32 67, TF32 495, BF16 989
TFLOP/s dense, i.e. 7.4x and 14.8x): TF32 at least 4x FP32, BF16 at least 8x FP32 and
FP64.
"""

import math

import numpy as np
import pytest

from cnnconv import stats
from cnnconv.tools.gemm import tflops

SIZE, TIMINGS = 8192, 10
FACTORS = {("tf32", "fp32"): 4, ("bf16", "fp32"): 8, ("bf16", "fp64"): 8}


@pytest.mark.claim(
    "GEMM-DTYPE", source="GEMM",
    sentence="On tensor-core GPUs TF32 and BF16 GEMMs are far faster than FP32 and FP64.",
    paper="H100 SXM dense peaks: FP64 67 (tensor), FP32 67, TF32 495, BF16 989 TFLOP/s; "
          "bf16 8192^3 measured at about 790-800 TFLOP/s with torch 2.11 + CUDA 13",
)
def test_tensor_core_formats_are_far_faster(scale, alpha):
    if not scale.is_paper:
        pytest.skip("GEMM-DTYPE is about tensor-core GPUs; the CPU baseline is in "
                    "benchmarks/test_gemm.py")
    device = scale.device
    speeds = {dtype: np.log([tflops(dtype, SIZE, device) for _ in range(TIMINGS)])
              for dtype in ("fp64", "fp32", "tf32", "bf16")}
    return stats.all_of([
        stats.greater(speeds[fast], speeds[slow], margin=math.log(factor), paired=False,
                      alpha=alpha, label=f"log TFLOP/s {fast} - {slow} > log {factor}")
        for (fast, slow), factor in FACTORS.items()
    ], alpha=alpha, label="tensor-core formats far faster")
