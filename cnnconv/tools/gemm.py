"""GEMM throughput per dtype: the measurement behind GEMM-DTYPE (claim and benchmark).

``tflops(dtype, n, device)`` times ``repeats`` products of two n x n matrices after a
warm-up. On CUDA it brackets them with CUDA events (so nothing is timed before the GPU
has finished and launch latency is amortised); elsewhere with the host clock. fp8 goes
through ``torch._scaled_mm`` (e4m3 operands, the second column-major, bf16 output).
"""

from __future__ import annotations

import time

import torch

from cnnconv.engine.precision import precision

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


def tflops(dtype: str, n: int, device: str = "cuda", repeats: int = 20) -> float:
    """Achieved TFLOP/s (2 n^3 per product) of ``dtype`` at size n on ``device``."""
    args = operands(dtype, n, device)
    with precision("tf32" if dtype == "tf32" else "fp32", device):
        for _ in range(3):
            product(dtype, args)
        if torch.device(device).type != "cuda":
            started = time.perf_counter()
            for _ in range(repeats):
                product(dtype, args)
            seconds = (time.perf_counter() - started) / repeats
        else:
            start = torch.cuda.Event(enable_timing=True)
            stop = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(repeats):
                product(dtype, args)
            stop.record()
            torch.cuda.synchronize()
            seconds = start.elapsed_time(stop) / 1000 / repeats
    return 2 * n**3 / seconds / 1e12
