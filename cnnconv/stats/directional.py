"""Directional decisions: one arm above (or below) another, or a number, by a margin --
t-tests (paired, Welch, one-sample) or rank tests (Wilcoxon, Mann-Whitney) with
Hodges-Lehmann intervals."""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from cnnconv.stats.contrast import Estimate, check_alpha, check_samples, contrast, no_spread_note
from cnnconv.stats.decision import Decision, PowerFunction

# Pitman efficiency of the rank tests against the t-test for normal data (3/pi): a rank
# test needs about 1/0.955 as many seeds for the same power, once seeds are many.
RANK_EFFICIENCY = 3 / math.pi
RANK_POWER_DRAWS, RANK_POWER_SIMULATED_UP_TO = 2000, 200


def greater(
    a: ArrayLike,
    b: ArrayLike | float,
    *,
    margin: float = 0.0,
    paired: bool = True,
    method: str = "t",
    alpha: float = 0.05,
    label: str = "",
) -> Decision:
    """Claim: mean(a) exceeds mean(b) (or the number b) by more than ``margin``.

    ``method='t'``: paired t-test on the differences, Welch's t-test when unpaired, or a
    one-sample t-test against a number; the effect is the mean difference with its t
    interval. ``method='rank'``: Wilcoxon signed-rank (paired or one-sample) or
    Mann-Whitney U, for where normality is doubtful; the effect is the Hodges-Lehmann
    shift with its exact distribution-free interval (infinite where n is too small for
    the rank test to reject at all).
    """
    x, y = check_samples(a, b, paired)
    check_alpha(alpha)
    if method not in ("t", "rank"):
        raise ValueError(f"unknown method {method!r}; choose t or rank")
    margin_name = f" (margin {margin:g})" if margin else ""
    against_number = isinstance(y, float)
    one_sample = against_number or paired
    estimate = contrast(x, y, paired)
    if method == "t":
        p_claim, p_against = estimate.p_above(margin), estimate.p_below(margin)
        effect, ci = estimate.value, estimate.interval(alpha)
        test = ("t, one-sided" if one_sample else "Welch t, one-sided") + (
            " against a threshold" if against_number else "")
        effect_name = "mean difference" + margin_name
    else:
        p_claim, p_against, effect, ci, test = _rank_test(x, y, one_sample, margin, alpha)
        effect_name = "Hodges-Lehmann shift" + margin_name
    power: PowerFunction = (partial(estimate.power_above, margin) if method == "t"
                            else partial(_rank_power, estimate, margin))
    return Decision(
        p_claim, p_against, effect, ci, len(x) if one_sample else min(len(x), len(y)), alpha,
        test, label, effect_name, power, no_spread_note([estimate]),
    )


def _rank_power(estimate: Estimate, margin: float, n: int, alpha: float) -> float:
    """Power of the rank test at n seeds per arm, for normal data shifted as observed.

    Simulated (2,000 draws, a fixed seed, scipy's vectorised tests): at few seeds a rank
    test's power is set by its discreteness -- a Wilcoxon test of 5 seeds rejects only
    when all 5 differences are positive -- which no formula captures. Beyond 200 seeds,
    the t-test's power at the rank tests' efficiency.
    """
    if n > RANK_POWER_SIMULATED_UP_TO:
        return replace(estimate, efficiency=RANK_EFFICIENCY).power_above(margin, n, alpha)
    if estimate.se == 0:  # every draw ranks alike: the test's smallest p decides
        smallest_p = 2.0**-n if len(estimate.sizes) == 1 else 1 / math.comb(2 * n, n)
        return float(estimate.value > margin and smallest_p < alpha)
    shift = (estimate.value - margin) / math.sqrt(np.mean(estimate.unit_variances))
    rng = np.random.default_rng(0)
    draws = rng.normal(shift, 1.0, (RANK_POWER_DRAWS, n))
    if len(estimate.sizes) == 1:
        p = sps.wilcoxon(draws, axis=1, alternative="greater").pvalue
    else:
        others = rng.normal(0.0, 1.0, (RANK_POWER_DRAWS, n))
        p = sps.mannwhitneyu(draws, others, axis=1, alternative="greater").pvalue
    return float(np.mean(p < alpha))


