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

from cnnconv.precision import precision

# Dense datasheet peaks in TFLOP/s (no sparsity): FP64 (tensor core where it has one),
# FP32, TF32, BF16, FP16, FP8. H100 SXM figures as quoted in CLAIMS.md; the others from
# NVIDIA's product datasheets (A100 has no FP8).
PEAKS = {
    "H100 SXM": {"fp64": 67, "fp32": 67, "tf32": 495, "bf16": 989, "fp16": 989, "fp8": 1979},
    "H100 PCIe": {"fp64": 51, "fp32": 51, "tf32": 378, "bf16": 756, "fp16": 756, "fp8": 1513},
    "H200": {"fp64": 67, "fp32": 67, "tf32": 495, "bf16": 989, "fp16": 989, "fp8": 1979},
    "A100": {"fp64": 19.5, "fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312, "fp8": None},
}
SIZES = (1024, 2048, 4096, 8192)
DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8")


def gpu_model(name: str) -> str | None:
    """Map ``torch.cuda.get_device_name()`` to a PEAKS key (None if unknown)."""
    if "H200" in name:
        return "H200"
    if "H100" in name:
        return "H100 PCIe" if "PCIe" in name else "H100 SXM"
    if "A100" in name:
        return "A100"
    return None


def operands(dtype: str, n: int, device: str) -> tuple:
    torch.manual_seed(0)
    if dtype == "fp8":
        a = torch.randn(n, n, device=device).to(torch.float8_e4m3fn)
        b = torch.randn(n, n, device=device).to(torch.float8_e4m3fn).t()  # column-major
        one = torch.ones((), device=device)
        return a, b, one
    torch_dtype = {"fp64": torch.float64, "fp32": torch.float32, "tf32": torch.float32,
                   "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return (torch.randn(n, n, device=device, dtype=torch_dtype),
            torch.randn(n, n, device=device, dtype=torch_dtype))


def product(dtype: str, args: tuple) -> torch.Tensor:
    if dtype == "fp8":
        a, b, one = args
        return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    return args[0] @ args[1]


def cuda_tflops(dtype: str, n: int, repeats: int = 20) -> float:
    args = operands(dtype, n, "cuda")
    with precision("tf32" if dtype == "tf32" else "fp32", "cuda"):
        for _ in range(3):
            product(dtype, args)
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            product(dtype, args)
        stop.record()
        torch.cuda.synchronize()
    seconds = start.elapsed_time(stop) / 1000 / repeats
    return 2 * n**3 / seconds / 1e12


@pytest.mark.gpu
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_throughput(benchmark, dtype, n):
    results = []
    benchmark.pedantic(lambda: results.append(cuda_tflops(dtype, n)), rounds=3, iterations=1)
    best = max(results)
    model = gpu_model(torch.cuda.get_device_name())
    peak = PEAKS.get(model or "", {}).get(dtype)
    benchmark.extra_info.update(dtype=dtype, n=n, tflops=best, gpu=torch.cuda.get_device_name(),
                                peak_tflops=peak, fraction_of_peak=best / peak if peak else None)
    assert best > 0


@pytest.mark.gpu
def test_gemm_dtype_claim_tensor_core_formats_are_far_faster():
    """GEMM-DTYPE at n = 8192: tf32 >= 4x strict fp32, bf16 >= 8x strict fp32 and >= 1.5x tf32."""
    speeds = {dtype: cuda_tflops(dtype, 8192) for dtype in ("fp32", "tf32", "bf16")}
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
