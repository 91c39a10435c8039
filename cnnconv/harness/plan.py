"""The bill before the training: what a claims session would train, and what it costs.

``pytest claims --cnnconv-plan`` runs each selected claim against a ``Planner`` instead
of the engine (the ``Planning`` runner): every run an arm asks for is looked up in the run
store, and the missing ones -- with the distillation teachers they would need -- are
counted in runs, seed-iterations and FLOPs (``flops``), and priced in seconds from the
throughput table the benchmarks write (``throughput``). A claim is priced at its first
look (decided there, it trains no more) and in the worst case, every look up to the cap
(undecided until the last). Nothing is trained; every test is reported skipped, a claim
with what it needs.

A claim that picks an arm from earlier results (P4-WARMUP's learning rate) is planned
from stand-in results: it may pick another arm once trained, of the same cost (the same
batch size and length).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cnnconv.engine.datasets import DataError, load_dataset
from cnnconv.engine.device import device_name
from cnnconv.engine.result import RunResult
from cnnconv.engine.schedule import evaluation_points
from cnnconv.engine.spec import RunSpec
from cnnconv.harness import records
from cnnconv.harness.arms import Arms
from cnnconv.harness.flops import RunCost, run_cost
from cnnconv.harness.markers import claim_id_of
from cnnconv.harness.progress import duration
from cnnconv.harness.scales import Scale
from cnnconv.harness.session import ClaimSession, DecideAt
from cnnconv.harness.store import RunStore
from cnnconv.harness.throughput import ThroughputTable
from cnnconv.stats import Design, SequentialDecision


@dataclass
class ClaimPlan:
    """The runs one claim test needs in the worst case (``needed``) and at its first look
    (``first``), which the store has, and what the rest cost."""

    claim: str
    nodeid: str
    needed: dict[str, RunCost] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)
    first: set[str] = field(default_factory=set)
    requested: set[str] = field(default_factory=set)  # by the claim's latest call
    note: str = ""

    @property
    def to_train(self) -> list[RunCost]:
        return [cost for key, cost in self.needed.items() if key not in self.stored]

    @property
    def to_train_first(self) -> list[RunCost]:
        return [cost for cost in self.to_train if cost.key in self.first]


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
        dataset = load_dataset(specs[0].dataset, self.data_dir)
        size = stack or len(specs)
        results = []
        for start in range(0, len(specs), size):
            chunk = specs[start:start + size]
            stored = {} if fresh else {
                spec.key(): run for spec in chunk if (run := self.store.get(spec)) is not None}
            todo = [spec for spec in chunk if spec.key() not in stored]
            # a computation holds the runs no earlier look has planned (those train there)
            new = [spec for spec in todo if spec.key() not in plan.needed]
            for spec in chunk:
                cost = run_cost(spec, dataset, max(1, len(new)))
                plan.needed.setdefault(cost.key, cost)
                plan.requested.add(cost.key)
                if cost.key in stored:
                    plan.stored.add(cost.key)
                    results.append(stored[cost.key])
                else:
                    results.append(stand_in(spec, cost.iterations, len(dataset.classes), len(todo)))
            if todo and todo[0].teacher is not None:  # training takes them from the store
                self.fetch(plan, [spec.teacher_spec() for spec in todo], fresh=False)
        return results


def stand_in(spec: RunSpec, iterations: int, classes: int, stack: int) -> RunResult:
    """A run-shaped placeholder: chance-level loss and accuracy with a little noise (so
    that a claim's statistics run), never stored and never reported. Its environment
    names the stack the session would train it in, as a trained run's does (P3-FP16
    compares step rates only between runs of one stack size)."""
    rng = np.random.default_rng(spec.seed)
    chance = 1 / classes
    evaluations = evaluation_points(spec, iterations)
    return RunResult(
        spec=spec, losses=np.log(classes) + rng.normal(0, 0.01, iterations),
        train_correct=rng.binomial(spec.batch_size, chance, iterations),
        eval_iterations=evaluations,
        test_accuracy=list(chance + rng.normal(0, 0.01, len(evaluations))),
        samples_seen=iterations * spec.batch_size, epochs=0.0, wall_time=1.0, eval_time=0.0,
        diverged_at=None, precision_state={}, environment={"stand_in": "true", "stack": str(stack)},
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


def _plan_row(name: str, needed: int, stored: int, first: list[RunCost], todo: list[RunCost],
              times: tuple[str, str], about: str) -> str:
    return (f"{name:<15} {needed:>5} {stored:>6} {len(first):>6} {len(todo):>6} "
            f"{sum(c.iterations for c in todo):>10,} {sum(c.flops for c in todo):>9.2e} "
            f"{times[0]:>12} {times[1]:>12}  {about}")


def format_plan(claims: list[ClaimPlan], table: ThroughputTable) -> list[str]:
    """The plan as terminal lines: one per claim, then the distinct runs in total. Runs to
    train and time are given at the first look and in the worst case (every look); runs,
    seed-iterations and FLOPs count the worst case."""
    lines = [f"{'':<15} {'':>5} {'':>6} {'to train':>13} {'worst case':>20} "
             f"{'time':>25}",
             f"{'claim':<15} {'runs':>5} {'stored':>6} {'first':>6} {'worst':>6} {'seed-it':>10} "
             f"{'FLOPs':>9} {'first look':>12} {'worst case':>12}  test"]
    everything: dict[str, RunCost] = {}
    stored: set[str] = set()
    first: set[str] = set()
    for plan in claims:
        todo, todo_first = plan.to_train, plan.to_train_first
        about = plan.nodeid.split("::")[-1] + (f" ({plan.note})" if plan.note else "")
        lines.append(_plan_row(plan.claim, len(plan.needed), len(plan.stored), todo_first, todo,
                               (estimate(todo_first, table).text(), estimate(todo, table).text()),
                               about))
        everything.update(plan.needed)
        stored |= plan.stored
        first |= plan.first
    overall = ClaimPlan("total", "", everything, stored, first)
    todo, todo_first = overall.to_train, overall.to_train_first
    total = estimate(todo, table)
    lines.append(_plan_row("total", len(everything), len(stored), todo_first, todo,
                           (estimate(todo_first, table).text(), total.text()),
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
                  "first_look": cost.key in plan.first, "iterations": cost.iterations,
                  "flops": cost.flops}
                 for cost in plan.needed.values()],
    } for plan in claims]


class Planning:
    """``--cnnconv-plan`` (``session.ClaimRunner``): every claim test counted, none trained."""

    def __init__(self, session: ClaimSession) -> None:
        self.session = session
        self.config = session.config
        self.planner = Planner(RunStore(session.store_dir), self.config.getoption("--cnnconv-data"),
                               self.config.getoption("--cnnconv-fresh"))
        self.plans: dict[str, ClaimPlan] = {}  # by node ID

    def _plan(self, item: pytest.Item) -> ClaimPlan:
        plan = self.planner.claim(claim_id_of(item) or item.name, item.nodeid)
        self.plans[item.nodeid] = plan
        return plan

    def setup(self, item: pytest.Item) -> None:
        """Only claims run under a plan. A claim that asks for no arms trains nothing: it
        is planned, not called (it may measure on a GPU, as GEMM-DTYPE does)."""
        if claim_id_of(item) is None:
            pytest.skip("--cnnconv-plan plans the claims and runs no other test")
        if "arms" not in item.fixturenames:
            self._plan(item).note = "trains nothing"
            pytest.skip("--cnnconv-plan: 0 runs needed, 0 to train")

    def arms(self, item: pytest.Item, scale: Scale) -> Arms:
        plan = self._plan(item)
        stack = self.config.getoption("--cnnconv-stack")

        def fetch(specs: list[RunSpec], claim_stack: int | None, label: str) -> list[RunResult]:
            try:
                return self.planner.fetch(plan, specs, claim_stack or stack)
            except DataError as error:
                if self.config.getoption("--cnnconv-require-data"):
                    raise
                plan.note = f"data set {specs[0].dataset!r} missing: the claim would skip"
                pytest.skip(f"{plan.note} ({error})")
        return Arms(fetch, scale.seeds)

    def decide(self, item: pytest.Function, design: Design, decide_at: DecideAt) -> SequentialDecision:
        """The claim at its first look, then at each later one: what it trains if decided
        at once, and in the worst case (each look's new seeds as one computation)."""
        plan = self.plans[item.nodeid]
        plan.requested.clear()
        first = decide_at(design.looks[0], design.levels[0])
        plan.first = set(plan.requested)
        for seeds, level in zip(design.looks[1:], design.levels[1:]):
            decide_at(seeds, level)
        return SequentialDecision(first, design, 0)

    def conclude(self, item: pytest.Function, decided: SequentialDecision) -> None:
        """A decision on stand-ins means nothing: report the claim skipped, with its bill."""
        plan = self.plans[item.nodeid]
        first, worst = len(plan.to_train_first), len(plan.to_train)
        if first == worst and len(plan.first) == len(plan.needed):  # one look
            pytest.skip(f"--cnnconv-plan: {len(plan.needed)} runs needed, {worst} to train")
        pytest.skip(f"--cnnconv-plan: {len(plan.first)} runs needed at the first look, "
                    f"{len(plan.needed)} at the last; {first} to train at the first, {worst} "
                    "in the worst case")

    def skipped(self, item: pytest.Function) -> None:
        plan = self.plans[item.nodeid]
        plan.note = plan.note or "the claim skips itself here"

    def on_report(self, report: pytest.TestReport) -> None:
        """A plan gathers nothing from reports."""

    def summary(self, reporter: pytest.TerminalReporter) -> None:
        reporter.write_sep("=", "cnnconv plan: nothing was trained")
        for line in format_plan(self.planner.claims, self.table()):
            reporter.write_line(line)

    def table(self) -> ThroughputTable:
        """``--cnnconv-throughput-table``, relative to the project's root (pytest's rootdir)."""
        path = Path(self.config.getoption("--cnnconv-throughput-table"))
        return ThroughputTable.load(self.config.rootpath / path)

    def finish(self) -> None:
        """The plan as JSON (no verdicts: no baseline and no report)."""
        json_path = self.config.getoption("--cnnconv-json")
        if json_path:
            records.write_json(json_path, self.config.getoption("--cnnconv-alpha"),
                               plan=plan_json(self.planner.claims))
