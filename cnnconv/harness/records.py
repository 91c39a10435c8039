"""What a claim's decision becomes: its record, and every place the record goes.

A claim test's record holds its decision, its arms' per-seed metrics and run keys, and any
regression against a baseline. It is attached to the test's report as a user property
(``session.RECORD``), so that under pytest-xdist it travels from the worker to the
controller, which gathers the records and writes them out: pytest's terminal table, JUnit
XML properties of the test case, ``--cnnconv-json``, a named baseline and the Markdown
report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cnnconv.harness.arms import Arm
from cnnconv.harness.markers import claim_id_of, source_of
from cnnconv.harness.scales import Scale
from cnnconv.stats import Decision, SequentialDecision


def claim_record(item: pytest.Function, decided: SequentialDecision,
                 arm_records: list[dict[str, Any]], regressions: list[Decision]) -> dict[str, Any]:
    """The record of one claim test, in plain JSON types: under xdist it travels through
    execnet, which serialises only exact built-in types and refuses e.g. numpy.float64."""
    marker = item.get_closest_marker("claim")
    assert marker is not None
    scale = item.funcargs.get("scale")
    record = {
        "nodeid": item.nodeid,
        "id": claim_id_of(item),
        "source": source_of(item),
        "sentence": marker.kwargs.get("sentence", ""),
        "paper": marker.kwargs.get("paper", ""),
        "scale": scale.name if isinstance(scale, Scale) else "",
        "dataset": arm_records[0]["spec"]["dataset"] if arm_records else "",
        "decision": decided.decision.as_dict(),
        "sequential": decided.as_dict(),
        "arms": arm_records,
        "regressions": [r.as_dict() for r in regressions],
    }
    return json.loads(json.dumps(record, default=_number))


def arm_record(arm: Arm) -> dict[str, Any]:
    """What the report and the baselines need of an arm: keys and per-seed metrics."""
    metrics: dict[str, list[float]] = {}
    if not arm.diverged().any():
        for start, stop in sorted(arm.windows):
            metrics[f"loss[{start}:{stop}]"] = arm.window_mean(start, stop).tolist()
        accuracy = arm.final_accuracy()
        if np.isfinite(accuracy).all():
            metrics["test_accuracy"] = accuracy.tolist()
    return {
        "label": arm.label,
        "spec": arm.spec.canonical(),
        "description": arm.spec.label().rsplit(" seed", 1)[0],
        "keys": [run.spec.key() for run in arm.runs],
        "windows": sorted(arm.windows),
        "metrics": metrics,
        "diverged": int(arm.diverged().sum()),
        "wall_time": float(arm.wall_time().sum()),
    }


def _number(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (json's fallback for the record)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"a claim's record holds {type(value).__name__} {value!r}, not JSON")


def junit_properties(record: dict[str, Any]) -> list[tuple[str, object]]:
    """The verdict as JUnit XML properties of the test case (``--junitxml``), so that a CI
    test report shows it without the Markdown report."""
    d, look = record["decision"], record.get("sequential")
    return [("claim", record["id"]), ("scale", record["scale"]), ("dataset", record["dataset"]),
            ("verdict", d["verdict"]), ("effect", d["effect"]), ("effect_name", d["effect_name"]),
            ("ci_low", d["ci"][0]), ("ci_high", d["ci"][1]), ("p_value", d["p_value"]),
            ("p_against", d["p_against"]), ("n", d["n"]), ("alpha", d["alpha"]),
            *((name, look[key]) for name, key in (("look", "look"), ("seeds", "n"),
                                                  ("boundary", "boundary"), ("cap", "cap"),
                                                  ("family_alpha", "alpha")) if look)]


def with_outcome(record: dict[str, Any], report: pytest.TestReport) -> dict[str, Any]:
    """The record with its test's outcome (passed, failed, xfailed or xpassed)."""
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    else:
        outcome = report.outcome
    return {**record, "outcome": outcome}


def record_order(record: dict[str, Any]) -> tuple[str, str, str]:
    """Claims sorted by ID, then scale, then data set."""
    return record["id"], record["scale"], record.get("dataset", "")


def table(records: list[dict[str, Any]]) -> list[str]:
    """The terminal table of verdicts, one line per claim test."""
    lines = [f"{'claim':<16} {'scale':<6} {'data':<13} {'verdict':<13} {'outcome':<8} "
             f"{'effect [CI]':<34} {'p':>9} {'level':>7} {'seeds':>9}"]
    for record in sorted(records, key=record_order):
        d = record["decision"]
        effect = f"{d['effect']:+.4g} [{d['ci'][0]:+.3g}, {d['ci'][1]:+.3g}]"
        lines.append(
            f"{record['id']:<16} {record['scale'] or '-':<6} {record.get('dataset') or '-':<13} "
            f"{d['verdict']:<13} {record['outcome']:<8} {effect:<34} {d['p_value']:>9.3g} "
            f"{d['alpha']:>7.3g} {seeds_of(record):>9}")
    return lines


def seeds_of(record: dict[str, Any]) -> str:
    """The seeds per arm a claim was decided at, and the cap: ``8 of 16`` (or the
    decision's n, for a claim without arms)."""
    look = record.get("sequential")
    if not look or look["cap"] <= 1:
        return str(record["decision"]["n"])
    return f"{look['n']} of {look['cap']}" if len(look["looks"]) > 1 else str(look["n"])


def write_json(path: Path, alpha: float, **content: Any) -> None:
    """``--cnnconv-json``: the session's verdicts (``claims``) or plan (``plan``), with
    when, under which torch and at which alpha."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"created": time.time(), "torch": torch.__version__,
                                "alpha": alpha, **content}, indent=1))
