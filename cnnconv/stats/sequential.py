"""Group-sequential verdicts: seeds until the evidence decides, wrong at most alpha of the
time over every look.

A fixed number of seeds leaves borderline claims to chance: at 5 seeds a change in the
order of floating-point sums is a fresh draw of noise, and moves verdicts across alpha.
A ``Design`` decides at planned looks instead (5, 8, 12 and 16 seeds per arm, say): at
look k the claim's decision is taken at a nominal level ``levels[k]`` -- supported where
its p is below it, refuted where its p against is -- and, undecided, the next look adds
seeds; at the last look an undecided claim is inconclusive. This is the group-sequential
test of clinical trials (Jennison & Turnbull, *Group Sequential Methods*, 2000).

The levels, in three steps:

1. **Spending** (Lan & DeMets, 1983): by information fraction t = n_k / n_K a design
   spends ``alpha * f(t)`` of its error. ``pocock`` is Lan-DeMets' Pocock type,
   f(t) = ln(1 + (e - 1) t), nearly the same level at every look; ``power-R`` is the
   power family f(t) = t**R (Kim & DeMets, 1987; R = 3 is close to O'Brien-Fleming, which
   spends almost nothing at 5 seeds).
2. **Normal boundaries**: z_k with P(Z_1 < z_1, ..., Z_(k-1) < z_(k-1), Z_k >= z_k) =
   alpha (f(t_k) - f(t_(k-1))), where the looks' statistics correlate as sqrt(n_j / n_k)
   (scipy's multivariate normal); the nominal level is 1 - Phi(z_k).
3. **Carried to the looks' degrees of freedom.** A look's p comes from a test at n_k - 1
   degrees of freedom, not from a z. Each look then errs at its nominal level, but the
   looks' p-values are less correlated than the z's (each look estimates the variance
   afresh), so over all looks the design errs more often than alpha: 0.054 at one-sided
   0.05 for looks 5/8/12/16. Every level is therefore scaled by one factor, the largest
   at which paired t-tests (n_k - 1 degrees of freedom: the fewest any decision here has)
   at the claim's boundary err at most alpha of the time over all looks, in 2**18
   simulated draws (a fixed seed: the levels are the same on every machine).

Every decision type -- t, Welch, TOST, ratio, rank, binomial, Kendall, the chi-square
test of a std, and their compositions -- compares its p-values with the level it is given,
so ``Design.decide`` runs any of them at the look's level; ``tests/test_stats.py``
simulates each at its boundary over every look.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from itertools import pairwise

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

from cnnconv.stats.contrast import check_alpha
from cnnconv.stats.decision import INCONCLUSIVE, NO_SPREAD, Decision

CALIBRATION_DRAWS = 2**18
# The grid the normal boundaries integrate on: points per standard deviation of the first
# look's sum, and how many standard deviations of the last look's sum below zero it spans.
GRID_PER_SD, GRID_SDS = 50, 8
SPENDINGS = "pocock, or power-R for the power family t**R (R > 0)"


def spent_fraction(spending: str, t: np.ndarray) -> np.ndarray:
    """The fraction of alpha a spending function has spent by information fraction t."""
    if spending == "pocock":
        return np.log1p((math.e - 1) * t)
    name, _, exponent = spending.partition("-")
    try:
        rho = float(exponent)
    except ValueError:
        rho = -1.0
    if name != "power" or not rho > 0:
        raise ValueError(f"unknown spending {spending!r}; choose {SPENDINGS}")
    return t**rho


@dataclass(frozen=True)
class Design:
    """Planned looks (seeds per arm, increasing), the error each verdict may have over all
    of them (``alpha``) and how it is spent; ``levels`` are the nominal levels a look's
    decision is taken at."""

    looks: tuple[int, ...]
    alpha: float = 0.05
    spending: str = "pocock"

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        spent_fraction(self.spending, np.ones(1))  # raises for an unknown spending
        looks = tuple(int(n) for n in self.looks)
        if not looks or looks[0] < 1 or any(b <= a for a, b in pairwise(looks)):
            raise ValueError(f"looks must be increasing seed counts of at least 1, got {self.looks}")
        if len(looks) > 1 and looks[0] < 2:
            raise ValueError(f"a sequential design needs at least 2 seeds at its first look, got {looks}")
        object.__setattr__(self, "looks", looks)

    @property
    def cap(self) -> int:
        """The most seeds per arm the design trains."""
        return self.looks[-1]

    @cached_property
    def levels(self) -> tuple[float, ...]:
        """The nominal level of each look: alpha itself where there is one look."""
        if len(self.looks) == 1:
            return (self.alpha,)
        normal = normal_levels(self.looks, self.alpha, self.spending)
        return tuple(float(level) for level in calibration(self.looks, self.alpha, self.spending) * normal)

    def floored(self, seeds: int) -> Design:
        """The design for a claim that needs at least ``seeds`` per arm: looks below it
        move up to it (a design of one look at alpha, if that is every look)."""
        looks = sorted({max(n, seeds) for n in self.looks})
        return Design(tuple(looks), self.alpha, self.spending)

    def decide(self, decide_at: Callable[[int, float], Decision]) -> SequentialDecision:
        """``decide_at(n, level)`` at each look until a verdict is reached (or the last
        look); ``decide_at`` must take its decision at ``level``.

        It stops early, undecided, where more seeds cannot help: a deterministic decision
        (n = 1 in every part: a count, no sampling), or one whose every seed gave the same
        value (``NO_SPREAD``). Stopping undecided never adds a wrong verdict.
        """
        for look, (n, level) in enumerate(zip(self.looks, self.levels)):
            decision = decide_at(n, level)
            deterministic = _deterministic(decision)
            if not deterministic and not math.isclose(decision.alpha, level, rel_tol=1e-12):
                raise ValueError(
                    f"a decision at look {look + 1} (n={n}) was taken at alpha {decision.alpha:g}, "
                    f"not the look's level {level:.4g}: pass the level on to every test "
                    "(in a claim, `alpha=alpha` in each stats call)")
            if decision.verdict != INCONCLUSIVE or deterministic or decision.note == NO_SPREAD:
                break
        return SequentialDecision(decision, self, look)


def _deterministic(decision: Decision) -> bool:
    """No sampling in it: n = 1 in the decision and in every part of it."""
    return decision.n <= 1 and all(_deterministic(part) for part in decision.parts)


@dataclass(frozen=True)
class SequentialDecision:
    """The decision of the look where a design stopped, and which look that was."""

    decision: Decision
    design: Design
    look: int  # 0-based index into design.looks

    @property
    def verdict(self) -> str:
        return self.decision.verdict

    @property
    def supported(self) -> bool:
        return self.decision.supported

    @property
    def n(self) -> int:
        return self.design.looks[self.look]

    @property
    def boundary(self) -> float:
        return self.design.levels[self.look]

    @property
    def seeds_needed(self) -> int | None:
        """Undecided at the cap: the cap a design of these looks would need for 80% power
        if the effect is as observed (``--cnnconv-max-seeds``), else None.

        It is the decision's own ``seeds_needed``, at the last look's level. A design
        capped there adds that cap as a look, and spends more of alpha at its last look
        than this one does, so it has at least that power: 86% and 88% in simulation for
        effects of 0.5 and 0.3 sd (``benchmarks/sequential_design.py``; the tests
        check 80%). Planned before looking, that is; raising the cap *because* a verdict
        came out undecided is a second design run after the first, which errs more often
        than alpha (5.0% -> 6.0% one-sided for a cap raised from 16 to 24, 7.1% to 42)."""
        if self.verdict != INCONCLUSIVE or self.look + 1 < len(self.design.looks):
            return None
        needed = self.decision.seeds_needed
        return needed if needed is not None and needed > self.design.cap else None

    @property
    def text(self) -> str:
        """Where the design stopped: look, seeds, the level applied and the cap (and, left
        undecided there, the cap that would settle it)."""
        design = self.design
        if len(design.looks) == 1:
            return f"one look at {self.n} seeds, level {self.boundary:.3g}"
        line = (f"look {self.look + 1} of {len(design.looks)} ({self.n} seeds per arm, "
                f"level {self.boundary:.3g}, cap {design.cap}; {design.spending} spending, "
                f"alpha {design.alpha:g} over all looks)")
        if cap := self.seeds_needed:
            line += (f"; undecided at the cap: a cap of {cap} (--cnnconv-max-seeds={cap}, "
                     "chosen before looking) would settle it if the effect is as observed")
        return line

    def explain(self) -> str:
        return f"{self.decision.explain()}\n  [{self.text}]"

    def as_dict(self) -> dict:
        return {"look": self.look + 1, "looks": list(self.design.looks), "n": self.n,
                "boundary": self.boundary, "levels": list(self.design.levels),
                "cap": self.design.cap, "alpha": self.design.alpha,
                "spending": self.design.spending, "seeds_needed": self.seeds_needed,
                "text": self.text}


@cache
def normal_levels(looks: tuple[int, ...], alpha: float, spending: str) -> np.ndarray:
    """The nominal levels 1 - Phi(z_k) of the normal boundaries z_k that spend alpha as
    ``spending`` says, for statistics correlated as sqrt(n_j / n_k).

    The z's are those of a sum of n_k independent standard normals, S_k / sqrt(n_k): the
    density of S_k on the paths that have not crossed yet is carried from look to look by
    convolving with the increment's normal density on a grid (Armitage, McPherson & Rowe,
    1969, the recursion gsDesign and ldbounds use), and each z_k is the root (scipy's
    brentq) of the crossing probability at look k minus what look k may spend.
    """
    n = np.asarray(looks, dtype=np.float64)
    spent = alpha * spent_fraction(spending, n / n[-1])
    z = [float(sps.norm.isf(spent[0]))]
    lowest = -GRID_SDS * math.sqrt(n[-1])
    grid, weights = _trapezoid(lowest, z[0] * math.sqrt(n[0]), math.sqrt(n[0]) / GRID_PER_SD)
    mass = sps.norm.pdf(grid, scale=math.sqrt(n[0])) * weights  # of S_1, paths below the bound
    for k in range(1, len(looks)):
        spread = math.sqrt(n[k] - n[k - 1])
        z.append(optimize.brentq(_overspent, -2.0, 10.0, xtol=1e-9, args=(
            mass, grid, math.sqrt(n[k]), spread, spent[k] - spent[k - 1])))
        below, weights = _trapezoid(lowest, z[-1] * math.sqrt(n[k]), math.sqrt(n[0]) / GRID_PER_SD)
        mass = sps.norm.pdf((below[:, None] - grid[None, :]) / spread) @ mass / spread * weights
        grid = below
    return sps.norm.sf(np.array(z))


def _overspent(z: float, mass: np.ndarray, grid: np.ndarray, root_n: float, spread: float,
               budget: float) -> float:
    """P(the first crossing is at this look, with bound z) minus what the look may spend,
    from the not-yet-crossed mass of the previous look's sum on ``grid``."""
    return float(mass @ sps.norm.sf((z * root_n - grid) / spread)) - budget


