"""What the paper-scale claims cost on one H100, before a GPU trains them.

Lab-notebook arithmetic, to be replaced by ``./dev gpu``'s measurement when a GPU is lent:

1. Every run the paper-scale claims ask for is collected by running them in this process
   with training replaced by a recorder (it hands back placeholder runs, so a test that
   asks in several rounds still asks; verdicts are meaningless here and ignored). Runs are
   deduplicated by store key, as the run store would; distillation teachers count once.
2. Forward FLOPs per sample of each network come from ``torch.utils.flop_counter`` on the
   CPU; a training step costs 3x the forward (backward ~2x), a distillation student adds
   its teacher's forward, and each evaluation a forward over the test split.
3. FLOPs are priced at a sustained fraction of the H100 SXM datasheet's dense peak per
   arithmetic (FP64 34 on the CUDA cores -- cuDNN's fp64 convolutions are not known to use
   the FP64 tensor cores --, FP32 67, TF32 495, BF16/FP16 989 TFLOP/s). The anchor is
   source P2's own record: cifar10-fast's ResNet-9, 24 epochs in 79 s on a V100 in fp16
   (~1.5 PFLOP, 19 of 125 TFLOP/s), i.e. 15% for fp16/bf16 on tensor cores. The other
   kinds are scaled from it by NVIDIA's published single-GPU ResNet-50 v1.5 training
   throughputs (DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5,
   pytorch-21.03 container; ``PUBLISHED``): TF32 sustains 0.76x AMP's fraction of its peak
   (A100 80GB: 938 against 2,470 img/s), and strict FP32 on the CUDA cores 2.4x AMP's
   (V100 16GB: 367 against 1,200 img/s). FP64 is priced like FP32 on the CUDA cores for
   want of a published fp64 training rate (cuDNN's fp64 convolutions may do worse). Small
   stacked CNNs may do worse than either reference, so the figures are a floor on the cost.
4. Small batches are launch-bound, not FLOP-bound: a run costs at least ``STEP_FLOOR``
   per step, its seeds sharing each step (a stack of ``SEEDS_PER_STACK``); a ResNet
   step replayed as one CUDA graph is ~150-300 kernels of a few microseconds each.

    python benchmarks/paper_cost.py [--json benchmarks/results/paper-cost-<date>.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnconv.engine.models import build_model
from cnnconv.engine.result import RunResult
from cnnconv.engine.schedule import total_iterations
from cnnconv.engine.spec import RunSpec
from cnnconv.harness.training import Training

PEAK_TFLOPS = {"fp64": 34.0, "fp32": 67.0, "tf32": 495.0, "bf16": 989.0, "amp_bf16": 989.0,
               "amp_fp16": 989.0}
# NVIDIA's ResNet-50 v1.5 training (img/s on one GPU) and the GPU's dense peak for it;
# an image costs 3x the forward's 4.09 G multiply-adds (torchvision's figure) x 2 FLOPs.
PUBLISHED = {"A100 TF32": (938, 156.0), "A100 AMP": (2470, 312.0),
             "V100 FP32": (367, 15.7), "V100 AMP": (1200, 125.0)}
RESNET50_TRAIN_FLOP = 3 * 2 * 4.09e9


def published_fraction(run: str) -> float:
    images, peak = PUBLISHED[run]
    return images * RESNET50_TRAIN_FLOP / (peak * 1e12)


FP16_TENSOR_CORES = 0.15  # cifar10-fast on a V100 (above)
CUDA_CORES = FP16_TENSOR_CORES * published_fraction("V100 FP32") / published_fraction("V100 AMP")
SUSTAINED = {
    "fp64": CUDA_CORES, "fp32": CUDA_CORES,
    "tf32": FP16_TENSOR_CORES * published_fraction("A100 TF32") / published_fraction("A100 AMP"),
    "bf16": FP16_TENSOR_CORES, "amp_bf16": FP16_TENSOR_CORES, "amp_fp16": FP16_TENSOR_CORES,
}
STEP_FLOOR = 0.3e-3  # seconds per replayed stacked step
SEEDS_PER_STACK = 8
SIZES = {"cifar10": ((3, 32, 32), 50_000, 10_000), "fashion-mnist": ((1, 28, 28), 60_000, 10_000)}
GEMM_MINUTES = 2.0  # GEMM-DTYPE: pytest-benchmark timings, no training


class RunCollector:
    """A pytest plugin: the claim being run, and every spec it asks for."""

    def __init__(self) -> None:
        self.source = "?"
        self.runs: dict[str, tuple[str, RunSpec]] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        marker = item.get_closest_marker("claim")
        self.source = marker.kwargs.get("source", "?") if marker else "?"

    def fetch(self, specs: list[RunSpec]) -> list[RunResult]:
        for spec in specs:
            self.runs.setdefault(spec.key(), (self.source, spec))
            if spec.teacher is not None:
                teacher = spec.teacher_spec()
                self.runs.setdefault(teacher.key(), (self.source, teacher))
        return [placeholder(spec) for spec in specs]


def placeholder(spec: RunSpec) -> RunResult:
    """A plausible run (falling loss, accuracy near 0.5 varying by seed), never stored."""
    _, train, _ = SIZES[spec.dataset]
    iterations = total_iterations(spec, spec.train_subset or train)
    rng = np.random.default_rng(spec.seed)
    evals = sorted({i for i in spec.eval_at if 0 < i < iterations} | {iterations})
    return RunResult(
        spec=spec, losses=np.linspace(2.3, 0.3, iterations, dtype=np.float32) + rng.normal(0, 0.01),
        train_correct=np.full(iterations, spec.batch_size // 2), eval_iterations=evals,
        test_accuracy=list(0.5 + rng.normal(0, 0.01, len(evals))), samples_seen=iterations * spec.batch_size,
        epochs=iterations * spec.batch_size / train, wall_time=1.0, eval_time=0.0, diverged_at=None,
        precision_state={}, environment={"stack": "1", "device": "estimate"})


def forward_flops(spec: RunSpec) -> int:
    (channels, size, _), _, _ = SIZES[spec.dataset]
    model = build_model(spec.model, 10, channels, size, **spec.model_options).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, channels, size, size))
    return counter.get_total_flops()


def run_flops(spec: RunSpec, flops: dict[tuple, int]) -> tuple[int, float]:
    """(seed-iterations, FLOPs) of one run: training steps plus evaluations."""
    def forward(s: RunSpec) -> int:
        key = (s.model, tuple(s.model_options.items()), s.dataset)
        if key not in flops:
            flops[key] = forward_flops(s)
        return flops[key]
    _, train, test = SIZES[spec.dataset]
    iterations = total_iterations(spec, spec.train_subset or train)
    per_sample = 3 * forward(spec) + (forward(spec.teacher) if spec.teacher else 0)
    evals = len({i for i in spec.eval_at if 0 < i < iterations} | {iterations})
    evaluation = evals * (spec.test_subset or test) * forward(spec)
    return iterations, iterations * spec.batch_size * per_sample + evaluation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    collector = RunCollector()
    Training.fetch = lambda self, specs, *args, **kwargs: collector.fetch(specs)
    torch.cuda.is_available = lambda: True  # let the gpu-marked paper tests run (nothing trains)
    with tempfile.TemporaryDirectory() as store:
        pytest.main(["claims", "--cnnconv-scale=paper", "-q", "-p", "no:cacheprovider",
                     f"--cnnconv-store={store}", "--no-header", "--tb=no", "-rN"],
                     plugins=[collector])
    flops: dict[tuple, int] = {}
    per_source: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for source, spec in collector.runs.values():
        iterations, total = run_flops(spec, flops)
        minutes = max(total / (SUSTAINED[spec.precision] * PEAK_TFLOPS[spec.precision] * 1e12),
                      iterations * STEP_FLOOR / SEEDS_PER_STACK) / 60
        groups[source][f"{spec.model} {spec.precision}"] += minutes
        row = per_source[source]
        row["runs"] += 1
        row["seed_iterations"] += iterations
        row["pflop"] += total / 1e15
        row["minutes"] += minutes
    per_source["GEMM"]["minutes"] += GEMM_MINUTES
    print(f"\n{'source':<8}{'runs':>8}{'seed-its':>12}{'PFLOP':>10}{'H100 min':>10}  largest share")
    for source in sorted(per_source):
        row = per_source[source]
        top = max(groups[source].items(), key=lambda kv: kv[1], default=("", 0.0))
        print(f"{source:<8}{row['runs']:>8.0f}{row['seed_iterations']:>12.0f}{row['pflop']:>10.1f}"
              f"{row['minutes']:>10.1f}  {top[0]} {top[1]:.0f} min")
    total = sum(row["minutes"] for row in per_source.values())
    print(f"{'all':<8}{'':>30}{total:>10.1f}")
    if args.json:
        args.json.write_text(json.dumps({"sustained_fraction": SUSTAINED, "peak_tflops": PEAK_TFLOPS,
                                         "step_floor_s": STEP_FLOOR, "seeds_per_stack": SEEDS_PER_STACK,
                                         "sources": per_source, "total_minutes": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
