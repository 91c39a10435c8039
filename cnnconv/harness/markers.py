"""What a test's cnnconv markers say: its claim ID and source, whether ``--cnnconv-claim``
or ``--cnnconv-source`` selects it, and the strict xfail an ``xfail_at_scale`` marker
makes of it. Plain pytest, importable without torch (the plugin reads markers while it
collects)."""

from __future__ import annotations

from typing import Any

import pytest


def claim_id_of(item: pytest.Item | pytest.Function) -> str | None:
    """The ID of a claim test's ``claim`` marker; None for other tests."""
    marker = item.get_closest_marker("claim")
    if marker is None:
        return None
    claim_id = marker.args[0] if marker.args else marker.kwargs.get("id")
    if not claim_id:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.claim needs the claim ID")
    return str(claim_id)


def source_of(item: pytest.Item | pytest.Function) -> str:
    """The source a claim test's marker names, else its ID's first part (``P0`` of
    ``P0-BS-1``)."""
    claim_id = claim_id_of(item)
    marker = item.get_closest_marker("claim")
    if claim_id is None or marker is None:
        raise ValueError(f"{item.nodeid} is not a claim test")
    return str(marker.kwargs.get("source", claim_id.split("-")[0]))


def claim_selected(claim_id: str | None, wanted: list[str]) -> bool:
    """Does ``--cnnconv-claim`` select the claim? An ID or a prefix ending at a dash."""
    return claim_id is not None and any(
        claim_id == prefix or claim_id.startswith(prefix.rstrip("-") + "-") for prefix in wanted)


def listed(option: str | None) -> list[str]:
    """The entries of a comma-separated option, stripped; none where it is not given."""
    return [entry.strip() for entry in (option or "").split(",") if entry.strip()]


def params_of(item: pytest.Item) -> dict[str, Any]:
    """The test's parameters (``scale``, ``dataset``, ...); empty where unparametrized."""
    callspec = getattr(item, "callspec", None)
    return callspec.params if callspec is not None else {}


def expected_failures(item: pytest.Item) -> list[pytest.MarkDecorator]:
    """The strict xfail each ``xfail_at_scale(scale, reason=..., **params)`` marker makes
    of this item, where its scale and params match the item's parameters.

    Only the claim's own verdict failure counts as the expected failure (``raises``): a
    missing data set or a crash in a marked claim is still an error. ``strict=False`` is
    for a verdict that moves with the machine (a wall-clock timing measured on a shared
    CPU, or a borderline verdict that the CPU's rounding decides at the seeds run): it
    may then pass without failing the run.
    """
    params = params_of(item)
    found = []
    for marker in item.iter_markers("xfail_at_scale"):
        wanted = {k: v for k, v in marker.kwargs.items() if k not in ("reason", "strict")}
        if marker.args and marker.args[0] == params.get("scale") and all(
                params.get(k) == v for k, v in wanted.items()):
            found.append(pytest.mark.xfail(strict=marker.kwargs.get("strict", True),
                                           reason=marker.kwargs["reason"],
                                           raises=pytest.fail.Exception))
    return found
