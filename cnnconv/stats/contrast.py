"""A contrast between arms as a t estimate, the checks every sample passes, and the power
of a t-test: the arithmetic the directional and equivalence tests share.

Student's t is computed through scipy.special's ufuncs (``stdtr``: the cdf, ``stdtrit``:
its inverse, ``nctdtr``: the noncentral cdf): the same numbers as ``scipy.stats.t`` at a
thirtieth of the cost, which the calibration tests' tens of thousands of decisions feel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from cnnconv.stats.decision import NO_SPREAD, TARGET_POWER, smallest_n


@dataclass(frozen=True)
class Estimate:
    """An estimate of ``mean(x) - rho * mean(y)`` with what its t-test needs.

    ``unit_variances`` holds the per-seed variance of each independent arm (one entry for a
    one-sample or paired contrast, two for Welch's), ``sizes`` the seeds in each; the
    standard error and Welch-Satterthwaite degrees of freedom follow, and ``at(n)`` gives
    the same contrast with n seeds per arm, for power.
    """

    value: float
    unit_variances: tuple[float, ...]
    sizes: tuple[int, ...]
    efficiency: float = 1.0

    @property
    def se(self) -> float:
        return math.sqrt(sum(v / m for v, m in zip(self.unit_variances, self.sizes)))

    @property
    def df(self) -> float:
        if len(self.sizes) == 1:
            return self.sizes[0] - 1
        parts = [v / m for v, m in zip(self.unit_variances, self.sizes)]
        if sum(parts) == 0:
            return sum(self.sizes) - 2
        return sum(parts) ** 2 / sum(p**2 / (m - 1) for p, m in zip(parts, self.sizes))

    def at(self, n: int) -> Estimate:
        return replace(self, sizes=(n,) * len(self.sizes))

    def p_above(self, bound: float) -> float:
        """p of H0 "the contrast is <= bound" (small when significantly above it)."""
        if self.se == 0:
            return 0.0 if self.value > bound else 1.0
        return float(special.stdtr(self.df, (bound - self.value) / self.se))

    def p_below(self, bound: float) -> float:
        """p of H0 "the contrast is >= bound"."""
        if self.se == 0:
            return 0.0 if self.value < bound else 1.0
        return float(special.stdtr(self.df, (self.value - bound) / self.se))

    def critical(self, alpha: float) -> float:
        """The t quantile a one-sided test at ``alpha`` must exceed."""
        return float(special.stdtrit(self.df, 1 - alpha))

    def interval(self, alpha: float) -> tuple[float, float]:
        half = self.critical(alpha) * self.se if self.se else 0.0
        return self.value - half, self.value + half

    def power_above(self, bound: float, n: int, alpha: float) -> float:
        """Power at n seeds per arm of the test that the contrast exceeds ``bound``."""
        if n < 2:
            return 0.0
        scaled = self.at(n)
        if scaled.se == 0:
            return float(self.value > bound)
        critical = scaled.critical(alpha)
        shift = (self.value - bound) / scaled.se * math.sqrt(self.efficiency)
        power = 1 - float(special.nctdtr(scaled.df, shift, critical))
        # scipy's noncentral t gives nan far out in the tail (a near-zero spread).
        return power if math.isfinite(power) else float(shift > critical)

    def power_below(self, bound: float, n: int, alpha: float) -> float:
        return replace(self, value=-self.value).power_above(-bound, n, alpha)


def contrast(x: np.ndarray, y: np.ndarray | float, paired: bool, rho: float = 1.0) -> Estimate:
    """``mean(x) - rho * mean(y)``: one-sample against a number, paired by seed, or Welch."""
    if isinstance(y, float) or paired:
        d = x - rho * y
        return Estimate(float(d.mean()), (float(d.var(ddof=1)),), (len(d),))
    return Estimate(float(x.mean() - rho * y.mean()),
                    (float(x.var(ddof=1)), float(rho**2 * y.var(ddof=1))), (len(x), len(y)))


def no_spread_note(estimates: Sequence[Estimate]) -> str:
    """Why more seeds cannot settle a decision whose estimates have no spread ("" else)."""
    return NO_SPREAD if all(e.se == 0 for e in estimates) else ""


def check_samples(a: ArrayLike, b: ArrayLike | float, paired: bool) -> tuple[np.ndarray, np.ndarray | float]:
    """The two sides of a comparison as float arrays (``b`` may be a finite number), or a
    ``ValueError`` naming what is wrong with them."""
    x = check_sample(a, "a")
    if np.ndim(b) == 0:
        y = float(b)  # type: ignore[arg-type]
        if not math.isfinite(y):
            raise ValueError(f"the number to compare against must be finite, got {y}")
        return x, y
    y_sample = check_sample(b, "b")
    if paired and y_sample.shape != x.shape:
        raise ValueError(f"paired samples must have equal length, got {len(x)} and {len(y_sample)}"
                         "; pass paired=False for independent arms")
    return x, y_sample


def check_sample(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a 1-D float array of at least 2 finite seeds, or a ``ValueError``."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"{name}: need a 1-D sample of at least 2 seeds, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: the sample contains non-finite values (a diverged run?): "
                         f"{x.tolist()}")
    return x


def check_alpha(alpha: float) -> None:
    """A decision's level must lie in (0, 0.5): its interval is two-sided at 1 - 2 alpha."""
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")


def power_one_sided(effect_size: float, n: int, alpha: float = 0.05) -> float:
    """Power of a one-sided one-sample (or paired) t-test for standardised effect d."""
    return Estimate(effect_size, (1.0,), (n,)).power_above(0.0, n, alpha)


def seeds_needed(effect_size: float, alpha: float = 0.05, power: float = TARGET_POWER) -> int | None:
    """Smallest n whose one-sided one-sample t-test reaches ``power`` for effect d."""
    return smallest_n(partial(power_one_sided, effect_size), alpha, power)
