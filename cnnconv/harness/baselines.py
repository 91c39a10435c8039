"""Named baselines: a session's arm metrics saved, and later sessions compared against them.

``pytest claims --cnnconv-save-baseline=NAME`` stores, per claim test (node ID) and arm,
the per-seed metrics the claim summarised. ``--cnnconv-compare=NAME`` then fails a claim
whose arm got significantly worse than the saved seeds by more than a relative margin
(a one-sided test per metric: lower loss, higher accuracy is better). Storage and
comparison live here, apart from the pytest hooks, as pytest-benchmark keeps its own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnnconv import stats


class BaselineError(LookupError):
    """A named baseline is missing; the message lists the known ones and the fix."""


def load(directory: Path, name: str) -> dict[str, Any]:
    """The baseline saved under ``name``."""
    path = directory / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in directory.glob("*.json")) if directory.exists() else []
        raise BaselineError(
            f"--cnnconv-compare: no baseline {name!r} in {directory} (known: "
            f"{', '.join(known) or 'none'}); save one with --cnnconv-save-baseline={name}"
        )
    return json.loads(path.read_text())


def save(directory: Path, name: str, records: list[dict[str, Any]]) -> Path:
    """Save the arm metrics of the claim records under ``name``."""
    directory.mkdir(parents=True, exist_ok=True)
    claims = {
        record["nodeid"]: {arm["label"]: {"spec": arm["spec"], "metrics": arm["metrics"]}
                           for arm in record["arms"]}
        for record in records if record.get("arms")
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"name": name, "created": time.time(), "claims": claims}, indent=1))
    return path


def regressions(baseline: dict[str, Any], nodeid: str, arm_records: list[dict[str, Any]],
                margin: float) -> list[stats.Decision]:
    """Metrics of the claim's arms that got significantly worse than the baseline's by
    more than ``margin`` (a fraction of the baseline's mean)."""
    saved = baseline["claims"].get(nodeid, {})
    found = []
    for arm in arm_records:
        before = saved.get(arm["label"], {}).get("metrics", {})
        for metric, now in arm["metrics"].items():
            if metric not in before:
                continue
            base = np.asarray(before[metric])
            new = np.asarray(now)
            paired = len(base) == len(new)
            allowed = margin * abs(float(base.mean()))
            label = f"{arm['label']} {metric}"
            if metric == "test_accuracy":  # higher is better
                worse = stats.greater(base, new, margin=allowed, paired=paired, label=label)
            else:  # a loss: lower is better
                worse = stats.greater(new, base, margin=allowed, paired=paired, label=label)
            if worse.supported:
                found.append(worse)
    return found
