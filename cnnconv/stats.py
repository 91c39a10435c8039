"""Per-run summaries and decisions across seeds, on scipy.stats.

The unit of replication is the seed: summarise each run (a window mean, a slope, jitter,
a final accuracy), then compare the arms' per-seed summaries. Arms trained with the same
seeds share data order and, where they have the same parameters, initial weights, so
comparisons pair by seed by default.

Every decision returns a ``Decision`` with a three-way verdict from two p-values:

- ``supported``: the test of the claim rejects its null at ``alpha`` (``p_value``);
- ``refuted``: the test *against* the claim rejects at ``alpha`` (``p_against``): the data
  significantly contradict it. At the claim's boundary each happens at most ``alpha`` of
  the time, and ``tests/test_stats.py`` checks both rates by simulation for every decision;
- ``inconclusive``: neither. ``seeds_needed`` estimates how many seeds give 80% power at
  level alpha *if the true effect is the one observed* -- a rough guide, since with few
  seeds the observed effect is itself noisy; None where more seeds cannot help (the effect
  points away from the claim, or every seed gives the same value).

Confidence intervals are two-sided at level ``1 - 2*alpha`` (90% at alpha 0.05): the
interval that agrees with the one-sided tests and with TOST at ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial

import numpy as np
from numpy.typing import ArrayLike
from scipy import special
from scipy import stats as sps
from scipy.ndimage import uniform_filter1d

SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"
TARGET_POWER = 0.8
MAX_SEEDS = 10_000
# Pitman efficiency of the rank tests against the t-test for normal data (3/pi): a rank
# test needs about 1/0.955 as many seeds for the same power, once seeds are many.
RANK_EFFICIENCY = 3 / math.pi
RANK_POWER_DRAWS, RANK_POWER_SIMULATED_UP_TO = 2000, 200

PowerFunction = Callable[[int, float], float]
"""Power of a decision's test at ``n`` seeds per arm and level ``alpha``, for the effect observed."""


@dataclass(frozen=True)
class Decision:
    """A verdict with its evidence: p-values for and against, effect with CI, n, one line of text.

    ``power`` (not serialised) gives the test's power at other seed counts for the effect
    observed; ``seeds_needed`` is derived from it. ``note`` says why more seeds cannot
    settle an inconclusive verdict, where that is the case.
    """

    p_value: float
    p_against: float
    effect: float
    ci: tuple[float, float]
    n: int
    alpha: float
    test: str
    label: str = ""
    effect_name: str = "mean difference"
    power: PowerFunction | None = field(default=None, repr=False, compare=False)
    note: str = ""
    parts: tuple[Decision, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> str:
        if self.p_value < self.alpha:
            return SUPPORTED
        if self.p_against < self.alpha:
            return REFUTED
        return INCONCLUSIVE

    @property
    def supported(self) -> bool:
        return self.verdict == SUPPORTED

    @cached_property
    def seeds_needed(self) -> int | None:
        """Seeds per arm for 80% power at alpha if the true effect is the one observed."""
        return None if self.power is None else smallest_n(self.power, self.alpha)

    @property
    def text(self) -> str:
        """One line: verdict, effect with CI, p, n, and what would settle it."""
        head = f"{self.label}: " if self.label else ""
        line = (f"{head}{self.verdict}: {self.effect_name} {self.effect:+.4g} "
                f"[{self.ci[0]:+.4g}, {self.ci[1]:+.4g}] ({1 - 2 * self.alpha:.0%} CI), "
                f"p={self.p_value:.3g} ({self.test}), n={self.n}")
        if self.verdict == INCONCLUSIVE:
            if self.seeds_needed:
                line += (f"; about {self.seeds_needed} seeds would settle it if the effect is "
                         "as observed (a noisy guide at this n)")
            else:
                line += f"; {self.note or 'the observed effect points away from the claim'}"
        return line

    def explain(self) -> str:
        """The line of text, then one indented line per sub-decision."""
        return "\n".join([self.text, *("  " + part.text for part in self.parts)])

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict, "label": self.label, "p_value": self.p_value,
            "p_against": self.p_against, "effect": self.effect,
            "effect_name": self.effect_name, "ci": list(self.ci), "n": self.n,
            "alpha": self.alpha, "test": self.test, "seeds_needed": self.seeds_needed,
            "text": self.text, "parts": [part.as_dict() for part in self.parts],
        }


