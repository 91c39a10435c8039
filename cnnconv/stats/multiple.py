"""Decisions over several comparisons: all of them (intersection-union, Holm against),
an order, an interior maximum, the best level within a range (Bonferroni over the
candidates picked after seeing the data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import numpy as np
from numpy.typing import ArrayLike

from cnnconv.stats.decision import INCONCLUSIVE, Decision
from cnnconv.stats.directional import greater, less


def either_end(p_below_low: float, p_above_high: float) -> float:
    """p against a band: outside it at either end, Bonferroni over the two ends."""
    return min(1.0, 2 * min(p_below_low, p_above_high))


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
    p_against = max(either_end(*(d.p_against for d in t.parts)) for t in tested)
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
