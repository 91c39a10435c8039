"""Decisions on counts: a yes/no outcome in more than a share of the runs (exact binomial)."""

from __future__ import annotations

from functools import partial

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from cnnconv.stats.contrast import check_alpha
from cnnconv.stats.decision import Decision


def most_often(successes: ArrayLike, *, share: float = 0.5, alpha: float = 0.05,
               label: str = "") -> Decision:
    """Claim: an outcome happens in more than ``share`` of runs (exact binomial test).

    For yes/no per-seed outcomes ("the run did not converge"). The effect is the observed
    proportion with its two-sided (1 - 2 alpha) Clopper-Pearson interval; the power is the
    exact binomial power at the observed proportion.
    """
    values = np.asarray(successes)
    if values.ndim != 1 or len(values) < 1:
        raise ValueError(f"most_often needs a 1-D sample of yes/no outcomes, got shape {values.shape}")
    if values.dtype != bool and not np.isin(values, (0, 1)).all():
        raise ValueError(f"most_often needs yes/no outcomes (bool, or 0 and 1), got {values.tolist()}")
    if not 0 < share < 1:
        raise ValueError(f"share must lie in (0, 1), got {share}")
    check_alpha(alpha)
    hits = values.astype(bool)
    n, k = len(hits), int(hits.sum())
    claim = sps.binomtest(k, n, share, alternative="greater")
    against = sps.binomtest(k, n, share, alternative="less")
    interval = sps.binomtest(k, n, share).proportion_ci(confidence_level=1 - 2 * alpha,
                                                        method="exact")
    return Decision(
        float(claim.pvalue), float(against.pvalue), k / n, (interval.low, interval.high), n,
        alpha, "exact binomial, one-sided", label, f"proportion (claimed > {share:g})",
        partial(_binomial_power, k / n, share),
    )


def _binomial_power(proportion: float, share: float, n: int, alpha: float) -> float:
    """P(the one-sided exact test rejects) at n runs if the true proportion is as observed."""
    counts = np.arange(n + 1)
    rejecting = counts[sps.binom.sf(counts - 1, n, share) < alpha]
    return float(sps.binom.sf(rejecting[0] - 1, n, proportion)) if len(rejecting) else 0.0