# --- per-run summaries -------------------------------------------------------------------


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


# --- power ------------------------------------------------------------------------------


def power_one_sided(effect_size: float, n: int, alpha: float = 0.05) -> float:
    """Power of a one-sided one-sample (or paired) t-test for standardised effect d."""
    return _Estimate(effect_size, (1.0,), (n,)).power_above(0.0, n, alpha)


def seeds_needed(effect_size: float, alpha: float = 0.05, power: float = TARGET_POWER) -> int | None:
    """Smallest n whose one-sided one-sample t-test reaches ``power`` for effect d."""
    return smallest_n(partial(power_one_sided, effect_size), alpha, power)


def smallest_n(power: PowerFunction, alpha: float, target: float = TARGET_POWER) -> int | None:
    """Smallest n (2 to MAX_SEEDS) where ``power(n, alpha)`` reaches ``target``, else None.

    Doubles, then bisects; for a power that is not monotone in n (exact binomial tests
    are saw-toothed) it returns an n that reaches the target, perhaps not the smallest.
    """
    low, high = 2, 2
    while power(high, alpha) < target:
        if high >= MAX_SEEDS:
            return None
        low, high = high + 1, min(2 * high, MAX_SEEDS)
    while low < high:
        mid = (low + high) // 2
        if power(mid, alpha) >= target:
            high = mid
        else:
            low = mid + 1
    return high


# --- t estimates of a contrast -----------------------------------------------------------


@dataclass(frozen=True)
class _Estimate:
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

    def at(self, n: int) -> _Estimate:
        return replace(self, sizes=(n,) * len(self.sizes))

    # Student's t through scipy.special's ufuncs (stdtr: the cdf, stdtrit: its inverse,
    # nctdtr: the noncentral cdf): the same numbers as scipy.stats.t, a thirtieth of the
    # cost, which the calibration tests' tens of thousands of decisions feel.

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


def _contrast(x: np.ndarray, y: np.ndarray | float, paired: bool, rho: float = 1.0) -> _Estimate:
    """``mean(x) - rho * mean(y)``: one-sample against a number, paired by seed, or Welch."""
    if isinstance(y, float) or paired:
        d = x - rho * y
        return _Estimate(float(d.mean()), (float(d.var(ddof=1)),), (len(d),))
    return _Estimate(float(x.mean() - rho * y.mean()),
                     (float(x.var(ddof=1)), float(rho**2 * y.var(ddof=1))), (len(x), len(y)))


NO_SPREAD = "every seed gives the same value: more seeds cannot settle it"


def _no_spread_note(estimates: Sequence[_Estimate]) -> str:
    return NO_SPREAD if all(e.se == 0 for e in estimates) else ""


# --- directional decisions ---------------------------------------------------------------


def _samples(a: ArrayLike, b: ArrayLike | float, paired: bool) -> tuple[np.ndarray, np.ndarray | float]:
    x = _sample(a, "a")
    if np.ndim(b) == 0:
        y = float(b)  # type: ignore[arg-type]
        if not math.isfinite(y):
            raise ValueError(f"the number to compare against must be finite, got {y}")
        return x, y
    y_sample = _sample(b, "b")
    if paired and y_sample.shape != x.shape:
        raise ValueError(f"paired samples must have equal length, got {len(x)} and {len(y_sample)}"
                         "; pass paired=False for independent arms")
    return x, y_sample


