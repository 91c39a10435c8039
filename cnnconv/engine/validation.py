"""The errors for bad user input: an unknown name lists what is valid, a number out of
range names the range. Used by specs, models, the command line and the plugin's options,
so that every entry point rejects a bad value up front with the same words."""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable, Iterable


def check_choice(what: str, value: object, choices: Iterable[str]) -> None:
    """Raise ``ValueError("unknown <what> <value>; choose one of ...")`` unless valid."""
    names = list(choices)
    if value not in names:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(names)}")


def check_number(what: str, value: object, low: float, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = True, integer: bool = False) -> None:
    """Raise ``ValueError`` naming the valid interval unless ``value`` is a finite number
    (an integer if ``integer``) in it. NaN and infinities are never valid."""
    kinds = numbers.Integral if integer else numbers.Real
    number = isinstance(value, kinds) and not isinstance(value, bool)
    inside = number and math.isfinite(value) and (  # type: ignore[arg-type]
        (low < value if low_open else low <= value)  # type: ignore[operator]
        and (value < high if high_open else value <= high))  # type: ignore[operator]
    if not inside:
        kind = "an integer" if integer else "a finite number"
        if high == math.inf:
            bound = f"{'>' if low_open else '>='} {low:g}"
        else:
            bound = (f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")
        raise ValueError(f"{what} must be {kind} {bound}, got {value!r}")


def option_number(option: str, low: float, high: float = math.inf, *, integer: bool = False,
                  low_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: the option's value as a number in range, or the usage error
    ``check_number`` words."""
    def parse(text: str) -> float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} takes {'an integer' if integer else 'a number'}, got {text!r}") from None
        try:
            check_number(option, value, low, high, integer=integer, low_open=low_open)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return value
    return parse
