"""Knowledge distillation: each seed's teacher, and the soft-target loss it teaches with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnconv.engine.spec import RunSpec
from cnnconv.engine.stacking import SeedStack

TeacherWeights = Callable[[list[RunSpec]], list[Mapping[str, Any] | None]]
ModelBuilder = Callable[[RunSpec], torch.nn.Module]


def teacher_stack(specs: list[RunSpec], build: ModelBuilder,
                  trained_weights: TeacherWeights) -> SeedStack | None:
    """Each seed's distillation teacher (``spec.teacher`` at that seed), stacked, in eval
    mode; None for a run without a teacher. ``trained_weights(teacher_specs)`` gives each
    teacher's trained weights; ``build(spec)`` an initialised model to load them into."""
    if specs[0].teacher is None:
        return None
    teacher_specs = [spec.teacher_spec() for spec in specs]
    teachers = []
    for teacher_spec, weights in zip(teacher_specs, trained_weights(teacher_specs)):
        if weights is None:
            raise ValueError(f"teacher {teacher_spec.label()} kept no weights")
        model = build(teacher_spec)
        model.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
        teachers.append(model)
    return SeedStack(teachers).eval()


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Hinton's soft-target loss per seed, T^2 * CE(softmax(teacher/T), softmax(student/T)),
    for logits ``[N, B, classes]``; computed in fp32 whatever the mode."""
    soft = F.softmax(teacher.detach().float() / temperature, dim=-1)
    log_student = F.log_softmax(student.float() / temperature, dim=-1)
    return -(soft * log_student).sum(-1).mean(1) * temperature**2