def _sample(values: ArrayLike, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"{name}: need a 1-D sample of at least 2 seeds, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: the sample contains non-finite values (a diverged run?): "
                         f"{x.tolist()}")
    return x


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")


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
    x, y = _samples(a, b, paired)
    _check_alpha(alpha)
    if method not in ("t", "rank"):
        raise ValueError(f"unknown method {method!r}; choose t or rank")
    margin_name = f" (margin {margin:g})" if margin else ""
    against_number = isinstance(y, float)
    one_sample = against_number or paired
    estimate = _contrast(x, y, paired)
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
        test, label, effect_name, power, _no_spread_note([estimate]),
    )


def _rank_power(estimate: _Estimate, margin: float, n: int, alpha: float) -> float:
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


# --- equivalence ---------------------------------------------------------------------------


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
    x, y = _samples(a, b, paired)
    _check_alpha(alpha)
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")
    one_sample = isinstance(y, float)
    if relative:
        means = float(x.mean()), float(np.mean(y))
        if min(means) <= 0:
            raise ValueError(f"a relative margin needs positive means, got {means[0]:g} and "
                             f"{means[1]:g}; use an absolute margin")
        low = _contrast(x, y, paired, rho=1 / (1 + margin))
        high = _contrast(x, y, paired, rho=1 + margin)
        bounds = (0.0, 0.0)
        effect = means[0] / means[1] - 1
        ci = _fieller(x, y, paired, alpha)
        effect_name = f"relative difference (band {1 / (1 + margin) - 1:+.3g}, +{margin:g})"
    else:
        low = high = _contrast(x, y, paired)
        bounds = (-margin, margin)
        effect, ci = low.value, low.interval(alpha)
        effect_name = f"mean difference (margin ±{margin:.4g})"
    p_claim = max(low.p_above(bounds[0]), high.p_below(bounds[1]))
    p_against = _either_end(low.p_below(bounds[0]), high.p_above(bounds[1]))
    kind = "one-sample t" if one_sample else ("paired t" if paired else "Welch t")
    return Decision(
        p_claim, p_against, effect, ci, len(x) if one_sample or paired else min(len(x), len(y)),
        alpha, f"TOST {kind}" + (", ratio" if relative else ""), label, effect_name,
        partial(_power_tost, low, bounds[0], high, bounds[1]), _no_spread_note([low, high]),
    )


def _either_end(p_below_low: float, p_above_high: float) -> float:
    """p against a band: outside it at either end, Bonferroni over the two ends."""
    return min(1.0, 2 * min(p_below_low, p_above_high))


