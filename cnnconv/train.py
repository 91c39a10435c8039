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
from collections.abc import Callable, Mapping
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

# Bump when a change to the engine changes results: cached runs keyed by the old version
# are then no longer used (``cnnconv store prune --stale`` removes them).
ENGINE_VERSION = 1
CHECK_EVERY = 50

OPTIMIZERS = ("sgd", "nesterov", "adam")
SCHEDULES = ("constant", "step", "cosine", "piecewise")
AUGMENTATIONS = ("none", "crop_flip", "crop_flip_reflect")


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run. Two equal specs give the same result.

    Length is ``iterations`` or ``epochs`` (whole passes of the training split, partial
    batches dropped). ``lr`` is the peak learning rate; the schedule multiplies it:
    ``step`` by ``step_gamma`` at each fraction in ``step_milestones``, ``cosine`` down to
    0, ``piecewise`` by linear interpolation between ``(fraction, multiplier)`` points.
    ``warmup`` (a fraction of the run) ramps any schedule linearly up from 0.
    ``train_subset`` keeps the first N training images (CPU-scale runs).
    ``eval_at`` lists iterations at which test accuracy is measured; the last iteration is
    always measured.
    """

    model: str = "resnet18"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "cifar10"
    train_subset: int | None = None
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
        check_choice("augment", self.augment, AUGMENTATIONS)
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError("give exactly one of iterations and epochs")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        for name in ("lr", "momentum", "weight_decay", "warmup", "label_smoothing", "mixup_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup is a fraction of the run in [0, 1), got {self.warmup}")
        if self.schedule == "piecewise" and len(self.schedule_points) < 2:
            raise ValueError("schedule='piecewise' needs at least two schedule_points")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"unknown device {self.device!r}; use cpu, cuda or cuda:N")

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def canonical(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, the form the run store keys on."""
        out = dataclasses.asdict(self)
        out["model_options"] = dict(self.model_options)
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

    @property
    def iterations_per_second(self) -> float:
        """Training speed, evaluation time excluded."""
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


def make_optimizer(spec: RunSpec, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (plain or with momentum), Nesterov SGD, or Adam, with optional bias/BN decay.

    Without ``decay_bias_and_bn`` only conv and linear weights (tensors of rank > 1) decay,
    the Bag of Tricks "no bias decay" rule.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.decay_bias_and_bn:
        groups = [{"params": params, "weight_decay": spec.weight_decay}]
    else:
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": spec.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    if spec.optimizer == "adam":
        return torch.optim.Adam(groups, lr=spec.lr)
    return torch.optim.SGD(
        groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.optimizer == "nesterov"
    )


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


def train(
    spec: RunSpec,
    data_dir: str | None = None,
    dataset: data_mod.Dataset | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Train one run. ``progress(iteration, total, recent_loss)`` is called every check."""
    device = resolve_device(spec.device)
    mode = get_mode(spec.precision)
    data = dataset or data_mod.load_dataset(spec.dataset, data_dir)
    train_split = data.train
    if spec.train_subset is not None:
        train_split = data_mod.Split(
            train_split.images[: spec.train_subset], train_split.labels[: spec.train_subset]
        )
    iterations = total_iterations(spec, len(train_split))
    eval_points = sorted({i for i in spec.eval_at if 0 < i < iterations} | {iterations})
    mean, std = data.mean_std
    channels, size, _ = data.shape

    torch.manual_seed(spec.seed)  # initial weights and dropout: the same seed, the same init
    model = build_model(
        spec.model, len(data.classes), channels, size, **spec.model_options
    ).to(device, mode.param_dtype)
    optimizer = make_optimizer(spec, model)
    scaler = torch.amp.GradScaler(device.type) if mode.loss_scaling else None
    input_dtype = mode.param_dtype
    loader = data_mod.DeviceLoader(
        train_split, mean, std, spec.batch_size, device, input_dtype,
        seed=spec.seed + 1_000_003,  # its own stream, so data order does not depend on the model
        augment=spec.augment != "none",
        pad_mode="reflect" if spec.augment == "crop_flip_reflect" else "constant",
    )
    multipliers = lr_multipliers(spec, iterations) * spec.lr
    mix = np.random.default_rng(spec.seed).beta(spec.mixup_alpha, spec.mixup_alpha, iterations) \
        if spec.mixup_alpha > 0 else None

    losses = torch.full((iterations,), math.nan, device=device)
    correct = torch.zeros(iterations, device=device, dtype=torch.int64)
    test_accuracy: list[float] = []
    diverged_at = None
    checked = 0
    eval_time = 0.0
    batches = iter(loader)
    started = time.perf_counter()
    with precision(mode, device) as state:
        model.train()
        for it in range(iterations):
            for group in optimizer.param_groups:
                group["lr"] = multipliers[it]
            x, y = next(batches)
            with mode.autocast(device.type):
                if mix is not None:
                    lam = float(mix[it])
                    partner = torch.randperm(x.shape[0], device=device, generator=loader.generator)
                    out = model(lam * x + (1 - lam) * x[partner])
                    loss = lam * F.cross_entropy(out, y, label_smoothing=spec.label_smoothing) + (
                        1 - lam) * F.cross_entropy(out, y[partner], label_smoothing=spec.label_smoothing)
                else:
                    out = model(x)
                    loss = F.cross_entropy(out, y, label_smoothing=spec.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            losses[it] = loss.detach().float()
            correct[it] = (out.detach().argmax(1) == y).sum()
            done = it + 1
            if done % CHECK_EVERY == 0 or done == iterations or done in eval_points:
                diverged_at = _first_non_finite(losses[checked:done], checked)
                checked = done
                if diverged_at is not None:
                    break
                if progress is not None:
                    progress(done, iterations, float(losses[done - 1]))
                if done in eval_points:
                    eval_started = time.perf_counter()
                    test_accuracy.append(evaluate(model, data.test, mean, std, device, mode))
                    eval_time += time.perf_counter() - eval_started
                    model.train()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - started
    return RunResult(
        spec=spec,
        losses=losses.cpu().numpy(),
        train_correct=correct.cpu().numpy(),
        eval_iterations=eval_points[: len(test_accuracy)],
        test_accuracy=test_accuracy,
        samples_seen=loader.samples_seen,
        epochs=loader.epochs,
        wall_time=wall,
        eval_time=eval_time,
        diverged_at=diverged_at,
        precision_state=state,
        environment=environment(device),
    )


def _first_non_finite(chunk: Tensor, offset: int) -> int | None:
    """Index of the first non-finite loss in ``chunk`` (one host sync per check)."""
    bad = ~torch.isfinite(chunk)
    if not bool(bad.any()):
        return None
    return offset + int(bad.nonzero()[0, 0])


@torch.no_grad()
def evaluate(
    model: nn.Module, split: data_mod.Split, mean: Tensor, std: Tensor,
    device: torch.device, mode: Any,
) -> float:
    """Test accuracy in eval mode, under the run's precision, with one host sync."""
    model.eval()
    hits = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in data_mod.evaluation_batches(split, mean, std, device, mode.param_dtype):
        with mode.autocast(device.type):
            hits += (model(x).argmax(1) == y).sum()
    return float(hits) / len(split)
