"""A verdict with its evidence: the ``Decision`` every statistical test returns.

A decision holds two p-values and reads a three-way verdict from them:

- ``supported``: the test of the claim rejects its null at ``alpha`` (``p_value``);
- ``refuted``: the test *against* the claim rejects at ``alpha`` (``p_against``): the data
  significantly contradict it. At the claim's boundary each happens at most ``alpha`` of
  the time (``tests/test_stats.py`` checks both rates by simulation for every decision);
- ``inconclusive``: neither. ``seeds_needed`` estimates how many seeds give 80% power at
  level alpha *if the true effect is the one observed* -- a rough guide, since with few
  seeds the observed effect is itself noisy; None where more seeds cannot help (the effect
  points away from the claim, or every seed gives the same value). Decided by a
  sequential design (``sequential``), alpha is the level of the look it stopped at, so
  after the last look the estimate is for one test at this design's last level.

Confidence intervals are two-sided at level ``1 - 2*alpha`` (90% at alpha 0.05): the
interval that agrees with the one-sided tests and with TOST at ``alpha``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"
TARGET_POWER = 0.8
MAX_SEEDS = 10_000
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


# The note of a decision whose every seed gave the same value.
NO_SPREAD = "every seed gives the same value: more seeds cannot settle it"


def exact(value: float, holds: bool, *, alpha: float = 0.05, label: str = "",
          effect_name: str = "value", test: str = "exact count") -> Decision:
    """A claim about a deterministic quantity (a parameter count): no sampling, n = 1."""
    return Decision(0.0 if holds else 1.0, 1.0 if holds else 0.0, float(value),
                    (float(value), float(value)), 1, alpha, test, label, effect_name,
                    lambda n, alpha: float(holds))
