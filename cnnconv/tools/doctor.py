"""``cnnconv doctor``: does this machine compute what cnnconv says it computes?

What a runner's admin runs once, and what the GPU workflow runs first. Each check is a
measurement with the range it must fall in:

- *products*: a matmul and a convolution in every precision mode against an fp64
  reference; the relative error must sit at the unit roundoff of the dtype the mode
  names (fp32 near 2^-24 with accumulation, TF32 and fp16 near 2^-11, bf16 near 2^-8),
  so a mode that silently computes in another precision fails.
- *optimizer*: SGD and Nesterov steps in every parameter dtype against the textbook
  update (torch's CPU fused SGD kernel skips most of an fp16/bf16 tensor; cnnconv works
  around it, and this row would show a kernel that does not).
- *dtypes*: ``OperandRecorder`` records the operand dtypes of every convolution, matmul,
  BatchNorm and loss op of a short stacked training run, forward and backward, and
  ``violations`` holds them against the mode's definition (precision.py's docstring).
- *CUDA graph*: a captured run replays like the eager one (20 steps, within the twin
  tolerance of ``engine.twin``) on a model with dropout and mixup, whose per-step
  draws are made outside the step: a replay that reused a draw would leave the curve.
- *stack*: three stacked seeds match their single runs within the same tolerance.
- *memory*: the measured device memory per stacked seed against the engine's estimate.

On a CPU the first two run (TF32 emulated) and the table says there is no GPU.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from cnnconv.engine.datasets import synthetic
from cnnconv.engine.device import environment, fast_kernels
from cnnconv.engine.kernels import PRODUCT_OPERANDS
from cnnconv.engine.memory import seed_footprint
from cnnconv.engine.optimizer import SeedOptimizer
from cnnconv.engine.precision import MODES, get_mode, precision
from cnnconv.engine.spec import RunSpec
from cnnconv.engine.train import train, train_seeds
from cnnconv.engine.twin import TWIN_FACTOR, mean_gap, rounding_floor

# Relative error of a product against fp64, per mode: (lowest, highest), around the unit
# roundoff of the mode's product format (module docstring; a CPU's errors are in
# benchmarks/README.md).
PRODUCT_ERROR = {"fp64": (0.0, 2.0**-45), "fp32": (0.0, 2.0**-18), "tf32": (2.0**-14, 2.0**-9),
                 "bf16": (2.0**-11, 2.0**-6), "amp_bf16": (2.0**-11, 2.0**-6),
                 "amp_fp16": (2.0**-14, 2.0**-9)}


@dataclass(frozen=True)
class Check:
    """One row of the table: ``passed`` is None for information."""

    name: str
    value: str
    expected: str = ""
    passed: bool | None = None


# -- what each op sees ------------------------------------------------------------------

NORM_OPS = frozenset({"native_batch_norm", "native_batch_norm_backward", "cudnn_batch_norm",
                      "cudnn_batch_norm_backward", "_native_batch_norm_legit",
                      "_native_batch_norm_legit_functional", "_native_batch_norm_legit_no_training"})
LOSS_OPS = frozenset({"_log_softmax", "_log_softmax_backward_data", "nll_loss_forward",
                      "nll_loss_backward"})


# every BatchNorm op above takes (input or grad, input or weight, weight or bias, running
# mean, running var) first; the saved statistics after them are an implementation's own
# accumulation dtype (fp32 on CUDA even in pure bf16) and are not checked
NORM_OPERANDS = 5


class OperandRecorder(TorchDispatchMode):
    """Records the floating-point operands of every product, BatchNorm and loss op, by
    kind (``convolution``, ..., ``norm``, ``loss``), below autograd and vmap."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, list[tuple[torch.Tensor, ...]]] = defaultdict(list)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        name = func.overloadpacket.__name__
        if name in PRODUCT_OPERANDS:
            self.calls[name].append(tuple(args[i] for i in PRODUCT_OPERANDS[name]))
        elif name in NORM_OPS or name in LOSS_OPS:
            operands = args[:NORM_OPERANDS] if name in NORM_OPS else args
            self.calls["norm" if name in NORM_OPS else "loss"].append(
                tuple(a for a in operands if isinstance(a, torch.Tensor) and a.is_floating_point()))
        return func(*args, **(kwargs or {}))


