"""A stack's convolution on a CPU: oneDNN's grouped kernel (what vmap makes of N seeds'
convolutions) against the N plain convolutions of the seeds, forward and backward.

``cnnconv.engine.kernels`` computes a stacked convolution seed by seed when its groups hold
fewer than ``THIN`` input channels; this is the measurement behind that rule, over the
convolutions of the project's models (first layers with 3 channels in, then 4, 6, 8 and
more), batch 64, at the cpu scale's stack sizes. ``extra_info`` holds both times and
their ratio (grouped / seed by seed: above 1, splitting pays).

    pytest benchmarks -k stacked_convolution --benchmark-only \
        --benchmark-json=benchmarks/results/NAME.json
"""

from __future__ import annotations

import time

import pytest
import torch

from cnnconv.engine.kernels import THIN

BATCH = 64
# (name, input channels per seed, output channels, image side, kernel, stride, padding)
CONVOLUTIONS = [
    ("resnet18-conv1", 3, 8, 32, 7, 2, 3),
    ("resnet9w4-prep", 3, 4, 32, 3, 1, 1),
    ("3in-16out-32px", 3, 16, 32, 3, 1, 1),
    ("lenet-conv2", 6, 16, 14, 5, 1, 0),
    ("4in-32px", 4, 8, 32, 3, 1, 1),
    ("8in-32px", 8, 8, 32, 3, 1, 1),
    ("8in-16px", 8, 8, 16, 3, 1, 1),
    ("8in-8px", 8, 8, 8, 3, 1, 1),
    ("16in-16px", 16, 16, 16, 3, 1, 1),
    ("32in-8px", 32, 32, 8, 3, 1, 1),
    ("64in-4px", 64, 64, 4, 3, 1, 1),
]
aten = torch.ops.aten


def _forward_backward(x, w, grad, stride, padding, groups):
    """One convolution and its backward (input gradient unless the input is the images)."""
    aten.convolution(x, w, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], groups)
    aten.convolution_backward(grad, x, w, None, [stride] * 2, [padding] * 2, [1, 1], False,
                              [0, 0], groups, [x.shape[1] // groups != 3, True, False])


def _milliseconds(run, repeats: int) -> float:
    run()  # warm-up: oneDNN builds its primitive on first use
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


@pytest.mark.parametrize("seeds", [4, 5])
@pytest.mark.parametrize("name,cin,cout,side,kernel,stride,padding", CONVOLUTIONS,
                         ids=[c[0] for c in CONVOLUTIONS])
def test_stacked_convolution(benchmark, seeds, name, cin, cout, side, kernel, stride, padding):
    out_side = (side + 2 * padding - kernel) // stride + 1
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, seeds * cin, side, side, generator=generator)
    w = torch.randn(seeds * cout, cin, kernel, kernel, generator=generator)
    grad = torch.randn(BATCH, seeds * cout, out_side, out_side, generator=generator)
    parts = [(xs.contiguous(), ws.contiguous(), gs.contiguous())
             for xs, ws, gs in zip(x.chunk(seeds, 1), w.chunk(seeds), grad.chunk(seeds, 1))]
    repeats = 1 if benchmark.disabled else 10
    times = {}

    def measure():
        times["grouped"] = _milliseconds(
            lambda: _forward_backward(x, w, grad, stride, padding, seeds), repeats)
        times["seed_by_seed"] = _milliseconds(
            lambda: [_forward_backward(*part, stride, padding, 1) for part in parts], repeats)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio = times["grouped"] / times["seed_by_seed"]
    benchmark.extra_info.update(convolution=name, seeds=seeds, batch=BATCH,
                                grouped_ms=times["grouped"], seed_by_seed_ms=times["seed_by_seed"],
                                ratio=ratio, split_by_rule=cin < THIN)
    assert ratio > 0
