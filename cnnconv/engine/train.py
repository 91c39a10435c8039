"""Training: a frozen, validated ``RunSpec`` in, a ``RunResult`` out.

The hot loop is written for speed the way airbench is: data already on the device, no
DataLoader, and no host synchronisation per step. The loss and the number of correct
predictions of every step are written into preallocated device tensors and fetched once
at the end; the loop looks at them only every ``CHECK_EVERY`` steps, to stop a diverging
run (a non-finite loss) and to report progress. A diverged run is a result, not a crash:
``diverged_at`` is the first iteration whose loss was not finite.

Runs that differ only in their seed train as one stack (``stacking.SeedStack``); on CUDA
the step is replayed as a CUDA graph (``cuda_graph``) and as many seeds are stacked as the
free memory holds (``memory``).
"""

from __future__ import annotations

import gc
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnconv.engine import memory
from cnnconv.engine.cuda_graph import StepGraph
from cnnconv.engine.datasets import Dataset, load_dataset
from cnnconv.engine.device import environment, fast_kernels, free_memory, resolve_device
from cnnconv.engine.loader import DeviceLoader, evaluation_batches
from cnnconv.engine.models import build_model
from cnnconv.engine.optimizer import SeedLossScaler, SeedOptimizer
from cnnconv.engine.precision import get_mode, precision
from cnnconv.engine.result import RunResult
from cnnconv.engine.schedule import evaluation_points, lr_multipliers, total_iterations
from cnnconv.engine.spec import RunSpec
from cnnconv.engine.stacking import SeedStack, dropout_shapes, has_dropout, vectorisable
from cnnconv.engine.teacher import TeacherWeights, distillation_loss, teacher_stack

CHECK_EVERY = 50


@dataclass(frozen=True)
class Tick:
    """What a computation reports every ``CHECK_EVERY`` steps: its seeds, iterations done
    of total, and the mean loss of its seeds now."""

    seeds: tuple[int, ...]
    done: int
    total: int
    loss: float


Progress = Callable[[Tick], None]
# Test images per evaluation forward on a CPU, where memory is not planned and large
# chunks amortise per-op overhead (benchmarks/README.md). On CUDA the chunk is
# ``memory.eval_chunk``, as the memory plan counts it.
CPU_EVAL_CHUNK = 1000


def train(
    spec: RunSpec,
    data_dir: str | None = None,
    dataset: Dataset | None = None,
    progress: Progress | None = None,
    teacher_weights: TeacherWeights | None = None,
    nudge_ulps: int = 0,
) -> RunResult:
    """Train one run. ``progress`` gets a ``Tick`` (iterations done, mean loss) every check."""
    return train_seeds([spec], data_dir, dataset, progress, teacher_weights, nudge_ulps=nudge_ulps)[0]