def tf32_representable(t: torch.Tensor) -> bool:
    """An fp32 tensor whose 13 low mantissa bits are all zero."""
    return t.dtype == torch.float32 and not bool((t.contiguous().view(torch.int32) & 0x1FFF).any())


def violations(mode_name: str, calls: dict[str, list[tuple[torch.Tensor, ...]]],
               device: str = "cpu") -> list[str]:
    """Every recorded operand that breaks ``mode_name``'s definition, described: products
    in the amp dtype (amp), TF32-representable (tf32 emulated, off CUDA; on CUDA the
    tensor cores round fp32 operands inside the product, which ``check_products``
    measures) or the storage dtype; BatchNorm and loss in fp32 (amp, tf32) or the storage
    dtype."""
    mode = get_mode(mode_name)
    emulated = torch.device(device).type != "cuda"
    found = []
    for name, records in calls.items():
        for operands in records:
            for t in operands:
                if name in PRODUCT_OPERANDS:
                    if mode.autocast_dtype is not None:
                        ok = t.dtype == mode.autocast_dtype
                    elif mode.tf32 and emulated:
                        ok = tf32_representable(t)
                    else:
                        ok = t.dtype == mode.param_dtype
                elif mode.autocast_dtype is not None or mode.tf32:
                    ok = t.dtype == torch.float32
                else:
                    ok = t.dtype == mode.param_dtype
                if not ok:
                    found.append(f"{name}: {str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}")
    return found


@functools.lru_cache(maxsize=32)
def record_operands(precision_name: str, seeds: int,
                    device: str = "cpu") -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """The operands of a one-step run (and its evaluation) of ResNet-18 with CBAM in every
    block, ``seeds`` stacked, on 256 synthetic images, eagerly (a replayed graph
    dispatches nothing to record). Kept per process: the tests and the doctor share it."""
    specs = [RunSpec(model="resnet18", model_options={"width": 4, "cbam": "all"},
                     dataset="synthetic", precision=precision_name, batch_size=4, iterations=1,
                     test_subset=8, seed=seed, device=device) for seed in range(seeds)]
    recorder = OperandRecorder()
    with recorder:
        train_seeds(specs, dataset=synthetic(256, 128), vectorise=True,
                              cuda_graph=False)
    return recorder.calls


# -- the checks ---------------------------------------------------------------------------