def _trapezoid(low: float, high: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points from low to high (both ends included) about ``step`` apart, and the
    trapezoid rule's weights on them."""
    points = np.linspace(low, high, max(2, math.ceil((high - low) / step) + 1))
    weights = np.full(len(points), points[1] - points[0])
    weights[[0, -1]] /= 2
    return points, weights


@cache
def calibration(looks: tuple[int, ...], alpha: float, spending: str) -> float:
    """The factor on the normal levels at which paired t-tests at the boundary (true mean
    difference zero, n_k - 1 degrees of freedom at look k) err at most alpha of the time
    over all looks, in ``CALIBRATION_DRAWS`` simulated draws.

    A draw errs at factor g when some look's p is below g times its level, that is when g
    exceeds the draw's smallest p_k / level_k: the factor is the alpha-quantile of that
    ratio over draws (the largest at which at most alpha of them err).
    """
    ratio = smallest_p_over_level(looks, normal_levels(looks, alpha, spending),
                                  np.random.default_rng(20261207), CALIBRATION_DRAWS)
    ratio.sort()
    return float(ratio[math.floor(alpha * len(ratio))])


def paired_t_p_values(looks: tuple[int, ...], rng: np.random.Generator, draws: int,
                      shift: float = 0.0) -> np.ndarray:
    """Simulated p-values at each look (draws x looks) of the one-sided paired t-test of
    "mean > 0", for n_K differences per draw (normal, mean ``shift`` standard deviations),
    the first n_k of them at look k. The p against the claim is 1 - p."""
    n = np.asarray(looks)
    p = np.empty((draws, len(looks)))
    chunk = 1 << 15
    for start in range(0, draws, chunk):
        z = rng.standard_normal((min(chunk, draws - start), looks[-1])) + shift
        sums, squares = np.cumsum(z, axis=1)[:, n - 1], np.cumsum(z * z, axis=1)[:, n - 1]
        variance = (squares - sums**2 / n) / (n - 1)
        p[start:start + len(z)] = special.stdtr(n - 1, -sums / np.sqrt(variance * n))
    return p


def smallest_p_over_level(looks: tuple[int, ...], levels: np.ndarray, rng: np.random.Generator,
                          draws: int) -> np.ndarray:
    """Per simulated draw at the boundary (true mean zero): the smallest over looks of the
    paired t-test's p at look k over level k. A design at levels ``g * levels`` supports
    "mean > 0" in the draws where this is below g."""
    return np.min(paired_t_p_values(looks, rng, draws) / levels, axis=1)


@dataclass(frozen=True)
class OperatingCharacteristics:
    """How a design fares for a paired t-test of a true standardised effect: the chance of
    each verdict, and the seeds per arm it trains on average."""

    effect_size: float
    supported: float
    refuted: float
    undecided: float
    expected_seeds: float


def operating_characteristics(design: Design, effect_size: float, draws: int = 2**16,
                              seed: int = 0) -> OperatingCharacteristics:
    """``design`` deciding "mean > 0" by paired t-tests where the true mean difference is
    ``effect_size`` standard deviations, simulated: where it stops and with which verdict.
    Other decisions (rank tests, all_of) need at least as many seeds for the same effect."""
    p = paired_t_p_values(design.looks, np.random.default_rng(seed), draws, effect_size)
    levels = np.asarray(design.levels)
    supported, refuted = p < levels, 1 - p < levels
    decided = supported | refuted
    stop = np.where(decided.any(axis=1), decided.argmax(axis=1), len(design.looks) - 1)
    rows = np.arange(draws)
    return OperatingCharacteristics(
        effect_size, float(supported[rows, stop].mean()), float(refuted[rows, stop].mean()),
        float(1 - decided.any(axis=1).mean()), float(np.asarray(design.looks)[stop].mean()))
