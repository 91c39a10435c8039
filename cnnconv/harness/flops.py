"""FLOPs of a run, counted: what ``--cnnconv-plan`` and the throughput table price.

FLOPs are counted, not modelled: ``torch.utils.flop_counter.FlopCounterMode`` records
one training step of each model and batch size (forward and backward of the loss, and a
teacher's forward) and the forward of one test image, on the meta device: the shapes of
a CPU run, hence its count (a test checks both), without the arithmetic. It counts
matrix multiplications and convolutions, the bulk of a CNN's work; elementwise work
(BatchNorm, the optimizer, augmentation) is not in it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cnnconv.engine.datasets import Dataset
from cnnconv.engine.models import build_model
from cnnconv.engine.schedule import evaluation_points, total_iterations
from cnnconv.engine.spec import RunSpec


@functools.lru_cache(maxsize=256)
def count_flops(model: str, options: Mapping[str, Any], batch_size: int,
           shape: tuple[int, int, int], classes: int, backward: bool) -> int:
    """FLOPs of one forward (and backward) of the loss at ``batch_size``, on meta tensors
    (``options``: hashable, as a spec's ``model_options`` are)."""
    with torch.device("meta"):
        network = build_model(model, classes, shape[0], shape[1], **dict(options))
        images = torch.empty(batch_size, *shape)
        labels = torch.zeros(batch_size, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        if backward:
            F.cross_entropy(network(images), labels).backward()
        else:  # a teacher's or an evaluation's forward: in eval mode, as they run
            with torch.no_grad():
                network.eval()(images)
    return counter.get_total_flops()


def step_flops(spec: RunSpec, shape: tuple[int, int, int], classes: int) -> int:
    """FLOPs of one training step of one seed: forward and backward of the loss, plus the
    distillation teacher's forward."""
    flops = count_flops(spec.model, spec.model_options, spec.batch_size, shape, classes, True)
    if spec.teacher is not None:
        teacher = spec.teacher
        flops += count_flops(teacher.model, teacher.model_options, spec.batch_size, shape, classes,
                        False)
    return flops


@dataclass(frozen=True)
class RunCost:
    """One run to train: its key, its length, its FLOPs (steps and evaluations), and how
    many runs it would train with as one computation (``stack``)."""

    key: str
    spec: RunSpec
    iterations: int
    step_flops: int
    flops: int
    stack: int = 1


def run_cost(spec: RunSpec, dataset: Dataset, stack: int = 1) -> RunCost:
    """What training ``spec`` on ``dataset`` in a computation of ``stack`` runs costs."""
    shape, classes = dataset.shape, len(dataset.classes)
    iterations = total_iterations(spec, len(dataset.train.head(spec.train_subset)))
    per_step = step_flops(spec, shape, classes)
    per_image = count_flops(spec.model, spec.model_options, 1, shape, classes, False)
    evaluations = len(evaluation_points(spec, iterations)) * len(dataset.test.head(spec.test_subset))
    return RunCost(spec.key(), spec, iterations, per_step,
                   iterations * per_step + evaluations * per_image, stack)
