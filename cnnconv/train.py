"""One training run: a frozen, validated ``RunSpec`` in, a ``RunResult`` out.

The hot loop is written for speed the way airbench is: data already on the device, no
DataLoader, and no host synchronisation per step. The loss and the number of correct
predictions of every step are written into preallocated device tensors and fetched once
at the end; the loop looks at them only every ``CHECK_EVERY`` steps, to stop a diverging
run (a non-finite loss) and to report progress. A diverged run is a result, not a crash:
``diverged_at`` is the first iteration whose loss was not finite.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnconv import data as data_mod
from cnnconv.choices import check_choice
from cnnconv.models import MODELS, build_model
from cnnconv.precision import MODES, get_mode, precision
from cnnconv.seeds import OPTIMIZERS, SeedLossScaler, SeedOptimizer, SeedStack, vectorisable

# Bump when a change to the engine changes results: cached runs keyed by the old version
# are then no longer used (``cnnconv store prune --stale`` removes them).
ENGINE_VERSION = 2
CHECK_EVERY = 50

SCHEDULES = ("constant", "step", "cosine", "piecewise")


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run. Two equal specs give the same result.

    Length is ``iterations`` or ``epochs`` (whole passes of the training split, partial
    batches dropped). ``lr`` is the peak learning rate; the schedule multiplies it:
    ``step`` by ``step_gamma`` at each fraction in ``step_milestones``, ``cosine`` down to
    0, ``piecewise`` by linear interpolation between ``(fraction, multiplier)`` points.
    ``warmup`` (a fraction of the run) ramps any schedule linearly up from 0.
    ``train_subset`` keeps the first N training images and ``test_subset`` measures test
    accuracy on the first N test images (CPU-scale runs).
    ``eval_at`` lists iterations at which test accuracy is measured; the last iteration is
    always measured. ``teacher`` makes the run a distillation student: seed ``s`` learns
    from the teacher spec trained at seed ``s`` (its seed field is ignored), with
    ``distill_temperature``. ``keep_weights`` stores the final weights with the run.
    """

    model: str = "resnet18"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "cifar10"
    train_subset: int | None = None
    test_subset: int | None = None
    precision: str = "tf32"
    batch_size: int = 64
    iterations: int | None = None
    epochs: float | None = None
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    decay_bias_and_bn: bool = True
    schedule: str = "constant"
    step_milestones: tuple[float, ...] = (0.5, 0.75)
    step_gamma: float = 0.1
    schedule_points: tuple[tuple[float, float], ...] = ()
    warmup: float = 0.0
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    augment: str = "crop_flip"
    teacher: RunSpec | None = None
    distill_temperature: float = 1.0
    keep_weights: bool = False
    eval_at: tuple[int, ...] = ()
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        # Normalise containers so that equal specs compare, hash and serialise equally.
        object.__setattr__(self, "model_options", _freeze(dict(self.model_options)))
        object.__setattr__(self, "step_milestones", tuple(self.step_milestones))
        object.__setattr__(
            self, "schedule_points", tuple(tuple(map(float, p)) for p in self.schedule_points)
        )
        object.__setattr__(self, "eval_at", tuple(sorted(set(self.eval_at))))
        if isinstance(self.teacher, Mapping):
            object.__setattr__(self, "teacher", RunSpec.from_canonical(self.teacher))
        if self.teacher is not None:
            object.__setattr__(self, "teacher", self.teacher.replace(
                seed=0, device=self.device, keep_weights=True))
        self._validate()

    def _validate(self) -> None:
        check_choice("model", self.model, MODELS)
        unknown = sorted(set(self.model_options) - set(MODELS[self.model].options))
        if unknown:
            raise ValueError(
                f"model {self.model!r} takes no option {', '.join(unknown)}; "
                f"its options are {', '.join(MODELS[self.model].options)}"
            )
        check_choice("dataset", self.dataset, data_mod.DATASETS)
        check_choice("precision", self.precision, MODES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("augment", self.augment, data_mod.AUGMENTATIONS)
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError("give exactly one of iterations and epochs")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "momentum", "weight_decay", "warmup", "label_smoothing", "mixup_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is a fraction of the run in [0, 1), got {self.warmup}")
        if self.schedule == "piecewise" and len(self.schedule_points) < 2:
            raise ValueError("schedule='piecewise' needs at least two schedule_points")
        if self.distill_temperature <= 0:
            raise ValueError(f"distill_temperature must be positive, got {self.distill_temperature}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"unknown device {self.device!r}; use cpu, cuda or cuda:N")

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def teacher_spec(self) -> RunSpec:
        """The distillation teacher of this run's seed."""
        if self.teacher is None:
            raise ValueError(f"{self.label()} has no teacher")
        return self.teacher.replace(seed=self.seed)

    def canonical(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields that differ from their defaults: the form the
        run store keys on. Leaving defaults out keeps every key valid when a field is
        added whose default changes nothing."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if getattr(self, f.name) != _DEFAULTS[f.name]}
        for name in ("model", "dataset", "precision", "seed", "device"):  # always readable
            out[name] = getattr(self, name)
        if "model_options" in out:
            out["model_options"] = dict(self.model_options)
        if self.teacher is not None:
            out["teacher"] = self.teacher.canonical()
        return json.loads(json.dumps(out))

    def key(self) -> str:
        """Content hash of the canonical spec and the engine version."""
        text = json.dumps({"spec": self.canonical(), "engine": ENGINE_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def label(self) -> str:
        """A short human-readable description, for progress lines and reports."""
        opts = ",".join(f"{k}={v}" for k, v in self.model_options.items())
        length = f"{self.iterations} it" if self.iterations else f"{self.epochs} ep"
        return (f"{self.model}({opts}) {self.dataset} {self.precision} bs{self.batch_size} "
                f"lr{self.lr:g} {length} seed{self.seed}")

    @classmethod
    def from_canonical(cls, values: Mapping[str, Any]) -> RunSpec:
        return cls(**values)


_DEFAULTS = {
    f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    for f in dataclasses.fields(RunSpec)
}


class _FrozenDict(dict):
    """A hashable, sorted dict so that a frozen spec can hold model options."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))


def _freeze(options: dict[str, Any]) -> _FrozenDict:
    return _FrozenDict(
        sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items())
    )


@dataclass
class RunResult:
    """What a run produced. Arrays are per iteration; NaN after a divergence."""

    spec: RunSpec
    losses: np.ndarray
    train_correct: np.ndarray
    eval_iterations: list[int]
    test_accuracy: list[float]
    samples_seen: int
    epochs: float
    wall_time: float
    eval_time: float
    diverged_at: int | None
    precision_state: dict[str, Any]
    environment: dict[str, str]
    weights: dict[str, np.ndarray] | None = None

    @property
    def iterations_per_second(self) -> float:
        """Steps per second of the computation that trained this run (all the seeds
        stacked with it), evaluation time excluded."""
        return len(self.losses) / max(self.wall_time - self.eval_time, 1e-9)

    @property
    def final_test_accuracy(self) -> float:
        return self.test_accuracy[-1] if self.test_accuracy else math.nan

    def train_accuracy(self, start: int, stop: int) -> float:
        """Fraction of training samples classified right over iterations [start, stop)."""
        return float(self.train_correct[start:stop].sum() / ((stop - start) * self.spec.batch_size))


def total_iterations(spec: RunSpec, train_size: int) -> int:
    """The run's length in iterations (epochs times whole batches per epoch)."""
    if spec.iterations is not None:
        return spec.iterations
    assert spec.epochs is not None
    return max(1, round(spec.epochs * (train_size // spec.batch_size)))


def lr_multipliers(spec: RunSpec, iterations: int) -> np.ndarray:
    """The schedule as one multiplier per iteration (computed once, on the host)."""
    t = np.arange(iterations) / iterations
    if spec.schedule == "constant":
        mult = np.ones(iterations)
    elif spec.schedule == "step":
        mult = spec.step_gamma ** np.searchsorted(np.array(spec.step_milestones), t, side="right")
    elif spec.schedule == "cosine":
        mult = 0.5 * (1 + np.cos(np.pi * t))
    else:
        xs, ys = zip(*spec.schedule_points)
        mult = np.interp(t, xs, ys)
    if spec.warmup > 0:
        mult = mult * np.minimum(1.0, (np.arange(iterations) + 1) / (spec.warmup * iterations))
    return mult


def environment(device: torch.device) -> dict[str, str]:
    """Library versions and device name, recorded with every run."""
    from cnnconv import __version__

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        platform.processor() or platform.machine() or "cpu"
    )
    return {
        "cnnconv": __version__,
        "engine": str(ENGINE_VERSION),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "device": name,
        "threads": str(torch.get_num_threads()),
    }


def resolve_device(name: str) -> torch.device:
    """A torch device, with a clear error where CUDA is asked for but absent."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but CUDA is not available here; use cpu")
    return device



Progress = Callable[[int, int, float], None]
TeacherWeights = Callable[[list[RunSpec]], list[Mapping[str, Any] | None]]


def train(
    spec: RunSpec,
    data_dir: str | None = None,
    dataset: data_mod.Dataset | None = None,
    progress: Progress | None = None,
    teacher_weights: TeacherWeights | None = None,
) -> RunResult:
    """Train one run. ``progress(iteration, total, recent_loss)`` is called every check."""
    return train_seeds([spec], data_dir, dataset, progress, teacher_weights)[0]


def train_seeds(
    specs: Sequence[RunSpec],
    data_dir: str | None = None,
    dataset: data_mod.Dataset | None = None,
    progress: Progress | None = None,
    teacher_weights: TeacherWeights | None = None,
    cuda_graph: bool = True,
    vectorise: bool | None = None,
) -> list[RunResult]:
    """Train runs that differ only in their seed as one vectorised computation.

    Each seed keeps its own initial weights, data order, augmentation, BatchNorm
    statistics and loss scale, so seed ``s`` gives the same run whichever seeds it is
    stacked with, up to the rounding of grouped against single convolutions (see
    tests/test_seeds.py for the tolerance). Models with dropout train one seed at a time.
    On CUDA the step is captured in a CUDA graph after three eager warm-up steps
    (``cuda_graph=False`` turns that off); a capture that fails falls back to eager.
    ``vectorise`` (default: where it pays) stacks the seeds; by default fp64 on a CPU
    trains seed by seed, as the CPU has no fast grouped fp64 convolution (measured, 2
    cores, ResNet-18 width 8: 22 seed-iterations/s stacked against 29 one by one).
    ``teacher_weights(teacher_specs)`` supplies the distillation teachers' trained weights,
    one per seed; by default the teachers are trained here (together), uncached.
    """
    base = _common_spec(specs)
    device = resolve_device(base.device)
    data = dataset or data_mod.load_dataset(base.dataset, data_dir)
    first = _initial_model(specs[0], data, device)
    if vectorise is None:
        vectorise = vectorisable(first) and not (device.type == "cpu" and base.precision == "fp64")
    if len(specs) > 1 and not vectorise:
        return [run for spec in specs
                for run in train_seeds([spec], data_dir, data, progress, teacher_weights, cuda_graph)]
    models = [first, *(_initial_model(spec, data, device) for spec in specs[1:])]
    return _Training(list(specs), data, device, SeedStack(models), progress,
                     teacher_weights, cuda_graph).run()


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


def _initial_model(spec: RunSpec, data: data_mod.Dataset, device: torch.device) -> nn.Module:
    """The seed's freshly initialised model: the same seed, the same initial weights."""
    torch.manual_seed(spec.seed)
    channels, size, _ = data.shape
    model = build_model(spec.model, len(data.classes), channels, size, **spec.model_options)
    return model.to(device, get_mode(spec.precision).param_dtype)


def _teacher_stack(specs: list[RunSpec], data: data_mod.Dataset, device: torch.device,
                   supply: TeacherWeights | None) -> SeedStack | None:
    """Each seed's distillation teacher (``spec.teacher`` at that seed), stacked, eval mode."""
    if specs[0].teacher is None:
        return None
    teacher_specs = [spec.teacher_spec() for spec in specs]
    if supply is None:
        found = [run.weights for run in train_seeds(teacher_specs, dataset=data)]
    else:
        found = supply(teacher_specs)
    teachers = []
    for teacher_spec, weights in zip(teacher_specs, found):
        if weights is None:
            raise ValueError(f"teacher {teacher_spec.label()} kept no weights")
        model = _initial_model(teacher_spec, data, device)
        model.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
        teachers.append(model)
    return SeedStack(teachers).eval()


class _Training:
    """The state of one (vectorised) training computation; ``run`` does it."""

    def __init__(self, specs: list[RunSpec], data: data_mod.Dataset, device: torch.device,
                 stack: SeedStack, progress: Progress | None, teacher_weights: TeacherWeights | None,
                 cuda_graph: bool) -> None:
        spec = self.spec = specs[0]
        self.specs, self.data, self.device, self.stack = specs, data, device, stack
        self.progress = progress
        self.mode = get_mode(spec.precision)
        split = data.train.head(spec.train_subset)
        self.iterations = total_iterations(spec, len(split))
        self.test = data.test.head(spec.test_subset)
        self.eval_points = sorted({i for i in spec.eval_at if 0 < i < self.iterations} | {self.iterations})
        mean, std = data.mean_std
        self.loader = data_mod.DeviceLoader(
            split, mean, std, spec.batch_size, device, self.mode.param_dtype,
            # its own stream, so data order does not depend on the model
            seeds=[s.seed + 1_000_003 for s in specs], augment=spec.augment,
            partners=spec.mixup_alpha > 0,
        )
        self.optimizer = SeedOptimizer(stack.parameters(), [
            w or spec.decay_bias_and_bn for w in stack.is_weight()
        ], spec.optimizer, spec.momentum, spec.weight_decay)
        self.scaler = SeedLossScaler(len(specs), device) if self.mode.loss_scaling else None
        self.teacher = _teacher_stack(specs, data, device, teacher_weights)
        self.lr = torch.as_tensor(lr_multipliers(spec, self.iterations) * spec.lr,
                                  dtype=torch.float32, device=device)
        self.mix = torch.as_tensor(np.stack([
            np.random.default_rng(s.seed).beta(spec.mixup_alpha, spec.mixup_alpha, self.iterations)
            for s in specs]), dtype=torch.float32, device=device) if spec.mixup_alpha > 0 else None
        self.graph = cuda_graph and device.type == "cuda"

    # -- the step: no host synchronisation, fixed shapes, so a CUDA graph can replay it --

    def step(self, x: Tensor, y: Tensor, partners: Tensor | None, lam: Tensor | None,
             lr: Tensor) -> tuple[Tensor, Tensor]:
        """One training step of every seed; returns per-seed loss and correct count."""
        with self.mode.autocast(self.device.type):
            if partners is not None and lam is not None:
                mixed = lam.view(-1, 1, 1, 1, 1).to(x.dtype)
                other = torch.gather(x, 1, partners.view(*partners.shape, 1, 1, 1).expand_as(x))
                x_in = mixed * x + (1 - mixed) * other
            else:
                x_in = x
            out = self.stack(x_in)
            per_seed = self._cross_entropy(out, y)
            if partners is not None and lam is not None:
                per_seed = lam * per_seed + (1 - lam) * self._cross_entropy(
                    out, torch.gather(y, 1, partners))
            if self.teacher is not None:
                per_seed = per_seed + self._distillation(out, x_in)
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

    def _distillation(self, out: Tensor, x: Tensor) -> Tensor:
        """Hinton's soft-target loss, T^2 * CE(softmax(teacher/T), softmax(student/T))."""
        assert self.teacher is not None
        temperature = self.spec.distill_temperature
        with torch.no_grad():
            soft = F.softmax(self.teacher(x).float() / temperature, dim=-1)
        log_student = F.log_softmax(out.float() / temperature, dim=-1)
        return -(soft * log_student).sum(-1).mean(1) * temperature**2

    # -- the loop --------------------------------------------------------------------

    def run(self) -> list[RunResult]:
        n, iterations = len(self.specs), self.iterations
        losses = torch.full((n, iterations), math.nan, device=self.device)
        correct = torch.zeros((n, iterations), dtype=torch.int64, device=self.device)
        accuracy: list[list[float]] = [[] for _ in range(n)]
        diverged: list[int | None] = [None] * n
        step = self.step
        checked, eval_time = 0, 0.0
        batches = iter(self.loader)
        started = time.perf_counter()
        with precision(self.mode, self.device) as state:
            self.stack.train()
            for it in range(iterations):
                batch = next(batches)
                lam = self.mix[:, it] if self.mix is not None else None
                inputs = (batch.images, batch.labels, batch.partners, lam, self.lr[it])
                if self.graph and it == _GRAPH_WARMUP:
                    step = _capture(self.step, self.device, *inputs)
                if self.graph and it < _GRAPH_WARMUP:
                    loss, hits = _on_side_stream(step, self.device, *inputs)
                else:
                    loss, hits = step(*inputs)
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
                    self.progress(done, iterations, float(losses[:, done - 1].nanmean()))
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
               "cuda_graph": str(step is not self.step).lower()}
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
        """Test accuracy of every seed, in eval mode, under the run's precision (one sync)."""
        self.stack.eval()
        mean, std = self.data.mean_std
        hits = torch.zeros(len(self.specs), dtype=torch.int64, device=self.device)
        for x, y in data_mod.evaluation_batches(self.test, mean, std, self.device,
                                                self.mode.param_dtype):
            with self.mode.autocast(self.device.type):
                hits += (self.stack(x, per_seed=False).argmax(-1) == y).sum(1)
        return (hits.double() / len(self.test)).tolist()

    def _weights(self, seed: int) -> dict[str, np.ndarray]:
        state = self.stack.unstack(seed).state_dict()
        return {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.cpu().numpy()
                for k, v in state.items()}


_GRAPH_WARMUP = 3


def _on_side_stream(step: Callable[..., tuple[Tensor, Tensor]], device: torch.device,
                    *inputs: Tensor | None) -> tuple[Tensor, Tensor]:
    """A warm-up step before capture, on a side stream as CUDA graph capture requires."""
    side, current = torch.cuda.Stream(device), torch.cuda.current_stream(device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        outputs = step(*inputs)
    current.wait_stream(side)
    return outputs


def _capture(step: Callable[..., tuple[Tensor, Tensor]], device: torch.device,
             *example: Tensor | None) -> Callable[..., tuple[Tensor, Tensor]]:
    """``step`` captured in a CUDA graph: later calls copy their inputs into the captured
    ones and replay. If capture fails, say why and keep the eager step."""
    static = [t.clone() if t is not None else None for t in example]
    graph = torch.cuda.CUDAGraph()
    try:
        torch.cuda.synchronize(device)
        with torch.cuda.graph(graph):
            outputs = step(*static)
    except Exception as error:  # an op that cannot be captured: train eagerly instead
        warnings.warn(f"CUDA graph capture failed ({error}); training eagerly", stacklevel=3)
        return step

    def replay(*inputs: Tensor | None) -> tuple[Tensor, Tensor]:
        for target, value in zip(static, inputs):
            if target is not None:
                target.copy_(value)
        graph.replay()
        return outputs

    return replay


def _first_non_finite(chunk: Tensor, offset: int) -> list[int | None]:
    """Per seed, the iteration of the first non-finite loss in ``chunk`` (one host sync)."""
    bad = ~torch.isfinite(chunk)
    first = torch.where(bad.any(1), bad.int().argmax(1), -1).tolist()
    return [None if f < 0 else offset + f for f in first]
