"""Equivalence decisions: two arms within a margin of each other (TOST, absolute or as a
ratio with Fieller's interval), a mean within a band, and a spread within a band."""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from cnnconv.stats.contrast import (
    Estimate,
    check_alpha,
    check_sample,
    check_samples,
    contrast,
    no_spread_note,
)
from cnnconv.stats.decision import NO_SPREAD, Decision
from cnnconv.stats.multiple import either_end


def equivalent(
    a: ArrayLike,
    b: ArrayLike | float,
    *,
    margin: float,
    relative: bool = False,
    paired: bool = True,
    alpha: float = 0.05,
    label: str = "",
) -> Decision:
    """Claim: mean(a) and mean(b) (or the number b) differ by less than ``margin`` (TOST).

    Absolute: |mean(a) - mean(b)| < margin. With ``relative``, the ratio mean(a)/mean(b)
    lies in [1/(1 + margin), 1 + margin] -- a band symmetric on the log scale, so swapping
    the arms tests the same claim -- tested without treating mean(b) as known: each end is
    a t-test of the contrast ``a - r*b`` (r = 1/(1 + margin) and 1 + margin), the effect
    is mean(a)/mean(b) - 1 with Fieller's interval. Both means must be positive.

    Supported when both one-sided tests reject at alpha; refuted when the difference is
    significantly outside the band, beyond either end (Bonferroni over the two: where the
    band is narrow against the noise, both could reject). Never "p > 0.05, so they are
    equal".
    """
    x, y = check_samples(a, b, paired)
    check_alpha(alpha)
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")
    one_sample = isinstance(y, float)
    if relative:
        means = float(x.mean()), float(np.mean(y))
        if min(means) <= 0:
            raise ValueError(f"a relative margin needs positive means, got {means[0]:g} and "
                             f"{means[1]:g}; use an absolute margin")
        low = contrast(x, y, paired, rho=1 / (1 + margin))
        high = contrast(x, y, paired, rho=1 + margin)
        bounds = (0.0, 0.0)
        effect = means[0] / means[1] - 1
        ci = _fieller(x, y, paired, alpha)
        effect_name = f"relative difference (band {1 / (1 + margin) - 1:+.3g}, +{margin:g})"
    else:
        low = high = contrast(x, y, paired)
        bounds = (-margin, margin)
        effect, ci = low.value, low.interval(alpha)
        effect_name = f"mean difference (margin ±{margin:.4g})"
    p_claim = max(low.p_above(bounds[0]), high.p_below(bounds[1]))
    p_against = either_end(low.p_below(bounds[0]), high.p_above(bounds[1]))
    kind = "one-sample t" if one_sample else ("paired t" if paired else "Welch t")
    return Decision(
        p_claim, p_against, effect, ci, len(x) if one_sample or paired else min(len(x), len(y)),
        alpha, f"TOST {kind}" + (", ratio" if relative else ""), label, effect_name,
        partial(_power_tost, low, bounds[0], high, bounds[1]), no_spread_note([low, high]),
    )


def _power_tost(low: Estimate, low_bound: float, high: Estimate, high_bound: float,
                n: int, alpha: float) -> float:
    """Both one-sided tests reject: P >= P(low rejects) + P(high rejects) - 1."""
    both = low.power_above(low_bound, n, alpha) + high.power_below(high_bound, n, alpha) - 1
    return max(0.0, both)


