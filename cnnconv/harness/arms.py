"""What a claim test asks for: arms, each one spec trained over the session's seeds.

A claim compares arms. ``arms(fp64=spec_a, tf32=spec_b)`` trains (or loads from the
run store) every arm with the same seeds -- common random numbers, so per-seed summaries
can be paired -- the seeds of an arm as one vectorised computation, and returns ``Arm``
objects whose methods give one number per seed::

    fp64, tf32 = arms(fp64=p0.run(precision="fp64"), tf32=p0.run(precision="tf32"))
    return stats.equivalent(fp64.window_mean(*p0.early), tf32.window_mean(*p0.early),
                            margin=0.03, relative=True)

Arms remember the windows they were summarised over, which the report shades. A run that
diverged makes its arm's summaries raise ``RunDiverged`` (the runs stay stored), unless
the claim asks about divergence itself through ``Arm.diverged``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cnnconv import stats
from cnnconv.engine.result import RunResult
from cnnconv.engine.spec import RunSpec


class RunDiverged(RuntimeError):
    """A run needed for a summary stopped at a non-finite loss."""


@dataclass
class Arm:
    """One spec over seeds ``0..n-1``: per-seed summaries for the statistics."""

    label: str
    spec: RunSpec
    runs: list[RunResult]
    windows: set[tuple[int, int]] = field(default_factory=set)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def curves(self) -> np.ndarray:
        """Training loss per iteration, one row per seed."""
        return np.stack([run.losses for run in self.runs]).astype(np.float64)

    def diverged(self) -> np.ndarray:
        """Per seed: did the run stop at a non-finite loss?"""
        return np.array([run.diverged_at is not None for run in self.runs])

    def _healthy(self) -> list[RunResult]:
        for run in self.runs:
            if run.diverged_at is not None:
                raise RunDiverged(
                    f"arm {self.label!r}: {run.spec.label()} diverged (non-finite loss) at "
                    f"iteration {run.diverged_at}. Lower the learning rate or add warmup; "
                    "runs already finished are kept in the run store"
                )
        return self.runs

    def per_seed(self, summary: Callable[[RunResult], float],
                 diverged: float | None = None) -> np.ndarray:
        """Any per-run summary, one value per seed. With ``diverged`` given, a diverged
        run counts as that value (a claim about fitting: a diverged run fits nothing)
        instead of raising ``RunDiverged``."""
        if diverged is None:
            return np.array([summary(run) for run in self._healthy()])
        return np.array([diverged if run.diverged_at is not None else summary(run)
                         for run in self.runs])

    def window_mean(self, start: int, stop: int) -> np.ndarray:
        """Mean training loss over iterations [start, stop), per seed."""
        self.windows.add((start, stop))
        return self.per_seed(lambda run: stats.window_mean(run.losses, start, stop))

    def slope(self, start: int, stop: int) -> np.ndarray:
        """Least-squares slope of the loss per 1000 iterations over the window, per seed."""
        self.windows.add((start, stop))
        return self.per_seed(lambda run: stats.slope(run.losses, start, stop)[0])

    def jitter(self, start: int, stop: int) -> np.ndarray:
        """Loss jitter (``stats.jitter``) over the window, per seed."""
        self.windows.add((start, stop))
        return self.per_seed(lambda run: stats.jitter(run.losses, start, stop))

    def train_accuracy(self, start: int, stop: int, diverged: float | None = None) -> np.ndarray:
        """Training accuracy over iterations [start, stop), per seed (dropout active)."""
        self.windows.add((start, stop))
        return self.per_seed(lambda run: run.train_accuracy(start, stop), diverged)

    def final_accuracy(self, diverged: float | None = None) -> np.ndarray:
        """Test accuracy at the end of the run, per seed."""
        return self.per_seed(lambda run: run.final_test_accuracy, diverged)

    def wall_time(self) -> np.ndarray:
        return np.array([run.wall_time for run in self.runs])


class Arms:
    """Hands out arms for one claim test, all over the same seeds: the seeds of the look
    being decided (``start_look``), or more where the claim asks for a minimum."""

    def __init__(self, fetch: Callable[[list[RunSpec], int | None, str], list[RunResult]],
                 seeds: int) -> None:
        self._fetch = fetch
        self.seeds = seeds
        self.look = ""
        self.minimum = 0  # the most seeds the claim has asked for (``seeds=``)
        self.requested: list[Arm] = []

    def start_look(self, seeds: int, look: str = "") -> None:
        """Decide the claim again at ``seeds`` per arm (``look`` names it in progress
        lines): the arms it asks for now are this look's; stored runs are reused, so
        only the new seeds train."""
        self.seeds, self.look = seeds, look
        self.requested = []

    def __call__(self, seeds: int | None = None, stack: int | None = None,
                 **specs: RunSpec) -> list[Arm]:
        """One ``Arm`` per keyword, in order; ``seeds`` raises this claim's minimum.

        ``stack=1`` trains missing runs one seed per computation (for claims about a
        single run's wall clock); by default the session's ``--cnnconv-stack`` applies.
        """
        if not specs:
            raise TypeError("name at least one arm, e.g. arms(fp64=spec)")
        self.minimum = max(self.minimum, seeds or 0)
        count = max(self.seeds, self.minimum)
        arms = []
        for label, spec in specs.items():
            if not isinstance(spec, RunSpec):
                raise TypeError(f"arm {label!r} must be a RunSpec, got {type(spec).__name__}")
            name = f"{label} ({self.look})" if self.look else label
            runs = self._fetch([spec.replace(seed=seed) for seed in range(count)], stack, name)
            arms.append(Arm(label, spec.replace(seed=0), runs))
        self.requested.extend(arms)
        return arms
