"""Decisions on trends: one number per level falling (or rising) with the level (Kendall's tau)."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from cnnconv.stats.contrast import check_alpha
from cnnconv.stats.decision import Decision


def trend(
    levels: ArrayLike, values: ArrayLike, *, decreasing: bool = True, alpha: float = 0.05,
    label: str = "",
) -> Decision:
    """Claim: ``values`` fall (or rise) monotonically with ``levels`` (Kendall's tau).

    For one number per level (a count over a grid, say), where a paired test has nothing
    to pair. One-sided ``scipy.stats.kendalltau``; the effect is tau with the
    Fieller-Hartley-Pearson interval: on Fisher's z = atanh(tau) with standard error
    ``sqrt(0.437 / (n - 4))``, n >= 5. The number of levels, not of seeds, sets n.
    """
    x, y = np.asarray(levels, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 5:
        raise ValueError(f"trend needs at least 5 paired levels and values, got {x.shape}, {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"trend needs finite levels and values, got {x.tolist()}, {y.tolist()}")
    check_alpha(alpha)
    tau = float(_tau_b(x, y))
    p_less, p_greater = _kendall_p(x, y)
    p_claim, p_against = (p_less, p_greater) if decreasing else (p_greater, p_less)
    half = sps.norm.isf(alpha) * math.sqrt(0.437 / (len(x) - 4))
    # atanh(+-1) is infinite: a perfect order is placed one discordant pair from perfect,
    # and the interval reaches the perfect value itself.
    nearest = 1 - 4 / (len(x) * (len(x) - 1))
    z = math.atanh(float(np.clip(tau, -nearest, nearest)))
    ci = (min(math.tanh(z - half), tau), max(math.tanh(z + half), tau))
    return Decision(
        p_claim, p_against, tau, ci, len(x), alpha,
        "Kendall's tau, one-sided", label, f"tau (claimed {'<' if decreasing else '>'} 0)",
        note="more levels, not more seeds, would settle it",
    )


def _tau_b(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Kendall's tau-b of x against each y along ``axis`` (0 where either is constant)."""
    y = np.moveaxis(y, axis, -1)
    i, j = np.triu_indices(len(x), 1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[..., i] - y[..., j])
    untied = np.sqrt(np.count_nonzero(sx) * np.count_nonzero(sy, axis=-1))
    return np.divide((sx * sy).sum(axis=-1), untied, out=np.zeros(untied.shape), where=untied > 0)


def _kendall_p(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """One-sided p-values (tau < 0, tau > 0) of Kendall's tau: scipy's exact test without
    ties; with ties (counts over a grid often tie), the permutation distribution, exact up
    to 8 levels (8! orders), else 9,999 random orders."""
    if len(np.unique(y)) == 1 or len(np.unique(x)) == 1:
        return 1.0, 1.0
    if len(np.unique(x)) == len(x) and len(np.unique(y)) == len(y):
        return tuple(float(sps.kendalltau(x, y, alternative=side).pvalue)  # type: ignore[return-value]
                     for side in ("less", "greater"))
    orders = math.factorial(len(x))
    exact = orders <= 40_320
    resamples = orders if exact else 9_999
    result = sps.permutation_test(
        (y,), partial(_tau_b, x), permutation_type="pairings", vectorized=True,
        alternative="less", n_resamples=resamples, random_state=np.random.default_rng(0))
    # The other side from the same null distribution, with scipy's tolerance for ties.
    tolerance = 1e-14 * max(1.0, abs(result.statistic))
    above = np.count_nonzero(result.null_distribution >= result.statistic - tolerance)
    p_greater = above / orders if exact else (above + 1) / (resamples + 1)
    return float(result.pvalue), float(p_greater)
