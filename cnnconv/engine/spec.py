"""What a run is: the frozen, validated ``RunSpec`` and the key the run store files it under.

Two equal specs give the same result, so the spec's content hash (with the engine
version) is the run's identity. The key leaves out fields at their defaults (adding a
field keeps every key) and keeps only the device's *type*: ``cuda``, ``cuda:0`` and
``cuda:1`` compute the same run, so N GPUs share the arms they have in common, while a
CPU run and a GPU run stay distinct.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnconv.engine.datasets import DATASETS
from cnnconv.engine.loader import AUGMENTATIONS
from cnnconv.engine.models import MODELS, check_options
from cnnconv.engine.optimizer import OPTIMIZERS
from cnnconv.engine.precision import MODES
from cnnconv.engine.validation import check_choice, check_number

# Bump when a change to the engine changes results: cached runs keyed by the old version
# are then no longer used (``cnnconv store prune --stale`` removes them). Rounding counts:
# a verdict near the edge of its test moves with a change of summation order alone
# (engine 4 computes a stack's first layer seed by seed, ``kernels``, and three cpu-scale
# verdicts moved), and a store must not mix runs of both orders.
ENGINE_VERSION = 4
# The learning-rate schedules a run may name (``schedule`` computes them).
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
    ``device`` says where to train (``cpu``, ``cuda``, ``cuda:N``); only its type is
    part of the key.
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
        check_options(self.model, self.model_options)
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("precision", self.precision, MODES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("augment", self.augment, AUGMENTATIONS)
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError("give exactly one of iterations and epochs")
        counts = {"iterations": self.iterations, "batch_size": self.batch_size,
                  "train_subset": self.train_subset, "test_subset": self.test_subset}
        for name, count in counts.items():
            if count is not None:
                check_number(name, count, 1, integer=True)
        check_number("seed", self.seed, 0, integer=True)
        if self.epochs is not None:
            check_number("epochs", self.epochs, 0, low_open=True)
        for name in ("lr", "weight_decay", "mixup_alpha"):
            check_number(name, getattr(self, name), 0)
        for name in ("momentum", "warmup", "label_smoothing"):  # fractions
            check_number(name, getattr(self, name), 0, 1)
        for name in ("step_gamma", "distill_temperature"):
            check_number(name, getattr(self, name), 0, low_open=True)
        for milestone in self.step_milestones:
            check_number("step_milestones", milestone, 0, 1, high_open=False)
        if self.schedule == "piecewise" and len(self.schedule_points) < 2:
            raise ValueError("schedule='piecewise' needs at least two schedule_points")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            device = None
        if device is None or device.type not in ("cpu", "cuda"):
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
        run store keys on, with the device reduced to its type (see the module
        docstring). Leaving defaults out keeps every key valid when a field is added
        whose default changes nothing."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if getattr(self, f.name) != _DEFAULTS[f.name]}
        for name in ("model", "dataset", "precision", "seed"):  # always readable
            out[name] = getattr(self, name)
        out["device"] = torch.device(self.device).type
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
