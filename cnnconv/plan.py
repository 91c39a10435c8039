"""The bill before the training: what a claims session would train, and what it costs.

``pytest claims --cnnconv-plan`` runs each selected claim against a ``Planner`` instead
of the engine: every run an arm asks for is looked up in the run store, and the missing
ones -- with the distillation teachers they would need -- are counted in runs,
seed-iterations and FLOPs, and priced in seconds from the throughput table the
benchmarks write (``benchmarks/results/throughput.json``). Nothing is trained.

FLOPs are counted, not modelled: ``torch.utils.flop_counter.FlopCounterMode`` records
one training step of each model and batch size (forward and backward of the loss, and a
teacher's forward) and the forward of one test image, on the meta device: the shapes of
a CPU run, hence its count (a test checks both), without the arithmetic. It counts
matrix multiplications and convolutions, the bulk of a CNN's work; elementwise work
(BatchNorm, the optimizer, augmentation) is not in it.

A claim that picks an arm from earlier results (P4-WARMUP's learning rate) is planned
from stand-in results: it may pick another arm once trained, of the same cost (the same
batch size and length).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cnnconv import data as data_mod
from cnnconv.device import device_name
from cnnconv.models import build_model
from cnnconv.progress import duration
from cnnconv.result import RunResult
from cnnconv.schedule import evaluation_points, total_iterations
from cnnconv.spec import RunSpec
from cnnconv.store import RunStore

THROUGHPUT_TABLE = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "throughput.json"


# -- counting ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _flops(model: str, options: Mapping[str, Any], batch_size: int,
           shape: tuple[int, int, int], classes: int, backward: bool) -> int:
    """FLOPs of one forward (and backward) of the loss at ``batch_size``, on meta tensors
    (``options``: hashable, as a spec's ``model_options`` are)."""
    with torch.device("meta"):
        network = build_model(model, classes, shape[0], shape[1], **dict(options))
        images = torch.empty(batch_size, *shape)
        labels = torch.zeros(batch_size, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        if backward:
            F.cross_entropy(network(images), labels).backward()
        else:  # a teacher's or an evaluation's forward: in eval mode, as they run
            with torch.no_grad():
                network.eval()(images)
    return counter.get_total_flops()


def step_flops(spec: RunSpec, shape: tuple[int, int, int], classes: int) -> int:
    """FLOPs of one training step of one seed: forward and backward of the loss, plus the
    distillation teacher's forward."""
    flops = _flops(spec.model, spec.model_options, spec.batch_size, shape, classes, True)
    if spec.teacher is not None:
        teacher = spec.teacher
        flops += _flops(teacher.model, teacher.model_options, spec.batch_size, shape, classes,
                        False)
    return flops


@dataclass(frozen=True)
class RunCost:
    """One run to train: its key, its length, its FLOPs (steps and evaluations), and how
    many runs it would train with as one computation (``stack``)."""

    key: str
    spec: RunSpec
    iterations: int
    step_flops: int
    flops: int
    stack: int = 1


def run_cost(spec: RunSpec, dataset: data_mod.Dataset, stack: int = 1) -> RunCost:
    """What training ``spec`` on ``dataset`` in a computation of ``stack`` runs costs."""
    shape, classes = dataset.shape, len(dataset.classes)
    iterations = total_iterations(spec, len(dataset.train.head(spec.train_subset)))
    per_step = step_flops(spec, shape, classes)
    per_image = _flops(spec.model, spec.model_options, 1, shape, classes, False)
    evaluations = len(evaluation_points(spec, iterations)) * len(dataset.test.head(spec.test_subset))
    return RunCost(spec.key(), spec, iterations, per_step,
                   iterations * per_step + evaluations * per_image, stack)


# -- pricing ---------------------------------------------------------------------------------


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
    def load(cls, path: Path = THROUGHPUT_TABLE) -> ThroughputTable:
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


# -- planning -------------------------------------------------------------------------------


@dataclass
class ClaimPlan:
    """The runs one claim test needs, which the store has, and what the rest cost."""

    claim: str
    nodeid: str
    needed: dict[str, RunCost] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)
    note: str = ""

    @property
    def to_train(self) -> list[RunCost]:
        return [cost for key, cost in self.needed.items() if key not in self.stored]


class Planner:
    """Answers a claim's arms from the store, or with stand-ins while counting the cost."""

    def __init__(self, store: RunStore, data_dir: str | None, fresh: bool = False) -> None:
        self.store, self.data_dir, self.fresh = store, data_dir, fresh
        self.claims: list[ClaimPlan] = []

    def claim(self, claim_id: str, nodeid: str) -> ClaimPlan:
        plan = ClaimPlan(claim_id, nodeid)
        self.claims.append(plan)
        return plan

    def fetch(self, plan: ClaimPlan, specs: list[RunSpec], stack: int | None = None,
              fresh: bool | None = None) -> list[RunResult]:
        """Stored runs as they are (none with ``fresh``, default the planner's:
        ``--cnnconv-fresh`` retrains); missing runs are counted, ``stack`` at a time (as
        the session would train them), with their teachers, and answered by stand-ins.
        Raises ``DataError`` where the data set is missing."""
        fresh = self.fresh if fresh is None else fresh
        dataset = data_mod.load_dataset(specs[0].dataset, self.data_dir)
        size = stack or len(specs)
        results = []
        for start in range(0, len(specs), size):
            chunk = specs[start:start + size]
            stored = {} if fresh else {
                spec.key(): run for spec in chunk if (run := self.store.get(spec)) is not None}
            todo = [spec for spec in chunk if spec.key() not in stored]
            for spec in chunk:
                cost = run_cost(spec, dataset, max(1, len(todo)))
                plan.needed.setdefault(cost.key, cost)
                if cost.key in stored:
                    plan.stored.add(cost.key)
                    results.append(stored[cost.key])
                else:
                    results.append(stand_in(spec, cost.iterations, len(dataset.classes)))
            if todo and todo[0].teacher is not None:  # training takes them from the store
                self.fetch(plan, [spec.teacher_spec() for spec in todo], fresh=False)
        return results


def stand_in(spec: RunSpec, iterations: int, classes: int) -> RunResult:
    """A run-shaped placeholder: chance-level loss and accuracy with a little noise (so
    that a claim's statistics run), never stored and never reported."""
    rng = np.random.default_rng(spec.seed)
    chance = 1 / classes
    evaluations = evaluation_points(spec, iterations)
    return RunResult(
        spec=spec, losses=np.log(classes) + rng.normal(0, 0.01, iterations),
        train_correct=rng.binomial(spec.batch_size, chance, iterations),
        eval_iterations=evaluations,
        test_accuracy=list(chance + rng.normal(0, 0.01, len(evaluations))),
        samples_seen=iterations * spec.batch_size, epochs=0.0, wall_time=1.0, eval_time=0.0,
        diverged_at=None, precision_state={}, environment={"stand_in": "true"},
    )


@dataclass(frozen=True)
class Estimate:
    """Seconds to train the runs that could be priced, how many could not, and why."""

    seconds: float
    unpriced: int
    basis: list[str]

    def text(self) -> str:
        if self.unpriced and not self.seconds:
            return "no figure"
        approximate = any(basis.startswith("scaled") for basis in self.basis)
        known = ("~" if approximate else "") + duration(self.seconds)
        return known + (f" + {self.unpriced} unpriced" if self.unpriced else "")


def estimate(costs: list[RunCost], table: ThroughputTable) -> Estimate:
    """The time to train ``costs`` where their specs train: FLOPs over each run's
    measured rate; runs without a rate for their device are counted as unpriced."""
    seconds, unpriced, basis = 0.0, 0, []
    for cost in costs:
        device = torch.device(cost.spec.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            rate, why = None, "no CUDA device here: GPU runs are priced on the GPU host"
        else:
            name = device_name(device)
            rate = table.rate(name, cost)
            why = (f"no measured throughput for {name} in {cost.spec.precision} (the table "
                   f"has: {'; '.join(table.devices()) or 'none'}); measure it with `pytest "
                   "benchmarks -k throughput --benchmark-enable`")
        if rate is None:
            unpriced += 1
            if why not in basis:
                basis.append(why)
            continue
        seconds += cost.flops / rate.flops_per_second
        if rate.basis not in basis:
            basis.append(rate.basis)
    return Estimate(seconds, unpriced, basis)


def _plan_row(name: str, needed: int, stored: int, todo: list[RunCost], time: str,
              about: str) -> str:
    return (f"{name:<15} {needed:>5} {stored:>6} {len(todo):>8} "
            f"{sum(c.iterations for c in todo):>10,} {sum(c.flops for c in todo):>9.2e} "
            f"{time:>12}  {about}")


def format_plan(claims: list[ClaimPlan], table: ThroughputTable) -> list[str]:
    """The plan as terminal lines: one per claim, then the distinct runs in total."""
    lines = [f"{'claim':<15} {'runs':>5} {'stored':>6} {'to train':>8} {'seed-it':>10} "
             f"{'FLOPs':>9} {'time':>12}  test"]
    everything: dict[str, RunCost] = {}
    stored: set[str] = set()
    for plan in claims:
        todo = plan.to_train
        about = plan.nodeid.split("::")[-1] + (f" ({plan.note})" if plan.note else "")
        lines.append(_plan_row(plan.claim, len(plan.needed), len(plan.stored), todo,
                               estimate(todo, table).text(), about))
        everything.update(plan.needed)
        stored |= plan.stored
    todo = [cost for key, cost in everything.items() if key not in stored]
    total = estimate(todo, table)
    lines.append(_plan_row("total", len(everything), len(stored), todo, total.text(),
                           "(distinct runs: claims share arms)"))
    priced = [basis for basis in total.basis if not basis.startswith("no ")]
    if priced:
        scaled = sum(basis.startswith("scaled") for basis in priced)
        lines.append(f"time: {len(priced) - scaled} configuration(s) priced at their own "
                     f"measured rate, {scaled} at the FLOP rate of the nearest ('~'), "
                     f"from {table.path}")
    lines += [f"time: {basis}" for basis in total.basis if basis.startswith("no ")]
    lines.append("FLOPs: convolutions and matrix products of the training steps and "
                 "evaluations (FlopCounterMode); time: FLOPs over the measured rate")
    return lines


def plan_json(claims: list[ClaimPlan]) -> list[dict[str, Any]]:
    """The plan per claim, for ``--cnnconv-json``."""
    return [{
        "claim": plan.claim, "nodeid": plan.nodeid, "note": plan.note,
        "runs": [{"key": cost.key, "label": cost.spec.label(), "stored": cost.key in plan.stored,
                  "iterations": cost.iterations, "flops": cost.flops}
                 for cost in plan.needed.values()],
    } for plan in claims]
