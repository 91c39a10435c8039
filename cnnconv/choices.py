"""The one error for an unknown name: say what was asked for and list what is valid."""

from __future__ import annotations

from collections.abc import Iterable


def check_choice(what: str, value: object, choices: Iterable[str]) -> None:
    """Raise ``ValueError("unknown <what> <value>; choose one of ...")`` unless valid."""
    names = list(choices)
    if value not in names:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(names)}")