def train_seeds(
    specs: Sequence[RunSpec],
    data_dir: str | None = None,
    dataset: Dataset | None = None,
    progress: Progress | None = None,
    teacher_weights: TeacherWeights | None = None,
    cuda_graph: bool = True,
    vectorise: bool | None = None,
    nudge_ulps: int = 0,
) -> list[RunResult]:
    """Train runs that differ only in their seed as one vectorised computation.

    Each seed keeps its own initial weights, data order, augmentation, dropout masks,
    BatchNorm statistics and loss scale, so seed ``s`` gives the same run whichever seeds
    it is stacked with, up to the rounding of grouped against single convolutions (see
    tests/test_seeds.py for the tolerance). On CUDA the seeds are stacked as many at a
    time as fit in the free memory (``memory.stack_size``; a stack that still runs out
    is halved), and the step is captured in a CUDA graph after warm-up steps
    (``cuda_graph=False`` turns that off; a capture that fails falls back to eager).
    ``vectorise`` (default: where it pays) stacks the seeds; by default fp64 on a CPU
    trains seed by seed, as the CPU has no fast grouped fp64 convolution, and so does a
    model with dropout (LeNet-5): stacked, both are slower there (benchmarks/README.md).
    Either stacks on CUDA.
    ``teacher_weights(teacher_specs)`` supplies the distillation teachers' trained weights,
    one per seed; by default the teachers are trained here (together), uncached.
    ``nudge_ulps`` starts every seed (and a teacher trained here) from its initial weights
    moved by that many units in the last place, up or (negative) down: the rounding
    yardstick's twins (``twin``), not a run to store.
    """
    base = _common_spec(specs)
    device = resolve_device(base.device)
    data = dataset or load_dataset(base.dataset, data_dir)
    first = initial_model(specs[0], data, device, nudge_ulps)
    if vectorise is None:
        vectorise = vectorisable(first) and not (device.type == "cpu" and (
            base.precision == "fp64" or has_dropout(first)))
    if len(specs) > 1 and not vectorise:
        return [run for spec in specs
                for run in train_seeds([spec], data_dir, data, progress, teacher_weights, cuda_graph,
                                       nudge_ulps=nudge_ulps)]
    if teacher_weights is None:
        def teacher_weights(teacher_specs: list[RunSpec]) -> list:
            return [run.weights for run in train_seeds(teacher_specs, dataset=data,
                                                       nudge_ulps=nudge_ulps)]
    size = _stack_size(list(specs), data, device)
    results: list[RunResult] = []
    while len(results) < len(specs):
        part = list(specs[len(results):len(results) + size])
        models = [first if spec is specs[0] else initial_model(spec, data, device, nudge_ulps)
                  for spec in part]
        try:
            results += _Training(part, data, device, SeedStack(models), progress,
                                 teacher_weights, cuda_graph).run()
            continue
        except Exception as error:
            if not _out_of_memory(error):
                raise
            message = f"{type(error).__name__}: {error}"
        # outside the handler, so the failed attempt's frames (and memory) are gone
        del models
        if size == 1:
            raise RuntimeError(f"one seed of {base.label()} does not fit on {device} ({message}); "
                               "use a smaller batch_size or model, or free the device")
        warnings.warn(f"out of memory on {device} with a stack of {size} seeds; "
                      f"retrying with {size // 2}", stacklevel=2)
        size //= 2
        gc.collect()
        torch.cuda.empty_cache()
    return results


def _out_of_memory(error: Exception) -> bool:
    """The allocator's OOM, or cuDNN's and cuBLAS's own allocation failures."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and any(
            text in str(error) for text in ("ALLOC_FAILED", "out of memory")))


def _stack_size(specs: list[RunSpec], data: Dataset, device: torch.device) -> int:
    """Seeds per stack: all of them, unless the device's free memory says fewer."""
    free = free_memory(device)
    if free is None or len(specs) == 1:
        return len(specs)
    spec = specs[0]
    footprint = memory.seed_footprint(spec.model, spec.model_options, spec.precision,
                                      spec.optimizer, data.shape, len(data.classes))
    train_size = len(data.train.head(spec.train_subset))
    return memory.stack_size(footprint, spec.batch_size, train_size, free, len(specs))


def _common_spec(specs: Sequence[RunSpec]) -> RunSpec:
    if not specs:
        raise ValueError("train_seeds needs at least one spec")
    base = specs[0].replace(seed=0)
    for spec in specs:
        if spec.replace(seed=0) != base:
            raise ValueError(f"specs trained together may differ only in seed: {spec.label()} "
                             f"vs {specs[0].label()}")
    if len({spec.seed for spec in specs}) != len(specs):
        raise ValueError("specs trained together need distinct seeds")
    return specs[0]


def initial_model(spec: RunSpec, data: Dataset, device: torch.device, nudge_ulps: int = 0) -> nn.Module:
    """The seed's freshly initialised model: the same seed, the same initial weights
    (each moved by ``nudge_ulps`` units in the last place of its dtype, up or, for a
    negative count, down: a step is the gap to the next value that way, which below a
    power of two is half the gap above it)."""
    torch.manual_seed(spec.seed)
    channels, size, _ = data.shape
    model = build_model(spec.model, len(data.classes), channels, size, **spec.model_options)
    model = model.to(device, get_mode(spec.precision).param_dtype)
    if nudge_ulps:
        with torch.no_grad():
            for p in model.parameters():
                way = torch.full_like(p, math.copysign(math.inf, nudge_ulps))
                p.add_((torch.nextafter(p, way) - p) * abs(nudge_ulps))
    return model


