"""What a run produced: ``RunResult``, the per-iteration curves and the run's metadata."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnconv.engine.spec import RunSpec


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
