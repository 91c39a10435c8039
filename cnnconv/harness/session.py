"""The claims session: the state behind the plugin's hooks, and the runner that gives the
claims their runs.

How a claim gets its runs is chosen once, when pytest configures the plugin, as one of
two implementations of ``ClaimRunner``: ``training.Training`` (runs from the store, the
engine for what it lacks, every decision recorded) or ``plan.Planning``
(``--cnnconv-plan``: the runs looked up and counted, nothing trained). The plugin's hooks
and fixtures call the runner and never ask which one it is.

This module imports neither torch nor scipy, and nor does the plugin: the runner is built
by the factory chosen at configure time on first need -- the first claim test (or test
marked gpu) to be set up, or the first claim record to arrive from an xdist worker -- so
that a pytest session without claims pays nothing for having cnnconv installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from cnnconv.harness.paths import default_store_dir

if TYPE_CHECKING:  # types only: importing them would import torch
    from cnnconv.harness.arms import Arms
    from cnnconv.harness.scales import Scale
    from cnnconv.stats import Decision, Design, SequentialDecision

# What a look asks of the claim: its decision at n seeds per arm, taken at a level.
DecideAt = Callable[[int, float], "Decision"]

# The user property of a claim test's report that carries its record (``records``).
RECORD = "cnnconv"
# The options whose output a session writes even if no claim ran.
OUTPUT_OPTIONS = ("--cnnconv-json", "--cnnconv-report", "--cnnconv-save-baseline")


class ClaimRunner(Protocol):
    """How the claims of a session get their runs, and what becomes of their decisions."""

    def setup(self, item: pytest.Item) -> None:
        """Before a claim test or a test marked gpu runs: skip it where this runner does
        not run it."""

    def arms(self, item: pytest.Item, scale: Scale) -> Arms:
        """The ``arms`` fixture of a claim test at ``scale``."""

    def decide(self, item: pytest.Function, design: Design, decide_at: DecideAt) -> SequentialDecision:
        """The claim decided at the design's looks -- or, when planning, its first look
        and its last (the worst case) counted."""

    def conclude(self, item: pytest.Function, decided: SequentialDecision) -> None:
        """What a claim's decision becomes: recorded, and the test failed unless the
        claim is supported -- or, when planning, discarded and the test skipped."""

    def skipped(self, item: pytest.Function) -> None:
        """The claim skipped itself (``pytest.skip``)."""

    def on_report(self, report: pytest.TestReport) -> None:
        """A test's report, on the controller (from the workers, under xdist)."""

    def summary(self, reporter: pytest.TerminalReporter) -> None:
        """The session's table at the end of pytest's output."""

    def finish(self) -> None:
        """Write what the session's options ask for (JSON, baseline, report)."""


RunnerFactory = Callable[["ClaimSession"], ClaimRunner]


class ClaimSession:
    """Per-process state: the options, the scales asked for, the baseline to compare with,
    and the runner (built on first need by the factory chosen at configure time)."""

    def __init__(self, config: pytest.Config, scales: list[str], make_runner: RunnerFactory) -> None:
        self.config = config
        self.scales = scales
        self.store_dir = Path(config.getoption("--cnnconv-store") or default_store_dir())
        self.baseline_dir = self.store_dir.parent / "baselines"
        self.baseline: dict | None = None
        self._make_runner = make_runner
        self._runner: ClaimRunner | None = None

    def start(self) -> ClaimRunner:
        """The session's runner, built by the factory chosen at configure time if it has
        not been yet (on first need, or at once for a plan)."""
        if self._runner is None:
            self._runner = self._make_runner(self)
        return self._runner

    @property
    def runner(self) -> ClaimRunner:
        return self.start()

    @property
    def has_runner(self) -> bool:
        return self._runner is not None

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    # -- hooks of the registered session object ---------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Hand reports to the runner on the controller (under xdist the workers' arrive
        here, each claim's record with it)."""
        if self.is_worker:  # the record travels to the controller with the report
            return
        if not self.has_runner and not any(name == RECORD for name, _ in report.user_properties):
            return  # no claim has run in this process, and this is none
        self.runner.on_report(report)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.has_runner:
            self.runner.summary(terminalreporter)

    def pytest_sessionfinish(self) -> None:
        """Write the session's output (on the controller only)."""
        if self.is_worker:
            return
        if not self.has_runner and not any(self.config.getoption(o) for o in OUTPUT_OPTIONS):
            return
        self.runner.finish()