class _Training:
    """The state of one (vectorised) training computation; ``run`` does it."""

    def __init__(self, specs: list[RunSpec], data: Dataset, device: torch.device,
                 stack: SeedStack, progress: Progress | None, teacher_weights: TeacherWeights,
                 cuda_graph: bool) -> None:
        spec = self.spec = specs[0]
        self.specs, self.data, self.device, self.stack = specs, data, device, stack
        self.progress = progress
        self.mode = get_mode(spec.precision)
        split = data.train.head(spec.train_subset)
        self.iterations = total_iterations(spec, len(split))
        self.test = data.test.head(spec.test_subset)
        self.eval_points = evaluation_points(spec, self.iterations)
        mean, std = data.mean_std
        self.loader = DeviceLoader(
            split, mean, std, spec.batch_size, device, self.mode.param_dtype,
            # its own stream, so data order does not depend on the model
            seeds=[s.seed + 1_000_003 for s in specs], augment=spec.augment,
            partners=spec.mixup_alpha > 0,
            dropout=dropout_shapes(stack.unstack(0), split.images[0].to(device, self.mode.param_dtype))
            if stack.has_dropout else (),
        )
        self.optimizer = SeedOptimizer(stack.parameters(), [
            w or spec.decay_bias_and_bn for w in stack.is_weight()
        ], spec.optimizer, spec.momentum, spec.weight_decay)
        self.scaler = SeedLossScaler(len(specs), device) if self.mode.loss_scaling else None
        self.teacher = teacher_stack(specs, lambda s: initial_model(s, data, device), teacher_weights)
        self.lr = torch.as_tensor(lr_multipliers(spec, self.iterations) * spec.lr,
                                  dtype=torch.float32, device=device)
        self.mix = torch.as_tensor(np.stack([
            np.random.default_rng(s.seed).beta(spec.mixup_alpha, spec.mixup_alpha, self.iterations)
            for s in specs]), dtype=torch.float32, device=device) if spec.mixup_alpha > 0 else None
        self.graph = StepGraph(self.step, device) if cuda_graph and device.type == "cuda" else None

    # -- the step: no host synchronisation, fixed shapes, so a CUDA graph can replay it --

    def step(self, x: Tensor, y: Tensor, partners: Tensor | None, lam: Tensor | None,
             lr: Tensor, *dropout: Tensor) -> tuple[Tensor, Tensor]:
        """One training step of every seed; returns per-seed loss and correct count.

        Runs inside ``precision``, whose function modes give each op its dtype."""
        if partners is not None and lam is not None:
            mixed = lam.view(-1, 1, 1, 1, 1).to(x.dtype)
            other = torch.gather(x, 1, partners.view(*partners.shape, 1, 1, 1).expand_as(x))
            x_in = mixed * x + (1 - mixed) * other
        else:
            x_in = x
        out = self.stack(x_in, dropout=dropout or None)
        per_seed = self._cross_entropy(out, y)
        if partners is not None and lam is not None:
            per_seed = lam * per_seed + (1 - lam) * self._cross_entropy(
                out, torch.gather(y, 1, partners))
        if self.teacher is not None:
            with torch.no_grad():
                taught = self.teacher(x_in)
            per_seed = per_seed + distillation_loss(out, taught, self.spec.distill_temperature)
        params = self.stack.parameters()
        if self.scaler is None:
            grads = torch.autograd.grad(per_seed.sum(), params)
            self.optimizer.step(grads, lr)
        else:
            grads, finite = self.scaler.unscale(
                torch.autograd.grad(self.scaler.scale_loss(per_seed), params))
            self.optimizer.step(grads, lr, apply=finite)
            self.scaler.update(finite)
        correct = (out.detach().argmax(-1) == y).sum(1)
        return per_seed.detach().float(), correct

    def _cross_entropy(self, out: Tensor, y: Tensor) -> Tensor:
        loss = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none",
                               label_smoothing=self.spec.label_smoothing)
        return loss.view(y.shape).mean(1)

    # -- the loop --------------------------------------------------------------------

    def run(self) -> list[RunResult]:
        step = self.graph or self.step
        try:
            return self._loop(step)
        finally:
            self.graph = None  # the graph holds self.step: drop the cycle and its memory pool

    def _loop(self, step: Callable[..., Sequence[Tensor]]) -> list[RunResult]:
        n, iterations = len(self.specs), self.iterations
        losses = torch.full((n, iterations), math.nan, device=self.device)
        correct = torch.zeros((n, iterations), dtype=torch.int64, device=self.device)
        accuracy: list[list[float]] = [[] for _ in range(n)]
        diverged: list[int | None] = [None] * n
        checked, eval_time = 0, 0.0
        seeds = tuple(spec.seed for spec in self.specs)
        batches = iter(self.loader)
        started = time.perf_counter()
        with precision(self.mode, self.device) as state, fast_kernels(self.device, n):
            self.stack.train()
            for it in range(iterations):
                batch = next(batches)
                lam = self.mix[:, it] if self.mix is not None else None
                loss, hits = step(batch.images, batch.labels, batch.partners, lam, self.lr[it],
                                  *batch.dropout)
                losses[:, it] = loss
                correct[:, it] = hits
                done = it + 1
                if done % CHECK_EVERY and done != iterations and done not in self.eval_points:
                    continue
                for seed, first_bad in enumerate(_first_non_finite(losses[:, checked:done], checked)):
                    if diverged[seed] is None and first_bad is not None:
                        diverged[seed] = first_bad
                checked = done
                if all(d is not None for d in diverged):
                    break
                if self.progress is not None:
                    self.progress(Tick(seeds, done, iterations,
                                       float(losses[:, done - 1].nanmean())))
                if done in self.eval_points:
                    eval_started = time.perf_counter()
                    for seed, value in enumerate(self.evaluate()):
                        if diverged[seed] is None:
                            accuracy[seed].append(value)
                    eval_time += time.perf_counter() - eval_started
                    self.stack.train()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            wall = time.perf_counter() - started
        losses_host, correct_host = losses.cpu().numpy(), correct.cpu().numpy()
        env = {**environment(self.device), "stack": str(n),
               "cuda_graph": str(isinstance(step, StepGraph) and step.captured).lower()}
        results = []
        for seed, spec in enumerate(self.specs):
            if diverged[seed] is not None:
                losses_host[seed, diverged[seed]:] = math.nan
            results.append(RunResult(
                spec=spec, losses=losses_host[seed], train_correct=correct_host[seed],
                eval_iterations=self.eval_points[: len(accuracy[seed])],
                test_accuracy=accuracy[seed], samples_seen=self.loader.samples_seen,
                epochs=self.loader.epochs, wall_time=wall, eval_time=eval_time,
                diverged_at=diverged[seed], precision_state=state, environment=env,
                weights=self._weights(seed) if spec.keep_weights else None,
            ))
        return results

    @torch.no_grad()
    def evaluate(self) -> list[float]:
        """Test accuracy of every seed, in eval mode, under the run's precision (one sync),
        in chunks of ``memory.eval_chunk`` images on CUDA, ``CPU_EVAL_CHUNK`` on a CPU."""
        self.stack.eval()
        mean, std = self.data.mean_std
        hits = torch.zeros(len(self.specs), dtype=torch.int64, device=self.device)
        chunk = memory.eval_chunk(self.spec.batch_size) if self.device.type == "cuda" else CPU_EVAL_CHUNK
        for x, y in evaluation_batches(self.test, mean, std, self.device,
                                                self.mode.param_dtype, chunk):
            hits += (self.stack(x, per_seed=False).argmax(-1) == y).sum(1)
        return (hits.double() / len(self.test)).tolist()

    def _weights(self, seed: int) -> dict[str, np.ndarray]:
        state = self.stack.unstack(seed).state_dict()
        return {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.cpu().numpy()
                for k, v in state.items()}


def _first_non_finite(chunk: Tensor, offset: int) -> list[int | None]:
    """Per seed, the iteration of the first non-finite loss in ``chunk`` (one host sync)."""
    bad = ~torch.isfinite(chunk)
    first = torch.where(bad.any(1), bad.int().argmax(1), -1).tolist()
    return [None if f < 0 else offset + f for f in first]