def check_products(device: str) -> list[Check]:
    """Per mode: a 256x1024x256 matmul, a 64-channel 3x3 convolution and a grouped one
    shaped like 8 stacked seeds of 8 channels, against fp64, with cuDNN autotuning on as
    in training (it could pick a grouped algorithm that is not TF32)."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(256, 1024, generator=generator, dtype=torch.float64) for _ in range(2))
    x = torch.randn(8, 64, 32, 32, generator=generator, dtype=torch.float64)
    w = torch.randn(64, 64, 3, 3, generator=generator, dtype=torch.float64)
    wg = torch.randn(64, 8, 3, 3, generator=generator, dtype=torch.float64)
    exact = {"matmul": F.linear(a, b), "conv": F.conv2d(x, w, padding=1),
             "grouped conv": F.conv2d(x, wg, padding=1, groups=8)}
    checks = []
    for name, mode in MODES.items():
        ca, cb, cx, cw, cg = (t.to(device, mode.param_dtype) for t in (a, b, x, w, wg))
        with precision(mode, device), fast_kernels(torch.device(device)):
            got = {"matmul": F.linear(ca, cb), "conv": F.conv2d(cx, cw, padding=1),
                   "grouped conv": F.conv2d(cx, cg, padding=1, groups=8)}
        low, high = PRODUCT_ERROR[name]
        for op, value in got.items():
            error = ((value.double().cpu() - exact[op]).norm() / exact[op].norm()).item()
            checks.append(Check(
                f"{name} {op}", f"error {_power(error)}, {str(value.dtype).removeprefix('torch.')}",
                f"{_power(low)} .. {_power(high)}", low <= error <= high))
    return checks


def optimizer_gap(kind: str, dtype: torch.dtype, device: str, steps: int = 20) -> float:
    """Largest difference, in units of ``dtype``'s epsilon, between ``SeedOptimizer``
    (SGD or Nesterov, momentum 0.9) on 3 stacked seeds of 1,000 weights and the textbook
    update computed in at least fp32 and stored rounded to ``dtype`` once per step. A
    kernel that skips part of a tensor (pytorch/pytorch#191763: CPU fused SGD on
    fp16/bf16) is thousands of epsilons away."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(3, 1000, generator=generator).to(device, dtype)
    grads = [(0.1 * torch.randn(3, 1000, generator=generator)).to(device, dtype) for _ in range(steps)]
    lr = torch.tensor(0.1, dtype=torch.float32, device=device)
    params = start.clone()
    optimizer = SeedOptimizer([params], [True], kind, 0.9, 0.0)
    compute = torch.promote_types(dtype, torch.float32)
    expected, buf = start.clone(), torch.zeros_like(start)
    for grad in grads:
        optimizer.step([grad], lr)
        momentum = 0.9 * buf.to(compute) + grad.to(compute)
        update = grad.to(compute) + 0.9 * momentum if kind == "nesterov" else momentum
        expected = (expected.to(compute) - lr.to(compute) * update).to(dtype)
        buf = momentum.to(dtype)
    gap = (params.double() - expected.double()).abs().max().item()
    return gap / torch.finfo(dtype).eps


def check_optimizer(device: str) -> list[Check]:
    """The optimizer's step in every parameter dtype against the textbook update."""
    checks = []
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        for kind in ("sgd", "nesterov"):
            gap = optimizer_gap(kind, dtype, device)
            checks.append(Check(f"{kind} step, {str(dtype).removeprefix('torch.')}",
                                f"{gap:.2g} eps from textbook", "<= 4 eps", gap <= 4))
    return checks


def check_dtypes(device: str) -> list[Check]:
    """Per mode, one seed and three stacked: operand dtypes of a training step."""
    checks = []
    for name in MODES:
        bad = [v for seeds in (1, 3)
               for v in violations(name, record_operands(name, seeds, device), device)]
        checks.append(Check(f"{name} operand dtypes", f"{len(bad)} off" + (
            f" (e.g. {bad[0]})" if bad else ""), "0 off", not bad))
    return checks


def _graph_specs(device: str) -> list[RunSpec]:
    return [RunSpec(model="resnet18", model_options={"width": 16}, dataset="synthetic",
                    precision="tf32", batch_size=64, iterations=20, mixup_alpha=0.4, lr=0.05,
                    device=device),
            RunSpec(model="lenet5", dataset="synthetic", precision="fp32", batch_size=64,
                    iterations=20, lr=0.05, device=device)]


def check_cuda_graph(device: str) -> list[Check]:
    """The captured step against the eager step, 20 steps, per model."""
    data = synthetic()
    checks = []
    for spec in _graph_specs(device):
        eager = train_seeds([spec], dataset=data, cuda_graph=False)
        graphed = train_seeds([spec], dataset=data, cuda_graph=True)
        floor = rounding_floor(eager, spec.precision, lambda ulps, spec=spec: train_seeds(
            [spec], dataset=data, cuda_graph=False, nudge_ulps=ulps))
        gap = mean_gap(eager, graphed)
        captured = graphed[0].environment["cuda_graph"] == "true"
        checks.append(Check(
            f"CUDA graph, {spec.model}", f"gap {gap:.2g} (twin {floor:.2g}), "
            f"{'captured' if captured else 'NOT captured'}",
            f"captured, gap <= {TWIN_FACTOR} x twin", captured and gap <= TWIN_FACTOR * floor))
    return checks