def less(a: ArrayLike, b: ArrayLike | float, **kwargs: object) -> Decision:
    """Claim: mean(a) is below mean(b) (or the number b) by more than ``margin``."""
    if np.ndim(b) == 0:
        flipped = greater(-np.asarray(a, dtype=np.float64), -float(b), **kwargs)  # type: ignore[arg-type]
    else:
        flipped = greater(b, a, **kwargs)  # type: ignore[arg-type]
    # Report the effect as mean(a) - mean(b), negative where the claim holds.
    return replace(flipped, effect=-flipped.effect, ci=(-flipped.ci[1], -flipped.ci[0]))


# --- rank tests ----------------------------------------------------------------------------


def _rank_test(
    x: np.ndarray, y: np.ndarray | float, one_sample: bool, margin: float, alpha: float
) -> tuple[float, float, float, tuple[float, float], str]:
    """p for and against, the Hodges-Lehmann shift with its interval, and the test's name."""
    if one_sample:
        d = x - y
        shifted = d - margin
        if np.all(shifted == 0):
            p_claim = p_against = 1.0
        else:
            p_claim = float(sps.wilcoxon(shifted, alternative="greater").pvalue)
            p_against = float(sps.wilcoxon(shifted, alternative="less").pvalue)
        walsh = ((d[:, None] + d[None, :]) / 2)[np.triu_indices(len(d))]
        return (p_claim, p_against, *_hodges_lehmann(walsh, _signed_rank_null(len(d)), alpha),
                "Wilcoxon signed-rank, one-sided")
    assert isinstance(y, np.ndarray)
    # scipy's exact null assumes no ties; with ties, the permutation distribution (exact
    # while the splits number at most 100,000) instead of the normal approximation.
    shifted = x - margin
    splits = math.comb(len(x) + len(y), len(x))
    method: object = "auto"
    if len(np.unique(np.concatenate([shifted, y]))) < len(x) + len(y) and splits <= 100_000:
        method = sps.PermutationMethod(n_resamples=splits, random_state=0)
    p_claim = float(sps.mannwhitneyu(shifted, y, alternative="greater", method=method).pvalue)
    p_against = float(sps.mannwhitneyu(shifted, y, alternative="less", method=method).pvalue)
    differences = (x[:, None] - y[None, :]).ravel()
    return (p_claim, p_against, *_hodges_lehmann(differences, _rank_sum_null(len(x), len(y)), alpha),
            "Mann-Whitney U, one-sided")


def _hodges_lehmann(
    averages: np.ndarray, null: np.ndarray, alpha: float
) -> tuple[float, tuple[float, float]]:
    """The median of the Walsh averages (or pairwise differences) and its exact interval.

    The rank statistic at shift theta counts the averages above theta; inverting its
    one-sided tests at alpha gives the interval between the (c+1)-th and the (M-c)-th
    sorted average, where c is the largest count with P(statistic <= c) < alpha (strict,
    as the verdict's p < alpha).
    """
    ordered = np.sort(averages)
    below = np.nonzero(np.cumsum(null) < alpha * (1 - 1e-9))[0]
    if len(below) == 0:
        return float(np.median(ordered)), (-math.inf, math.inf)
    c = int(below[-1])
    return float(np.median(ordered)), (float(ordered[c]), float(ordered[len(ordered) - 1 - c]))


def _signed_rank_null(n: int) -> np.ndarray:
    """P(T+ = t), t = 0..n(n+1)/2: each rank enters the sum with probability 1/2."""
    probabilities = np.zeros(n * (n + 1) // 2 + 1)
    probabilities[0] = 1.0
    for rank in range(1, n + 1):
        probabilities[rank:] = (probabilities[rank:] + probabilities[:-rank]) / 2
        probabilities[:rank] /= 2
    return probabilities


def _rank_sum_null(m: int, n: int) -> np.ndarray:
    """P(U = u), u = 0..mn, for samples of m and n (U counts pairs where x beats y).

    The largest of the i + j values is an x with probability i / (i + j), and then beats
    all j y's: P_ij(u) = i/(i+j) P_(i-1)j(u - j) + j/(i+j) P_i(j-1)(u).
    """
    previous = [np.ones(1)] * (n + 1)  # the row i - 1, by j
    for i in range(1, m + 1):
        row = [np.ones(1)]
        for j in range(1, n + 1):
            result = np.zeros(i * j + 1)
            result[j:j + (i - 1) * j + 1] += i / (i + j) * previous[j]
            result[: i * (j - 1) + 1] += j / (i + j) * row[j - 1]
            row.append(result)
        previous = row
    return previous[n]