def _power_tost(low: _Estimate, low_bound: float, high: _Estimate, high_bound: float,
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
        centre = _contrast(x, y, paired=True, rho=0.0).interval(alpha)
        return centre[0] / y - 1, centre[1] / y - 1
    if paired:
        covariance = np.cov(x, y, ddof=1) / len(x)
        vxx, vxy, vyy = covariance[0, 0], covariance[0, 1], covariance[1, 1]
    else:
        vxx, vxy, vyy = x.var(ddof=1) / len(x), 0.0, y.var(ddof=1) / len(y)
    t2 = _contrast(x, y, paired, rho=mx / my).critical(alpha) ** 2
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


# --- several comparisons ---------------------------------------------------------------------


def all_of(decisions: Sequence[Decision], label: str = "", alpha: float | None = None) -> Decision:
    """Claim: every part holds.

    Supported when every part is supported at alpha: an intersection-union test, which
    needs no correction (a correction would only cost power). Refuted when some part is
    refuted after Holm's correction over the parts' p-values against them. The combined
    effect is that of the weakest part (the largest p); its power is the union bound
    1 - sum(1 - power of each part), which holds however the parts depend on each other.
    """
    if not decisions:
        raise ValueError("all_of needs at least one decision")
    alpha = _common_alpha(decisions, alpha)
    adjusted = holm([d.p_against for d in decisions])
    parts = tuple(replace(d, p_against=p) for d, p in zip(decisions, adjusted))
    weakest = max(parts, key=lambda d: d.p_value)
    return Decision(
        weakest.p_value, min(adjusted), weakest.effect, weakest.ci, min(d.n for d in parts), alpha,
        f"intersection-union over {len(parts)}, Holm against", label,
        weakest.effect_name + f" ({weakest.label or 'weakest'})",
        None if any(d.power is None for d in parts) else partial(_power_of_all, parts),
        next((d.note for d in parts if d.verdict == INCONCLUSIVE and d.note), ""), parts,
    )


def _common_alpha(decisions: Sequence[Decision], alpha: float | None) -> float:
    levels = {d.alpha for d in decisions} | ({alpha} if alpha is not None else set())
    if len(levels) != 1:
        raise ValueError(f"the parts were decided at different alphas {sorted(levels)}; "
                         "decide every part at the same alpha")
    return levels.pop()


def _power_of_all(parts: Sequence[Decision], n: int, alpha: float) -> float:
    misses = sum(1 - part.power(n, alpha) for part in parts)  # type: ignore[misc]
    return max(0.0, 1 - misses)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1), in the input order."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def ordered(
    groups: Sequence[ArrayLike], *, decreasing: bool = True, paired: bool = True,
    alpha: float = 0.05, labels: Sequence[str] | None = None, label: str = "",
) -> Decision:
    """Claim: g1 > g2 > ... > gk (or increasing): adjacent one-sided tests, all of them."""
    if len(groups) < 2:
        raise ValueError("ordered needs at least two groups")
    names = _names(labels, len(groups), "g", start=1)
    compare = greater if decreasing else less
    sign = ">" if decreasing else "<"
    parts = [compare(groups[i], groups[i + 1], paired=paired, alpha=alpha,
                     label=f"{names[i]} {sign} {names[i + 1]}")
             for i in range(len(groups) - 1)]
    return all_of(parts, label=label or f" {sign} ".join(names), alpha=alpha)


def _names(labels: Sequence[str] | None, count: int, prefix: str, start: int = 0) -> list[str]:
    if labels is None:
        return [f"{prefix}{i + start}" for i in range(count)]
    if len(labels) != count:
        raise ValueError(f"got {len(labels)} labels for {count} groups")
    return list(labels)


def interior_maximum(
    groups: Sequence[ArrayLike], *, labels: Sequence[str] | None = None, paired: bool = True,
    alpha: float = 0.05, label: str = "",
) -> Decision:
    """Claim: an inverted U -- some interior level beats both ends.

    Supported when an interior level is significantly above the first and the last level
    (an intersection-union test, its p the larger of the two), with a Bonferroni
    correction over the interior candidates for picking the best one after seeing the
    data. Refuted when every interior level is significantly below one of the ends, each
    with a Bonferroni correction over the two ends (either end refutes a level).
    """
    if len(groups) < 3:
        raise ValueError("an interior maximum needs at least three levels")
    names = _names(labels, len(groups), "level")
    interior, ends = list(range(1, len(groups) - 1)), [0, len(groups) - 1]
    tested = _intersection_union(groups, interior, ends, names, paired, alpha)
    best = min(tested, key=lambda t: t.p_value)
    p_against = max(_either_end(*(d.p_against for d in t.parts)) for t in tested)
    peak = best.parts[0].label.split(" > ")[0]
    return replace(best, p_against=p_against, label=label or f"peak at {peak}",
                   test=f"intersection-union, Bonferroni over {len(interior)} interior levels")


