"""Per-run summaries and decisions across seeds, on scipy.stats.

The unit of replication is the seed: summarise each run (a window mean, a slope, jitter,
a final accuracy), then compare the arms' per-seed summaries. Arms trained with the same
seeds share data order and, where they have the same parameters, initial weights, so
comparisons pair by seed by default.

Every decision returns a ``Decision`` with a three-way verdict:

- ``supported``: the test of the claim rejects its null at ``alpha``;
- ``refuted``: the data significantly contradict the claim (the opposite one-sided test
  rejects; for an equivalence, the difference is significantly outside the margin);
- ``inconclusive``: neither. ``seeds_needed`` (set whatever the verdict) estimates how many
  seeds give 80% power at level alpha for the effect observed -- None where the observed
  effect points away from the claim; after a Holm correction it is a lower bound.

Confidence intervals are two-sided at level ``1 - 2*alpha`` (90% at alpha 0.05): the
interval that agrees with the one-sided tests and with TOST at ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"
TARGET_POWER = 0.8
MAX_SEEDS = 10_000


@dataclass(frozen=True)
class Decision:
    """A verdict with its evidence: p-value, effect with CI, n, and one line of text."""

    verdict: str
    p_value: float
    effect: float
    ci: tuple[float, float]
    n: int
    alpha: float
    test: str
    label: str = ""
    effect_name: str = "mean difference"
    seeds_needed: int | None = None
    parts: tuple[Decision, ...] = field(default_factory=tuple)

    @property
    def supported(self) -> bool:
        return self.verdict == SUPPORTED

    @property
    def text(self) -> str:
        """One line: verdict, effect with CI, p, n, and what would settle it."""
        head = f"{self.label}: " if self.label else ""
        line = (f"{head}{self.verdict}: {self.effect_name} {self.effect:+.4g} "
                f"[{self.ci[0]:+.4g}, {self.ci[1]:+.4g}] ({1 - 2 * self.alpha:.0%} CI), "
                f"p={self.p_value:.3g} ({self.test}), n={self.n}")
        if self.verdict == INCONCLUSIVE:
            line += (f"; about {self.seeds_needed} seeds would settle it" if self.seeds_needed
                     else "; the observed effect points away from the claim")
        return line

    def explain(self) -> str:
        """The line of text, then one indented line per sub-decision."""
        return "\n".join([self.text, *("  " + part.text for part in self.parts)])

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict, "label": self.label, "p_value": self.p_value,
            "effect": self.effect, "effect_name": self.effect_name, "ci": list(self.ci),
            "n": self.n, "alpha": self.alpha, "test": self.test,
            "seeds_needed": self.seeds_needed, "text": self.text,
            "parts": [part.as_dict() for part in self.parts],
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

    The moving average (``smooth`` iterations wide) follows the trend of convergence; what
    is left is the jitter the source describes. The average is taken over the whole curve
    so the window edges do not lose points.
    """
    values = np.asarray(curve, dtype=np.float64)
    _window(values, start, stop)
    kernel = np.ones(smooth) / smooth
    trend = np.convolve(np.pad(values, smooth // 2, mode="edge"), kernel, mode="valid")
    residual = values - trend[: len(values)]
    return float(residual[start:stop].std(ddof=1))


def _window(curve: ArrayLike, start: int, stop: int) -> np.ndarray:
    values = np.asarray(curve, dtype=np.float64)
    if not 0 <= start < stop <= len(values):
        raise ValueError(f"window [{start}, {stop}) is outside the curve of {len(values)} points")
    return values[start:stop]


# --- power ------------------------------------------------------------------------------


def power_one_sided(effect_size: float, n: int, alpha: float = 0.05) -> float:
    """Power of a one-sided one-sample (or paired) t-test for standardised effect d."""
    if n < 2:
        return 0.0
    df = n - 1
    critical = sps.t.ppf(1 - alpha, df)
    return float(sps.nct.sf(critical, df, effect_size * math.sqrt(n)))


def seeds_needed(effect_size: float, alpha: float = 0.05, power: float = TARGET_POWER) -> int | None:
    """Smallest n whose one-sided t-test reaches ``power`` for effect d (None if d <= 0)."""
    if not effect_size > 0:
        return None
    low, high = 2, 2
    while power_one_sided(effect_size, high, alpha) < power:
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return None
    while low < high:
        mid = (low + high) // 2
        if power_one_sided(effect_size, mid, alpha) >= power:
            high = mid
        else:
            low = mid + 1
    return high


# --- decisions --------------------------------------------------------------------------


def _as_samples(a: ArrayLike, b: ArrayLike | float, paired: bool) -> tuple[np.ndarray, np.ndarray | float]:
    x = np.asarray(a, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need a 1-D sample of at least 2 seeds, got shape {x.shape}")
    if np.isscalar(b):
        return x, float(b)  # type: ignore[arg-type]
    y = np.asarray(b, dtype=np.float64)
    if paired and y.shape != x.shape:
        raise ValueError(f"paired samples must have equal length, got {len(x)} and {len(y)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("samples contain non-finite values (a diverged run?)")
    return x, y


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
    one-sample t-test against a number. ``method='rank'``: Wilcoxon signed-rank (paired or
    one-sample) or Mann-Whitney U, for where normality is doubtful.
    """
    x, y = _as_samples(a, b, paired)
    if method not in ("t", "rank"):
        raise ValueError(f"unknown method {method!r}; choose t or rank")
    one_sample = isinstance(y, float) or paired
    if one_sample:
        d = x - y
        n = len(d)
        p_claim, p_against, test = _one_sample_p(d, margin, method)
        if isinstance(y, float):
            test += " against a threshold"
        mean, sd = float(d.mean()), float(d.std(ddof=1))
        ci = _t_interval(mean, sd / math.sqrt(n), n - 1, alpha)
        size = (mean - margin) / sd if sd > 0 else math.copysign(math.inf, mean - margin)
    else:
        n = min(len(x), len(y))
        if method == "t":
            claim = sps.ttest_ind(x - margin, y, equal_var=False, alternative="greater")
            p_claim = float(claim.pvalue)
            p_against = float(sps.ttest_ind(x - margin, y, equal_var=False, alternative="less").pvalue)
            ci_raw = sps.ttest_ind(x, y, equal_var=False).confidence_interval(1 - 2 * alpha)
            ci = (float(ci_raw.low), float(ci_raw.high))
            test = "Welch t, one-sided"
        else:
            p_claim = float(sps.mannwhitneyu(x - margin, y, alternative="greater").pvalue)
            p_against = float(sps.mannwhitneyu(x - margin, y, alternative="less").pvalue)
            ci = bootstrap_ci((x, y), lambda u, v, axis=-1: u.mean(axis) - v.mean(axis),
                              1 - 2 * alpha)
            test = "Mann-Whitney U, one-sided"
        mean = float(x.mean() - y.mean())
        pooled = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
        # Two-sample power is about that of a one-sample test with half the per-arm n.
        size = (mean - margin) / pooled / math.sqrt(2) if pooled > 0 else math.inf
    verdict = _verdict(p_claim, p_against, alpha)
    return Decision(
        verdict, p_claim, mean, ci, n, alpha, test, label,
        effect_name="mean difference" + (f" (margin {margin:g})" if margin else ""),
        seeds_needed=seeds_needed(size, alpha),
    )


def less(a: ArrayLike, b: ArrayLike | float, **kwargs: object) -> Decision:
    """Claim: mean(a) is below mean(b) (or the number b) by more than ``margin``."""
    if np.isscalar(b):
        flipped = greater(-np.asarray(a, dtype=np.float64), -float(b), **kwargs)  # type: ignore[arg-type]
    else:
        flipped = greater(b, a, **kwargs)  # type: ignore[arg-type]
    # Report the effect as mean(a) - mean(b), negative where the claim holds.
    return replace(flipped, effect=-flipped.effect, ci=(-flipped.ci[1], -flipped.ci[0]))


def _one_sample_p(d: np.ndarray, margin: float, method: str) -> tuple[float, float, str]:
    if method == "t":
        p_claim = float(sps.ttest_1samp(d, margin, alternative="greater").pvalue)
        p_against = float(sps.ttest_1samp(d, margin, alternative="less").pvalue)
        return p_claim, p_against, "t, one-sided"
    shifted = d - margin
    if np.all(shifted == 0):
        return 1.0, 1.0, "Wilcoxon signed-rank, one-sided"
    p_claim = float(sps.wilcoxon(shifted, alternative="greater").pvalue)
    p_against = float(sps.wilcoxon(shifted, alternative="less").pvalue)
    return p_claim, p_against, "Wilcoxon signed-rank, one-sided"


def _t_interval(mean: float, se: float, df: int, alpha: float) -> tuple[float, float]:
    half = float(sps.t.ppf(1 - alpha, df)) * se
    return mean - half, mean + half


def bootstrap_ci(
    samples: Sequence[np.ndarray] | np.ndarray,
    statistic: Callable[..., np.ndarray],
    confidence: float = 0.9,
    seed: int = 0,
) -> tuple[float, float]:
    """BCa bootstrap CI of a statistic of one or more independent samples (scipy)."""
    data = (samples,) if isinstance(samples, np.ndarray) else tuple(samples)
    result = sps.bootstrap(data, statistic, confidence_level=confidence, n_resamples=2000,
                           method="BCa", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _verdict(p_claim: float, p_against: float, alpha: float) -> str:
    if p_claim < alpha:
        return SUPPORTED
    if p_against < alpha:
        return REFUTED
    return INCONCLUSIVE


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

    With ``relative``, the margin is a fraction of mean(b) (taken as known). Supported when
    both one-sided tests reject; refuted when the difference is significantly outside the
    margin. Never "p > 0.05, so they are equal".
    """
    x, y = _as_samples(a, b, paired)
    reference = float(np.mean(y))
    bound = abs(margin * reference) if relative else margin
    if bound <= 0:
        raise ValueError(f"the equivalence margin must be positive, got {bound}")
    if isinstance(y, float) or paired:
        d = x - y
        n = len(d)
        mean, se, df = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n), n - 1
        test = "TOST paired t" if paired and not isinstance(y, float) else "TOST one-sample t"
    else:
        n = min(len(x), len(y))
        vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
        mean, se = float(x.mean() - y.mean()), math.sqrt(vx + vy)
        df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))  # Welch-Satterthwaite
        test = "TOST Welch t"
    if se == 0:
        p_low = p_high = 0.0 if abs(mean) < bound else 1.0
    else:
        p_low = float(sps.t.sf((mean + bound) / se, df))   # H0: diff <= -bound
        p_high = float(sps.t.cdf((mean - bound) / se, df))  # H0: diff >= +bound
    p_value = max(p_low, p_high)
    ci = _t_interval(mean, se, int(df), alpha)
    if p_value < alpha:
        verdict = SUPPORTED
    elif ci[0] > bound or ci[1] < -bound:
        verdict = REFUTED
    else:
        verdict = INCONCLUSIVE
    needed = None
    if abs(mean) < bound and se > 0:
        sd = se * math.sqrt(n) * (1 if (paired or isinstance(y, float)) else 1 / math.sqrt(2))
        needed = seeds_needed((bound - abs(mean)) / sd, alpha)
    return Decision(
        verdict, p_value, mean, ci, n, alpha, test, label,
        effect_name=f"mean difference (margin ±{bound:.4g})", seeds_needed=needed,
    )


def within(x: ArrayLike, low: float, high: float, *, alpha: float = 0.05, label: str = "") -> Decision:
    """Claim: the mean of x lies inside [low, high] (TOST against both ends)."""
    centre, half = (low + high) / 2, (high - low) / 2
    decision = equivalent(x, centre, margin=half, alpha=alpha, label=label)
    return replace(decision, effect=decision.effect + centre,
                   ci=(decision.ci[0] + centre, decision.ci[1] + centre),
                   effect_name=f"mean (band [{low:g}, {high:g}])")


def all_of(decisions: Sequence[Decision], label: str = "", alpha: float | None = None) -> Decision:
    """Every sub-assertion must hold: Holm's step-down correction across them.

    Supported when every Holm-adjusted p is below alpha; refuted when any part is refuted;
    otherwise inconclusive. The combined effect is that of the weakest part.
    """
    if not decisions:
        raise ValueError("all_of needs at least one decision")
    alpha = decisions[0].alpha if alpha is None else alpha
    adjusted = holm([d.p_value for d in decisions])
    parts = tuple(
        replace(d, p_value=p, verdict=SUPPORTED if p < alpha else (
            REFUTED if d.verdict == REFUTED else INCONCLUSIVE))
        for d, p in zip(decisions, adjusted)
    )
    weakest = max(parts, key=lambda d: d.p_value)
    if all(d.verdict == SUPPORTED for d in parts):
        verdict = SUPPORTED
    elif any(d.verdict == REFUTED for d in parts):
        verdict = REFUTED
    else:
        verdict = INCONCLUSIVE
    return Decision(
        verdict, weakest.p_value, weakest.effect, weakest.ci, min(d.n for d in parts), alpha,
        f"Holm over {len(parts)}", label, weakest.effect_name + f" ({weakest.label or 'weakest'})",
        seeds_needed=None if any(d.verdict == INCONCLUSIVE and d.seeds_needed is None
                                 for d in parts)
        else max((d.seeds_needed or 0 for d in parts), default=0) or None,
        parts=parts,
    )


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
    """Claim: g1 > g2 > ... > gk (or increasing): adjacent one-sided tests, Holm-corrected."""
    if len(groups) < 2:
        raise ValueError("ordered needs at least two groups")
    names = list(labels or [f"g{i + 1}" for i in range(len(groups))])
    compare = greater if decreasing else less
    sign = ">" if decreasing else "<"
    parts = [compare(groups[i], groups[i + 1], paired=paired, alpha=alpha,
                     label=f"{names[i]} {sign} {names[i + 1]}")
             for i in range(len(groups) - 1)]
    return all_of(parts, label=label or f" {sign} ".join(names), alpha=alpha)


def interior_maximum(
    groups: Sequence[ArrayLike], *, labels: Sequence[str] | None = None, paired: bool = True,
    alpha: float = 0.05, label: str = "",
) -> Decision:
    """Claim: an inverted U -- some interior level beats both ends.

    For each interior level, an intersection-union test: it must be significantly above
    the first and the last level (its p is the larger of the two). A Bonferroni correction
    over the interior candidates pays for choosing the best one after seeing the data.
    Refuted when every interior level is significantly below one of the ends.
    """
    if len(groups) < 3:
        raise ValueError("an interior maximum needs at least three levels")
    names = list(labels or [f"level{i}" for i in range(len(groups))])
    interior, ends = list(range(1, len(groups) - 1)), [0, len(groups) - 1]
    tested = _intersection_union(groups, interior, ends, names, paired, alpha)
    p_claim, parts = min(tested, key=lambda t: t[0])
    if p_claim < alpha:
        verdict = SUPPORTED
    elif all(any(d.verdict == REFUTED for d in comparisons) for _, comparisons in tested):
        verdict = REFUTED
    else:
        verdict = INCONCLUSIVE
    weakest = max(parts, key=lambda d: d.p_value)
    peak = weakest.label.split(" > ")[0]
    return Decision(
        verdict, p_claim, weakest.effect, weakest.ci, weakest.n, alpha,
        f"intersection-union, Bonferroni over {len(interior)} interior levels",
        label or f"peak at {peak}", weakest.effect_name + f" ({weakest.label})",
        seeds_needed=weakest.seeds_needed, parts=tuple(parts),
    )


def _intersection_union(
    groups: Sequence[ArrayLike], candidates: list[int], others: list[int], names: list[str],
    paired: bool, alpha: float,
) -> list[tuple[float, list[Decision]]]:
    """Per candidate level: does it beat every level in ``others``?

    An intersection-union test: a candidate's p is the largest of its one-sided p-values
    against the others, times a Bonferroni factor of ``len(candidates)`` that pays for
    picking the best candidate after seeing the data. Returns (p, comparisons) per
    candidate; callers take the smallest p.
    """
    tested = []
    for i in candidates:
        parts = [greater(groups[i], groups[j], paired=paired, alpha=alpha,
                         label=f"{names[i]} > {names[j]}") for j in others]
        tested.append((min(1.0, len(candidates) * max(d.p_value for d in parts)), parts))
    return tested


def most_often(successes: ArrayLike, *, share: float = 0.5, alpha: float = 0.05,
               label: str = "") -> Decision:
    """Claim: an outcome happens in more than ``share`` of runs (exact binomial test).

    For yes/no per-seed outcomes ("the run did not converge"). The effect is the observed
    proportion with a Clopper-Pearson interval.
    """
    hits = np.asarray(successes, dtype=bool)
    n, k = len(hits), int(hits.sum())
    claim = sps.binomtest(k, n, share, alternative="greater")
    against = sps.binomtest(k, n, share, alternative="less")
    interval = claim.proportion_ci(confidence_level=1 - 2 * alpha, method="exact")
    verdict = _verdict(float(claim.pvalue), float(against.pvalue), alpha)
    needed = None
    if k / n > share:
        needed = next((m for m in range(n, MAX_SEEDS)
                       if sps.binomtest(round(m * k / n), m, share, alternative="greater").pvalue
                       < alpha), None)
    return Decision(verdict, float(claim.pvalue), k / n, (interval.low, interval.high), n, alpha,
                    "exact binomial, one-sided", label,
                    effect_name=f"proportion (claimed > {share:g})", seeds_needed=needed)


def exact(value: float, holds: bool, *, label: str = "", effect_name: str = "value",
          test: str = "exact count") -> Decision:
    """A claim about a deterministic quantity (a parameter count): no sampling, n = 1."""
    return Decision(SUPPORTED if holds else REFUTED, 0.0 if holds else 1.0, float(value),
                    (float(value), float(value)), 1, 0.05, test, label, effect_name)


def std_interval(x: ArrayLike, confidence: float = 0.9) -> tuple[float, float]:
    """Chi-square confidence interval of a normal sample's standard deviation."""
    values = np.asarray(x, dtype=np.float64)
    n = len(values)
    s2 = values.var(ddof=1)
    low = math.sqrt((n - 1) * s2 / sps.chi2.ppf(0.5 + confidence / 2, n - 1))
    high = math.sqrt((n - 1) * s2 / sps.chi2.ppf(0.5 - confidence / 2, n - 1))
    return low, high


def std_contains(x: ArrayLike, value: float, *, alpha: float = 0.05, label: str = "") -> Decision:
    """Claim: the run-to-run std is about ``value``: its (1 - 2 alpha) CI contains it.

    A containment check, not a test of equality: "supported" means the data are
    compatible with the value, "refuted" that the CI excludes it.
    """
    values = np.asarray(x, dtype=np.float64)
    n = len(values)
    low, high = std_interval(values, 1 - 2 * alpha)
    s = float(values.std(ddof=1))
    statistic = (n - 1) * s**2 / value**2
    p = 2 * min(sps.chi2.cdf(statistic, n - 1), sps.chi2.sf(statistic, n - 1))
    return Decision(
        SUPPORTED if low <= value <= high else REFUTED, float(min(1.0, p)), s, (low, high), n,
        alpha, "chi-square CI of the std", label, effect_name=f"std (claimed {value:g})",
    )


def trend(
    levels: ArrayLike, values: ArrayLike, *, decreasing: bool = True, alpha: float = 0.05,
    label: str = "",
) -> Decision:
    """Claim: ``values`` fall (or rise) monotonically with ``levels`` (Kendall's tau).

    For one number per level (a count over a grid, say), where a paired test has nothing
    to pair. One-sided ``scipy.stats.kendalltau``; the effect is tau with an interval from
    the Fieller-Hartley-Pearson standard error ``sqrt(0.437 / (n - 4))``, n >= 5.
    """
    x, y = np.asarray(levels, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(x) != len(y) or len(x) < 5:
        raise ValueError(f"trend needs at least 5 paired levels and values, got {len(x)}, {len(y)}")
    claim = sps.kendalltau(x, y, alternative="less" if decreasing else "greater")
    against = sps.kendalltau(x, y, alternative="greater" if decreasing else "less")
    tau = float(claim.statistic) if np.isfinite(claim.statistic) else 0.0
    p_claim = float(claim.pvalue) if np.isfinite(claim.pvalue) else 1.0
    p_against = float(against.pvalue) if np.isfinite(against.pvalue) else 1.0
    half = sps.norm.ppf(1 - alpha) * np.sqrt(0.437 / (len(x) - 4))
    return Decision(_verdict(p_claim, p_against, alpha), p_claim, tau,
                    (max(-1.0, tau - half), min(1.0, tau + half)), len(x), alpha,
                    "Kendall's tau, one-sided", label,
                    effect_name=f"tau (claimed {'<' if decreasing else '>'} 0)")


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
    names = [f"{level:g}" for level in levels]
    inside = [i for i, level in enumerate(levels) if low <= level <= high]
    outside = [i for i in range(len(levels)) if i not in inside]
    if not inside or not outside:
        raise ValueError(f"[{low:g}, {high:g}] must split the levels {', '.join(names)}")
    p_claim, parts = min(_intersection_union(groups, inside, outside, names, paired, alpha),
                         key=lambda t: t[0])
    p_against = min(p for p, _ in _intersection_union(groups, outside, inside, names, paired, alpha))
    part = max(parts, key=lambda d: d.p_value)
    return Decision(
        _verdict(p_claim, p_against, alpha), p_claim, part.effect, part.ci, part.n, alpha,
        f"intersection-union, Bonferroni over {len(inside)} candidates", label,
        effect_name=f"{part.effect_name} ({part.label})", seeds_needed=part.seeds_needed,
        parts=(part,))
