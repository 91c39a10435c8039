"""Per-run summaries: one number per run (a window mean, a slope, jitter), which the
decisions then compare across seeds; and a bootstrap interval for any statistic."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps
from scipy.ndimage import uniform_filter1d


def window_mean(curve: ArrayLike, start: int, stop: int) -> float:
    """Mean of ``curve[start:stop]`` (iterations ``start`` to ``stop - 1``)."""
    values = _window(curve, start, stop)
    return float(values.mean())


def slope(
    curve: ArrayLike, start: int, stop: int, confidence: float = 0.9
) -> tuple[float, tuple[float, float]]:
    """Least-squares slope of the curve over the window, per 1000 iterations, with its CI."""
    values = _window(curve, start, stop)
    fit = sps.linregress(np.arange(start, stop), values)
    half = sps.t.ppf(0.5 + confidence / 2, len(values) - 2) * fit.stderr
    return 1000 * fit.slope, (1000 * (fit.slope - half), 1000 * (fit.slope + half))


def jitter(curve: ArrayLike, start: int, stop: int, smooth: int = 25) -> float:
    """Step-to-step noise: the std of the curve's residuals around its centred moving average.

    The moving average (``smooth`` iterations, odd so that it is centred) follows the trend
    of convergence; what is left is the jitter the source describes. The average is taken
    over the whole curve so the window edges do not lose points. A point's residual from
    an average that includes it has variance (1 - 1/smooth) times the noise's, so the
    std is scaled back by sqrt(smooth / (smooth - 1)): white noise of std s gives s.
    """
    if smooth < 3 or smooth % 2 == 0:
        raise ValueError(f"jitter needs an odd moving-average width >= 3, got {smooth}")
    values = np.asarray(curve, dtype=np.float64)
    _window(values, start, stop)
    trend = uniform_filter1d(values, size=smooth, mode="nearest")
    residual = (values - trend)[start:stop]
    return float(residual.std(ddof=1) * math.sqrt(smooth / (smooth - 1)))


def _window(curve: ArrayLike, start: int, stop: int) -> np.ndarray:
    values = np.asarray(curve, dtype=np.float64)
    if not 0 <= start < stop <= len(values):
        raise ValueError(f"window [{start}, {stop}) is outside the curve of {len(values)} points")
    return values[start:stop]


def bootstrap_ci(
    samples: Sequence[ArrayLike] | ArrayLike,
    statistic: Callable[..., np.ndarray],
    confidence: float = 0.9,
    seed: int = 0,
) -> tuple[float, float]:
    """BCa bootstrap CI of a statistic of one sample (a 1-D array or list of numbers) or
    of several independent samples (a sequence of them), on scipy.stats.bootstrap."""
    if all(np.ndim(item) == 0 for item in samples):  # type: ignore[union-attr]
        data: tuple[np.ndarray, ...] = (np.asarray(samples, dtype=np.float64),)
    else:
        data = tuple(np.asarray(sample, dtype=np.float64) for sample in samples)  # type: ignore[union-attr]
    result = sps.bootstrap(data, statistic, confidence_level=confidence, n_resamples=2000,
                           method="BCa", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
