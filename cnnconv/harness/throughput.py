"""Measured training throughput per device: the table ``benchmarks/test_throughput.py``
writes and ``--cnnconv-plan`` prices runs with."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnconv.harness.flops import RunCost


@dataclass(frozen=True)
class Rate:
    """FLOPs per second for a run, and where the figure comes from."""

    flops_per_second: float
    basis: str


class ThroughputTable:
    """Measured training throughput per device, written by ``benchmarks/test_throughput.py``.

    A row is one (device, precision, model, options, batch size, seeds stacked) with its
    seed-iterations per second and the FLOPs of its step. A run is priced by the row of
    its own configuration where there is one (nearest stack size), else by the FLOP rate
    of the row of the same device and precision whose step is nearest in FLOPs (marked
    approximate), else not at all.
    """

    def __init__(self, rows: list[dict[str, Any]], path: Path | None = None) -> None:
        self.rows, self.path = rows, path

    @classmethod
    def load(cls, path: Path) -> ThroughputTable:
        if not path.exists():
            return cls([], path)
        return cls(json.loads(path.read_text())["rows"], path)

    def record(self, row: Mapping[str, Any]) -> None:
        """Add a measurement (replacing the one of the same configuration) and save."""
        fields = ("device", "precision", "model", "model_options", "batch_size", "seeds")
        same = [r for r in self.rows if all(r[k] == row[k] for k in fields)]
        self.rows = [r for r in self.rows if r not in same] + [dict(row)]
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"rows": self.rows}, indent=1) + "\n")

    def devices(self) -> list[str]:
        return sorted({row["device"] for row in self.rows})

    def rate(self, device: str, cost: RunCost) -> Rate | None:
        """The FLOP rate for ``cost`` on ``device``: its own configuration's row (same
        model, options, batch size and step FLOPs, hence input shape; the nearest stack
        size), else the nearest row in FLOPs of the same model and options, else of any
        model (both marked as scaled); None without a row of the device and precision."""
        spec = cost.spec
        rows = [r for r in self.rows if r["device"] == device and r["precision"] == spec.precision]
        options = json.loads(json.dumps(dict(spec.model_options)))  # as the table stores them
        alike = [r for r in rows if r["model"] == spec.model and r["model_options"] == options]
        exact = [r for r in alike if r["batch_size"] == spec.batch_size
                 and r["step_flops"] == cost.step_flops]
        if exact:
            row = min(exact, key=lambda r: abs(r["seeds"] - cost.stack))
            return Rate(row["seed_iterations_per_second"] * row["step_flops"], _describe(row))
        if not rows:
            return None
        row = min(alike or rows, key=lambda r: (abs(math.log(r["step_flops"] / cost.step_flops)),
                                                abs(r["seeds"] - cost.stack)))
        return Rate(row["seed_iterations_per_second"] * row["step_flops"],
                    f"scaled by FLOPs from {_describe(row)}")


def _describe(row: Mapping[str, Any]) -> str:
    options = ",".join(f"{k}={v}" for k, v in row["model_options"].items())
    return (f"{row['model']}({options}) {row['precision']} bs{row['batch_size']} x{row['seeds']} "
            f"seeds: {row['seed_iterations_per_second']:.1f} seed-it/s")