def _fieller(x: np.ndarray, y: np.ndarray | float, paired: bool, alpha: float) -> tuple[float, float]:
    """Fieller's (1 - 2 alpha) interval for mean(x)/mean(y) - 1 (infinite when unbounded).

    The set of r whose contrast ``x - r*y`` a two-sided t-test does not reject: a quadratic
    inequality in r. Unbounded when mean(y) is not itself significantly non-zero.
    """
    mx, my = float(x.mean()), float(np.mean(y))
    if isinstance(y, float):
        centre = contrast(x, y, paired=True, rho=0.0).interval(alpha)
        return centre[0] / y - 1, centre[1] / y - 1
    if paired:
        covariance = np.cov(x, y, ddof=1) / len(x)
        vxx, vxy, vyy = covariance[0, 0], covariance[0, 1], covariance[1, 1]
    else:
        vxx, vxy, vyy = x.var(ddof=1) / len(x), 0.0, y.var(ddof=1) / len(y)
    t2 = contrast(x, y, paired, rho=mx / my).critical(alpha) ** 2
    a, b, c = my**2 - t2 * vyy, mx * my - t2 * vxy, mx**2 - t2 * vxx
    discriminant = b**2 - a * c
    if a <= 0 or discriminant < 0:
        return -math.inf, math.inf
    root = math.sqrt(discriminant)
    return (b - root) / a - 1, (b + root) / a - 1


def within(x: ArrayLike, low: float, high: float, *, alpha: float = 0.05, label: str = "") -> Decision:
    """Claim: the mean of x lies inside [low, high] (TOST against both ends)."""
    if not low < high:
        raise ValueError(f"within needs low < high, got [{low}, {high}]")
    centre, half = (low + high) / 2, (high - low) / 2
    decision = equivalent(x, centre, margin=half, alpha=alpha, label=label)
    return replace(decision, effect=decision.effect + centre,
                   ci=(decision.ci[0] + centre, decision.ci[1] + centre),
                   effect_name=f"mean (band [{low:g}, {high:g}])")


def std_interval(x: ArrayLike, confidence: float = 0.9) -> tuple[float, float]:
    """Chi-square confidence interval of a normal sample's standard deviation."""
    values = check_sample(x, "x")
    n = len(values)
    s2 = values.var(ddof=1)
    low = math.sqrt((n - 1) * s2 / sps.chi2.ppf(0.5 + confidence / 2, n - 1))
    high = math.sqrt((n - 1) * s2 / sps.chi2.ppf(0.5 - confidence / 2, n - 1))
    return low, high


def std_within(x: ArrayLike, low: float, high: float, *, alpha: float = 0.05,
               label: str = "") -> Decision:
    """Claim: the run-to-run std lies in [low, high] (two one-sided chi-square tests).

    An equivalence test on the spread of a normal sample: supported when the std is
    significantly above ``low`` and significantly below ``high``; refuted when it is
    significantly outside the band (Bonferroni over its two ends). Compatibility with a
    value is not evidence for it: two seeds leave the std undetermined, and the verdict
    says so.
    """
    values = check_sample(x, "x")
    if not 0 <= low < high:
        raise ValueError(f"std_within needs 0 <= low < high, got [{low}, {high}]")
    check_alpha(alpha)
    n, s = len(values), float(values.std(ddof=1))
    df = n - 1
    above_low = sps.chi2.sf(df * s**2 / low**2, df) if low > 0 else (0.0 if s > 0 else 1.0)
    below_low = sps.chi2.cdf(df * s**2 / low**2, df) if low > 0 else 1.0
    below_high = sps.chi2.cdf(df * s**2 / high**2, df)
    above_high = sps.chi2.sf(df * s**2 / high**2, df)
    return Decision(
        float(max(above_low, below_high)), either_end(float(below_low), float(above_high)), s,
        std_interval(values, 1 - 2 * alpha), n, alpha, "two one-sided chi-square tests of the std",
        label, f"std (band [{low:g}, {high:g}])", partial(_power_std_within, s, low, high),
        "" if s > 0 else NO_SPREAD,
    )


def _power_std_within(sigma: float, low: float, high: float, n: int, alpha: float) -> float:
    if sigma == 0:
        return 0.0
    df = n - 1
    above = sps.chi2.isf(alpha, df) * low**2 / sigma**2     # df s^2/sigma^2 must exceed this
    below = sps.chi2.ppf(alpha, df) * high**2 / sigma**2    # ... and stay under this
    return float(max(0.0, sps.chi2.cdf(below, df) - sps.chi2.cdf(above, df)))
