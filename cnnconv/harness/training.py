"""The runner of an ordinary claims session: runs trained, decisions recorded.

Each arm's runs come from the run store; the ones it lacks are trained by the engine,
the seeds of an arm as one computation (``--cnnconv-stack`` at a time), with one progress
line per arm on pytest's terminal. A claim's decision becomes its record (``records``):
compared with the baseline of ``--cnnconv-compare``, attached to the test's report, and
gathered on the controller into the terminal table, ``--cnnconv-json``, a saved baseline
and the report. The test fails unless the claim is supported.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from cnnconv.engine.datasets import DataError
from cnnconv.engine.result import RunResult
from cnnconv.engine.spec import RunSpec
from cnnconv.engine.train import train_seeds
from cnnconv.harness import baselines, records
from cnnconv.harness.arms import Arms
from cnnconv.harness.markers import claim_id_of
from cnnconv.harness.progress import ProgressLine, TerminalDisplay
from cnnconv.harness.scales import Scale
from cnnconv.harness.session import RECORD, ClaimSession, DecideAt
from cnnconv.harness.store import RunStore
from cnnconv.stats import Decision, Design, SequentialDecision

ARMS = pytest.StashKey[Arms]()


class Training:
    """Claims against the run store and the engine (``session.ClaimRunner``)."""

    def __init__(self, session: ClaimSession) -> None:
        self.session = session
        self.config = session.config
        self.records: list[dict[str, Any]] = []
        self._display: TerminalDisplay | None = None
        self._retrained: set[str] = set()  # keys --cnnconv-fresh has retrained already

    @functools.cached_property
    def store(self) -> RunStore:
        return RunStore(self.session.store_dir)

    def setup(self, item: pytest.Item) -> None:
        if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
            pytest.skip(
                f"needs a CUDA GPU: torch {torch.__version__} sees none here "
                "(torch.cuda.is_available() is False); run `pytest claims -m gpu` on a GPU host"
            )

    def arms(self, item: pytest.Item, scale: Scale) -> Arms:
        claim_id = claim_id_of(item) or item.name

        def fetch(specs: list[RunSpec], stack: int | None, label: str) -> list[RunResult]:
            return self.fetch(specs, stack, f"{claim_id} {label}")
        factory = Arms(fetch, scale.seeds)
        item.stash[ARMS] = factory
        return factory

    # -- runs ------------------------------------------------------------------------

    def fetch(self, specs: list[RunSpec], stack: int | None = None,
              label: str = "") -> list[RunResult]:
        """Runs from the store, the missing ones trained ``stack`` (default
        ``--cnnconv-stack``) seeds at a time, with a progress line named ``label``.
        ``--cnnconv-fresh`` retrains each run once per session, not once per claim."""
        data_dir = self.config.getoption("--cnnconv-data")
        size = stack or self.config.getoption("--cnnconv-stack") or len(specs)
        redo = {spec.key() for spec in specs if self.config.getoption("--cnnconv-fresh")
                and spec.key() not in self._retrained}
        missing = len(redo) + sum(spec.key() not in redo and not self.store.path(spec).exists()
                                  for spec in specs)

        def train(todo: list[RunSpec], progress: ProgressLine | None) -> list[RunResult]:
            return train_seeds(todo, data_dir=data_dir, progress=progress,
                               teacher_weights=lambda teachers: teacher_weights(teachers, progress))

        def teacher_weights(teachers: list[RunSpec], student: ProgressLine | None) -> list[Any]:
            unstored = sum(not self.store.path(spec).exists() for spec in teachers)
            with (student.paused() if student else contextlib.nullcontext()), \
                    self.progress_line(f"{label} (teacher)", unstored) as progress:
                runs = self.store.get_or_train_many(teachers, lambda todo: train(todo, progress))
            return [run.weights for run in runs]

        def get(part: list[RunSpec], progress: ProgressLine | None) -> list[RunResult]:
            found: dict[str, RunResult] = {}
            for again in (True, False):  # the runs to retrain, then the others
                group = [spec for spec in part if (spec.key() in redo) == again]
                if group:
                    found.update(zip((spec.key() for spec in group), self.store.get_or_train_many(
                        group, lambda todo: train(todo, progress), fresh=again)))
            self._retrained.update(redo & found.keys())
            return [found[spec.key()] for spec in part]

        try:
            # one progress line for the arm, however many computations it takes
            with self.progress_line(label, missing) as progress:
                return [run for start in range(0, len(specs), size)
                        for run in get(specs[start:start + size], progress)]
        except DataError as error:
            if self.config.getoption("--cnnconv-require-data"):
                raise
            pytest.skip(f"data set {specs[0].dataset!r} not available: {error}")

    @contextlib.contextmanager
    def progress_line(self, label: str, runs: int) -> Iterator[ProgressLine | None]:
        """The progress line of training ``runs`` runs on pytest's terminal, closed with
        its final line; none under ``-q`` or in an xdist worker."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or self.session.is_worker or self.config.get_verbosity() < 0:
            yield None
            return
        if self._display is None:
            capture = self.config.pluginmanager.get_plugin("capturemanager")
            self._display = TerminalDisplay(reporter, capture)
        progress = ProgressLine(label, runs, self._display)
        yield progress
        progress.close()

    # -- decisions -------------------------------------------------------------------

    def decide(self, item: pytest.Function, design: Design, decide_at: DecideAt) -> SequentialDecision:
        """Look after look until the verdict is decided; each look trains only its new
        seeds (the earlier ones are in the store)."""
        return design.decide(decide_at)

    def conclude(self, item: pytest.Function, decided: SequentialDecision) -> None:
        """Record the decision, compared with the baseline; fail unless supported."""
        claim_id = claim_id_of(item)
        assert claim_id is not None
        factory = item.stash.get(ARMS, None)
        arm_records = [records.arm_record(arm) for arm in (factory.requested if factory else [])]
        regressions = self.regressions(item, arm_records)
        record = records.claim_record(item, decided, arm_records, regressions)
        item.user_properties.append((RECORD, record))
        item.user_properties.extend(records.junit_properties(record))
        problems = []
        if not decided.supported:
            problems.append(f"{claim_id} {decided.verdict.upper()}\n{decided.explain()}")
        for regression in regressions:
            problems.append(f"regression against baseline: {regression.text}")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    def regressions(self, item: pytest.Function, arm_records: list[dict[str, Any]]) -> list[Decision]:
        """The arms' metrics significantly worse than ``--cnnconv-compare``'s baseline."""
        baseline = self.session.baseline
        if baseline is None:
            return []
        if item.nodeid not in baseline["claims"]:
            warnings.warn(pytest.PytestWarning(
                f"{item.nodeid} is not in baseline {baseline['name']!r}, so nothing was "
                "compared (a new test, or one whose node ID changed, e.g. since claim IDs "
                "lead it): save the baseline again"), stacklevel=1)
        return baselines.regressions(baseline, item.nodeid, arm_records,
                                     self.config.getoption("--cnnconv-compare-margin"))

    def skipped(self, item: pytest.Function) -> None:
        """A claim that skips itself leaves no record."""

    # -- on the controller -----------------------------------------------------------

    def on_report(self, report: pytest.TestReport) -> None:
        """Collect claim records; the record then leaves the report's properties (JUnit
        XML gets the verdict's own ones)."""
        if self._display is not None and report.when == "call":
            self._display.resume(report.nodeid)
        found = [value for name, value in report.user_properties if name == RECORD]
        report.user_properties = [(n, v) for n, v in report.user_properties if n != RECORD]
        if report.when == "call":
            self.records += [records.with_outcome(record, report) for record in found]

    def summary(self, reporter: pytest.TerminalReporter) -> None:
        if self.records:
            reporter.write_sep("=", "cnnconv claims")
            for line in records.table(self.records):
                reporter.write_line(line)

    def finish(self) -> None:
        """The verdict JSON, the baseline and the report."""
        ordered = sorted(self.records, key=records.record_order)
        json_path = self.config.getoption("--cnnconv-json")
        if json_path:
            records.write_json(json_path, self.config.getoption("--cnnconv-alpha"), claims=ordered)
        name = self.config.getoption("--cnnconv-save-baseline")
        if name:
            baselines.save(self.session.baseline_dir, name, ordered)
        report_path = self.config.getoption("--cnnconv-report")
        if report_path and ordered:
            from cnnconv.harness.report import write_report  # matplotlib: only for a report

            write_report(ordered, self.store, report_path)