def argmax_within(
    groups: Sequence[ArrayLike], levels: Sequence[float], low: float, high: float, *,
    paired: bool = True, alpha: float = 0.05, label: str = "",
) -> Decision:
    """Claim: the best level (highest mean) lies in [low, high].

    ``groups[i]`` holds one value per seed at ``levels[i]``. Like ``interior_maximum``: a
    level inside the range must beat every level outside it (an intersection-union test,
    its p the largest of its one-sided p-values), with a Bonferroni correction over the
    inside candidates for picking the best after seeing the data. Refuted when, the same
    way, some level outside beats every level inside. (A bootstrap of the argmax is not
    used: with few seeds it sides with the observed argmax even when all levels are equal.)
    """
    if len(groups) != len(levels):
        raise ValueError(f"got {len(groups)} groups for {len(levels)} levels")
    names = [f"{level:g}" for level in levels]
    inside = [i for i, level in enumerate(levels) if low <= level <= high]
    outside = [i for i in range(len(levels)) if i not in inside]
    if not inside or not outside:
        raise ValueError(f"[{low:g}, {high:g}] must split the levels {', '.join(names)}")
    best = min(_intersection_union(groups, inside, outside, names, paired, alpha),
               key=lambda t: t.p_value)
    p_against = min(t.p_value for t in _intersection_union(groups, outside, inside, names,
                                                           paired, alpha))
    return replace(best, p_against=p_against, label=label,
                   test=f"intersection-union, Bonferroni over {len(inside)} candidates")


def _intersection_union(
    groups: Sequence[ArrayLike], candidates: list[int], others: list[int], names: list[str],
    paired: bool, alpha: float,
) -> list[Decision]:
    """Per candidate level: does it beat every level in ``others``?

    A candidate's p is the largest of its one-sided p-values against the others, times a
    Bonferroni factor of ``len(candidates)`` that pays for picking the best candidate after
    seeing the data; its effect is that of its weakest comparison, its power the union
    bound over its comparisons at alpha / len(candidates). Callers take the smallest p.
    """
    tested = []
    for i in candidates:
        parts = [greater(groups[i], groups[j], paired=paired, alpha=alpha,
                         label=f"{names[i]} > {names[j]}") for j in others]
        weakest = max(parts, key=lambda d: d.p_value)
        tested.append(replace(
            weakest, p_value=min(1.0, len(candidates) * weakest.p_value), p_against=1.0,
            effect_name=f"{weakest.effect_name} ({weakest.label})",
            power=partial(_power_of_candidate, tuple(parts), len(candidates)), parts=tuple(parts)))
    return tested


def _power_of_candidate(parts: tuple[Decision, ...], candidates: int, n: int, alpha: float) -> float:
    return _power_of_all(parts, n, alpha / candidates)


# --- proportions, spreads, trends ---------------------------------------------------------


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
    _check_alpha(alpha)
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


def std_interval(x: ArrayLike, confidence: float = 0.9) -> tuple[float, float]:
    """Chi-square confidence interval of a normal sample's standard deviation."""
    values = _sample(x, "x")
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
    values = _sample(x, "x")
    if not 0 <= low < high:
        raise ValueError(f"std_within needs 0 <= low < high, got [{low}, {high}]")
    _check_alpha(alpha)
    n, s = len(values), float(values.std(ddof=1))
    df = n - 1
    above_low = sps.chi2.sf(df * s**2 / low**2, df) if low > 0 else (0.0 if s > 0 else 1.0)
    below_low = sps.chi2.cdf(df * s**2 / low**2, df) if low > 0 else 1.0
    below_high = sps.chi2.cdf(df * s**2 / high**2, df)
    above_high = sps.chi2.sf(df * s**2 / high**2, df)
    return Decision(
        float(max(above_low, below_high)), _either_end(float(below_low), float(above_high)), s,
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
    _check_alpha(alpha)
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


def exact(value: float, holds: bool, *, alpha: float = 0.05, label: str = "",
          effect_name: str = "value", test: str = "exact count") -> Decision:
    """A claim about a deterministic quantity (a parameter count): no sampling, n = 1."""
    return Decision(0.0 if holds else 1.0, 1.0 if holds else 0.0, float(value),
                    (float(value), float(value)), 1, alpha, test, label, effect_name,
                    lambda n, alpha: float(holds))


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
