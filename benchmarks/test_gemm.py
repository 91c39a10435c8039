"""GEMM-DTYPE: matrix-multiply throughput per dtype, the hardware basis of P0's precision
section (its refs [14][15]): on tensor-core GPUs TF32 and BF16 GEMMs are far faster than
FP32 and FP64.

Each case multiplies two n x n matrices; achieved TFLOP/s (2 n^3 per product) and the
fraction of the detected GPU's dense datasheet peak go to ``extra_info``. CUDA work is
timed with CUDA events around a batch of products after a warm-up, so kernel launch
latency is amortised and nothing is timed before the GPU finished.

    pytest benchmarks -k gemm -m gpu --benchmark-only --benchmark-json=benchmarks/results/gemm-NAME.json
"""

from __future__ import annotations

import pytest
import torch

from cnnconv.engine.precision import precision
from cnnconv.tools.gemm import DTYPES, PEAKS, SIZES, gpu_model, operands, product, tflops


@pytest.mark.gpu
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_throughput(benchmark, dtype, n):
    results = []
    benchmark.pedantic(lambda: results.append(tflops(dtype, n)), rounds=3, iterations=1)
    best = max(results)
    model = gpu_model(torch.cuda.get_device_name())
    peak = PEAKS.get(model or "", {}).get(dtype)
    benchmark.extra_info.update(dtype=dtype, n=n, tflops=best, gpu=torch.cuda.get_device_name(),
                                peak_tflops=peak, fraction_of_peak=best / peak if peak else None)
    assert best > 0


@pytest.mark.gpu
def test_gemm_dtype_claim_tensor_core_formats_are_far_faster():
    """GEMM-DTYPE at n = 8192: tf32 >= 4x strict fp32, bf16 >= 8x strict fp32 and >= 1.5x tf32."""
    speeds = {dtype: tflops(dtype, 8192) for dtype in ("fp32", "tf32", "bf16")}
    assert speeds["tf32"] >= 4 * speeds["fp32"], speeds
    assert speeds["bf16"] >= 8 * speeds["fp32"], speeds
    assert speeds["bf16"] >= 1.5 * speeds["tf32"], speeds


@pytest.mark.parametrize("dtype", ["fp64", "fp32", "bf16"])
def test_cpu_gemm(benchmark, dtype):
    """The same measurement on the CPU (n = 512): the host's baseline, cheap enough for CI."""
    n = 512
    args = operands(dtype, n, "cpu")
    with precision("fp32", "cpu"):
        benchmark(product, dtype, args)
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["gflops"] = 2 * n**3 / benchmark.stats.stats.min / 1e9