def check_stack(device: str) -> Check:
    """Three seeds stacked against each alone (tests/test_seeds.py's claim, on this device)."""
    data = synthetic()
    specs = [RunSpec(model="resnet18", model_options={"width": 8, "cbam": "all"},
                     dataset="synthetic", precision="tf32", batch_size=32, iterations=20,
                     lr=0.02, seed=seed, device=device) for seed in range(3)]
    single = [train(spec, dataset=data) for spec in specs]
    stacked = train_seeds(specs, dataset=data, vectorise=True)
    floor = rounding_floor(single, specs[0].precision, lambda ulps: [
        train(spec, dataset=data, nudge_ulps=ulps) for spec in specs])
    gap = mean_gap(single, stacked)
    return Check("3 stacked seeds vs single", f"gap {gap:.2g} (twin {floor:.2g})",
                 f"<= {TWIN_FACTOR} x twin", gap <= TWIN_FACTOR * floor)


def check_memory(device: str) -> Check:
    """Peak device memory of 2 stacked seeds minus 1, against the engine's estimate. Both
    are trained once first, so that cuDNN's autotuning (whose trial workspaces the
    estimate leaves to the headroom) is done before the peaks are measured."""
    data = synthetic()
    spec = RunSpec(model="resnet9", model_options={"width": 32}, dataset="synthetic",
                   precision="amp_bf16", batch_size=256, iterations=5, device=device)
    for seeds in (1, 2):
        train_seeds([spec.replace(seed=s) for s in range(seeds)], dataset=data)
    peaks = []
    for seeds in (1, 2):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        train_seeds([spec.replace(seed=s) for s in range(seeds)], dataset=data)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
    measured = peaks[1] - peaks[0]
    estimate = seed_footprint(spec.model, spec.model_options, spec.precision, spec.optimizer,
                              data.shape, len(data.classes)).seed_bytes(256, len(data.train))
    return Check("memory per seed (ResNet-9 w32 b256 amp_bf16)",
                 f"{measured / 2**20:.0f} MiB measured, {estimate / 2**20:.0f} MiB estimated",
                 "measured <= 1.25 x estimate", measured <= 1.25 * estimate)


def versions(device: str) -> list[Check]:
    env = environment(torch.device(device))
    keys = ("device", "device_index", "driver", "torch", "cuda", "cudnn", "python")
    return [Check(key, env[key]) for key in keys if key in env]


def run_checks(device: str, report: Callable[[Check], None] | None = None) -> list[Check]:
    """Every check that applies to ``device``, each reported as it finishes."""
    steps: list[Callable[[str], list[Check] | Check]] = [versions, check_products,
                                                         check_optimizer, check_dtypes]
    if torch.device(device).type == "cuda":
        steps += [check_cuda_graph, check_stack, check_memory]
    checks = []
    for step in steps:
        try:
            found = step(device)
        except Exception as error:  # one broken check must not hide the others' rows
            found = Check(step.__name__, f"raised {type(error).__name__}: {error}"[:200],
                          "no exception", False)
        for check in found if isinstance(found, list) else [found]:
            checks.append(check)
            if report is not None:
                report(check)
    return checks


def format_row(check: Check) -> str:
    verdict = {True: "ok", False: "FAIL", None: ""}[check.passed]
    return f"{check.name:<44} {check.value:<48} {check.expected:<30} {verdict}"


def _power(value: float) -> str:
    return "0" if value == 0 else f"2^{math.log2(value):.1f}"
