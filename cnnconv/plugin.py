"""The pytest plugin (entry point ``pytest11: cnnconv``): claims as tests.

A claim test is marked ``@pytest.mark.claim("ID", source=..., sentence=..., paper=...)``
and returns a ``stats.Decision``. The plugin calls it, records the decision and fails the
test unless the verdict is "supported" (the message says refuted or inconclusive, and
why). ``xfail(strict=True)`` marks a claim known not to replicate at a scale.

Tests that take the ``scale`` fixture run once per selected scale: ``cpu`` (real data,
scaled down, minutes on 2 cores), ``paper`` (the source's protocol, marked ``gpu``) and,
when asked for, ``long`` (P0 and P4 at hours on a CPU; claims a scale does not cover skip).
Tests marked ``gpu`` are skipped where CUDA is absent. Under pytest-xdist each worker
``gwN`` trains on ``cuda:(N mod device_count)`` and plans its stacks within its share of
that device's memory; workers share the run store, whose per-run locks make each run
computed once.

A claim's ID is part of its node ID (``test_x[P0-PREC-2-cpu-cifar10]``) and a keyword,
so ``-k P0-PREC-2`` selects it. While an arm trains, one progress line shows it
(``progress``); ``--cnnconv-plan`` trains nothing and prints what the selection would
train and cost (``plan``); each verdict is also a set of JUnit XML properties of its test
case; baselines are kept and compared in ``baseline``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cnnconv import baseline, stats
from cnnconv.choices import option_number
from cnnconv.claims import SCALES, Arms, Scale
from cnnconv.data import DataError
from cnnconv.device import share_device
from cnnconv.plan import THROUGHPUT_TABLE, ClaimPlan, Planner, ThroughputTable, format_plan, plan_json
from cnnconv.progress import ProgressLine, TerminalDisplay
from cnnconv.result import RunResult
from cnnconv.spec import RunSpec
from cnnconv.store import RunStore, default_store_dir
from cnnconv.train import train_seeds

ARMS_KEY = pytest.StashKey[Arms]()
SESSION_KEY = pytest.StashKey["ClaimSession"]()
PLAN_KEY = pytest.StashKey[ClaimPlan]()
RECORD = "cnnconv"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cnnconv", "cnnconv: claims about CNN convergence")
    group.addoption("--cnnconv-scale", default="cpu,paper", metavar="SCALES",
                    help="comma-separated scales to run: cpu, paper, long (default cpu,paper; "
                         "paper tests are marked gpu; long runs P0's CIFAR-10 claims at the "
                         "source's iteration counts and P4 on 5,120 images for 8 epochs, "
                         "on the CPU: hours on 2 cores)")
    group.addoption("--cnnconv-claim", metavar="IDS",
                    help="run only the claims whose ID is, or starts with, one of these "
                         "comma-separated IDs at a dash: P1 selects P1-BS-1 and P1-LR-2 but "
                         "not P3-FP16, which `-k P1` also matches (it matches substrings)")
    group.addoption("--cnnconv-seeds", type=option_number("--cnnconv-seeds", 2, integer=True), metavar="N",
                    help="seeds per arm, at least 2 (default: cpu and long 5, paper 8; a claim may ask "
                         "for more)")
    group.addoption("--cnnconv-alpha", type=option_number("--cnnconv-alpha", 0, 1, low_open=True),
                    default=0.05, metavar="ALPHA",
                    help="significance level of every decision, in (0, 1) (default 0.05)")
    group.addoption("--cnnconv-data", metavar="DIR", default=os.environ.get("CNNCONV_DATA"),
                    help="data directory (default $CNNCONV_DATA, then the cache)")
    group.addoption("--cnnconv-require-data", action="store_true",
                    help="fail, instead of skip, claims whose data set is missing")
    group.addoption("--cnnconv-store", metavar="DIR", type=Path,
                    help=f"run store directory (default $CNNCONV_STORE or {default_store_dir()})")
    group.addoption("--cnnconv-stack", type=option_number("--cnnconv-stack", 0, integer=True),
                    default=0, metavar="N",
                    help="train at most N seeds of an arm as one vectorised computation "
                         "(default: all of them; 1 trains seed by seed)")
    group.addoption("--cnnconv-slow", action="store_true",
                    help="also run the claims marked slow at cpu scale (their runs take "
                         "minutes each on 2 cores)")
    group.addoption("--cnnconv-fresh", action="store_true",
                    help="retrain runs even when the store has them")
    group.addoption("--cnnconv-plan", action="store_true",
                    help="train nothing: print, per selected claim and in total, the runs it "
                         "needs, those in the store, the seed-iterations and FLOPs still to "
                         "train and the estimated time")
    group.addoption("--cnnconv-throughput-table", metavar="PATH", type=Path,
                    default=THROUGHPUT_TABLE,
                    help="the measured throughput --cnnconv-plan prices runs with (default: "
                         "this checkout's benchmarks/results/throughput.json, written by "
                         "`pytest benchmarks -k throughput --benchmark-enable`)")
    group.addoption("--cnnconv-report", metavar="PATH", type=Path,
                    help="write a Markdown report with figures here")
    group.addoption("--cnnconv-json", metavar="PATH", type=Path,
                    help="write every verdict as JSON here (with --cnnconv-plan: the plan)")
    group.addoption("--cnnconv-save-baseline", metavar="NAME",
                    help="save this session's arm metrics as a named baseline")
    group.addoption("--cnnconv-compare", metavar="NAME",
                    help="fail claims whose arms got significantly worse than baseline NAME")
    group.addoption("--cnnconv-compare-margin", type=option_number("--cnnconv-compare-margin", 0),
                    default=0.02, metavar="FRACTION",
                    help="relative margin a metric may worsen by before it counts (default 0.02)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped where none is present")
    config.addinivalue_line(
        "markers", "claim(id, source, sentence, paper): a test of one claim from CLAIMS.md; "
        "the test returns a cnnconv.stats.Decision")
    config.addinivalue_line(
        "markers", "xfail_at_scale(scale, reason, **params): a strict xfail for that scale "
        "only (and only where the test's parameters match params) -- a claim measured not to "
        "replicate there")
    config.addinivalue_line(
        "markers", "slow(seconds): a claim whose cpu-scale runs take about that long on 2 "
        "cores; at cpu scale it runs only with --cnnconv-slow")
    scales = [s.strip() for s in config.getoption("--cnnconv-scale").split(",") if s.strip()]
    unknown = sorted(set(scales) - set(SCALES))
    if unknown:
        raise pytest.UsageError(
            f"--cnnconv-scale: unknown scale {', '.join(unknown)}; choose from {', '.join(SCALES)}")
    compare = config.getoption("--cnnconv-compare")
    session = ClaimSession(config, scales)
    if compare:
        try:
            session.baseline = baseline.load(session.baseline_dir, compare)
        except baseline.BaselineError as error:
            raise pytest.UsageError(str(error)) from None
    if config.getoption("--cnnconv-plan"):
        if os.environ.get("PYTEST_XDIST_WORKER") or getattr(config.option, "numprocesses", None):
            raise pytest.UsageError("--cnnconv-plan runs in one process: drop -n (xdist)")
        session.planner = Planner(session.store, config.getoption("--cnnconv-data"),
                                  config.getoption("--cnnconv-fresh"))
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "cnnconv-session")
    share_with_workers(os.environ)


def share_with_workers(environ: Mapping[str, str]) -> None:
    """In a pytest-xdist worker (``environ`` says how many there are), take a share of
    the machine: of the CPU cores, instead of oversubscribing them, and of the GPU it
    trains on, so that workers on one device each plan stacks within their share."""
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2:
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    if torch.cuda.is_available():
        share_device(workers_on_device(environ.get("PYTEST_XDIST_WORKER"), workers,
                                       torch.cuda.device_count()))


class ClaimSession:
    """Per-process state: options, the store, and (on the controller) the records."""

    def __init__(self, config: pytest.Config, scales: list[str]) -> None:
        self.config = config
        self.scales = scales
        store_dir = config.getoption("--cnnconv-store") or default_store_dir()
        self.store_dir = Path(store_dir)
        self.baseline_dir = self.store_dir.parent / "baselines"
        self.records: list[dict[str, Any]] = []
        self.baseline: dict[str, Any] | None = None
        self.planner: Planner | None = None
        self._store: RunStore | None = None
        self._display: TerminalDisplay | None = None
        self._retrained: set[str] = set()  # keys --cnnconv-fresh has retrained already

    @property
    def store(self) -> RunStore:
        if self._store is None:
            self._store = RunStore(self.store_dir)
        return self._store

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

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
        if reporter is None or self.is_worker or self.config.get_verbosity() < 0:
            yield None
            return
        if self._display is None:
            capture = self.config.pluginmanager.get_plugin("capturemanager")
            self._display = TerminalDisplay(reporter, capture)
        progress = ProgressLine(label, runs, self._display)
        yield progress
        progress.close()

    # -- hooks of the registered session object ---------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect claim records; under xdist they arrive here from the workers. The record
        then leaves the report's properties (JUnit XML gets the verdict's own ones)."""
        if self.is_worker:  # the record travels to the controller with the report
            return
        if self._display is not None and report.when == "call":
            self._display.resume(report.nodeid)
        records = [value for name, value in report.user_properties if name == RECORD]
        report.user_properties = [(n, v) for n, v in report.user_properties if n != RECORD]
        if report.when != "call":
            return
        for value in records:
            record = dict(value)
            if hasattr(report, "wasxfail"):
                record["outcome"] = "xfailed" if report.skipped else "xpassed"
            else:
                record["outcome"] = report.outcome
            self.records.append(record)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.planner is not None:
            terminalreporter.write_sep("=", "cnnconv plan: nothing was trained")
            table = ThroughputTable.load(self.config.getoption("--cnnconv-throughput-table"))
            for line in format_plan(self.planner.claims, table):
                terminalreporter.write_line(line)
            return
        if not self.records:
            return
        terminalreporter.write_sep("=", "cnnconv claims")
        terminalreporter.write_line(
            f"{'claim':<16} {'scale':<6} {'data':<13} {'verdict':<13} {'outcome':<8} "
            f"{'effect [CI]':<34} {'p':>9} {'n':>4}")
        for record in sorted(self.records, key=record_order):
            d = record["decision"]
            effect = f"{d['effect']:+.4g} [{d['ci'][0]:+.3g}, {d['ci'][1]:+.3g}]"
            terminalreporter.write_line(
                f"{record['id']:<16} {record['scale'] or '-':<6} {record.get('dataset') or '-':<13} "
                f"{d['verdict']:<13} {record['outcome']:<8} {effect:<34} {d['p_value']:>9.3g} "
                f"{d['n']:>4}")

    def pytest_sessionfinish(self) -> None:
        """Write the verdict JSON (or the plan), the baseline and the report (on the
        controller only)."""
        if self.is_worker:
            return
        config = self.config
        records = sorted(self.records, key=record_order)
        json_path = config.getoption("--cnnconv-json")
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            content: dict[str, Any] = {"created": time.time(), "torch": torch.__version__,
                                       "alpha": config.getoption("--cnnconv-alpha")}
            if self.planner is not None:
                content["plan"] = plan_json(self.planner.claims)
            else:
                content["claims"] = records
            json_path.write_text(json.dumps(content, indent=1))
        if self.planner is not None:  # a plan has no verdicts: keep baselines and reports
            return
        name = config.getoption("--cnnconv-save-baseline")
        if name:
            baseline.save(self.baseline_dir, name, records)
        report_path = config.getoption("--cnnconv-report")
        if report_path and records:
            from cnnconv.report import write_report

            write_report(records, self.store, report_path)


def _number(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (json's fallback for the record)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"a claim's record holds {type(value).__name__} {value!r}, not JSON")


def record_order(record: dict[str, Any]) -> tuple[str, str, str]:
    """Claims sorted by ID, then scale, then data set."""
    return record["id"], record["scale"], record.get("dataset", "")


def worker_device(worker_id: str | None, device_count: int) -> str:
    """The CUDA device for an xdist worker: ``gwN`` -> ``cuda:(N mod count)``."""
    if not worker_id or not worker_id.startswith("gw") or device_count < 2:
        return "cuda"
    return f"cuda:{int(worker_id[2:]) % device_count}"


def workers_on_device(worker_id: str | None, workers: int, device_count: int) -> int:
    """How many of ``workers`` xdist workers train on ``worker_id``'s device (itself
    included): with 3 workers on 2 GPUs, gw0 and gw2 share cuda:0, gw1 has cuda:1."""
    if not worker_id or workers < 2:
        return 1
    mine = worker_device(worker_id, device_count)
    return sum(worker_device(f"gw{n}", device_count) == mine for n in range(workers))


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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A claim test's ID becomes its first parameter (``test_x[P0-PREC-2-cpu-cifar10]``),
    then the scales to run at."""
    claim_id = claim_id_of(metafunc.definition)
    if claim_id is not None:
        metafunc.parametrize("cnnconv_claim", [claim_id], ids=[claim_id], indirect=True)
    if "scale" not in metafunc.fixturenames:
        return
    session = metafunc.config.stash[SESSION_KEY]
    params = [
        pytest.param(name, id=name, marks=[pytest.mark.gpu] if SCALES[name].device == "cuda" else [])
        for name in session.scales
    ]
    metafunc.parametrize("scale", params, indirect=True)


@pytest.fixture(autouse=True)
def cnnconv_claim(request: pytest.FixtureRequest) -> str | None:
    """The claim ID of a claim test (its first parameter, so that the node ID shows it and
    ``-k`` selects by it); None in other tests."""
    return getattr(request, "param", None)


def claim_selected(claim_id: str | None, wanted: list[str]) -> bool:
    """Does ``--cnnconv-claim`` select the claim? An ID or a prefix ending at a dash."""
    return claim_id is not None and any(
        claim_id == prefix or claim_id.startswith(prefix.rstrip("-") + "-") for prefix in wanted)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the claims ``--cnnconv-claim`` names, make each claim's ID a keyword of
    its test, and turn ``xfail_at_scale(scale, reason=...)`` into a strict xfail of that
    scale's item.

    Only the claim's own verdict failure counts as the expected failure (``raises``): a
    missing data set or a crash in a marked claim is still an error. ``strict=False``
    is for a verdict that moves with the machine's load (a wall-clock timing measured
    on a shared CPU): it may then pass without failing the run.
    """
    wanted = [w.strip() for w in (config.getoption("--cnnconv-claim") or "").split(",") if w.strip()]
    if wanted:
        deselected = [item for item in items if not claim_selected(claim_id_of(item), wanted)]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if item not in deselected]
    for item in items:
        claim_id = claim_id_of(item)
        if claim_id is not None:
            item.extra_keyword_matches.add(claim_id)
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec else {}
        for marker in item.iter_markers("xfail_at_scale"):
            wanted = {k: v for k, v in marker.kwargs.items() if k not in ("reason", "strict")}
            if marker.args and marker.args[0] == params.get("scale") and all(
                    params.get(k) == v for k, v in wanted.items()):
                item.add_marker(pytest.mark.xfail(
                    strict=marker.kwargs.get("strict", True), reason=marker.kwargs["reason"],
                    raises=pytest.fail.Exception))


def pytest_runtest_setup(item: pytest.Item) -> None:
    planning = item.config.stash[SESSION_KEY].planner is not None
    if planning and claim_id_of(item) is None:
        pytest.skip("--cnnconv-plan plans the claims and runs no other test")
    slow = item.get_closest_marker("slow")
    callspec = getattr(item, "callspec", None)
    at_cpu = callspec is not None and callspec.params.get("scale") == "cpu"
    if slow is not None and at_cpu and not item.config.getoption("--cnnconv-slow"):
        seconds = slow.kwargs.get("seconds", slow.args[0] if slow.args else "?")
        pytest.skip(f"slow at cpu scale (about {seconds} s of training on 2 cores); "
                    "run it with --cnnconv-slow")
    if claim_id_of(item) is not None and callspec is not None and "scale" in callspec.params:
        scale = SCALES[callspec.params["scale"]]
        if not scale.covers(source_of(item), callspec.params.get("dataset")):
            pytest.skip(f"scale {scale.name} covers {'/'.join(scale.sources)} on "
                        f"{'/'.join(scale.datasets)} only; run this claim at another "
                        "scale (--cnnconv-scale=cpu or paper)")
    gpu = item.get_closest_marker("gpu") is not None
    if gpu and not planning and not torch.cuda.is_available():
        pytest.skip(
            f"needs a CUDA GPU: torch {torch.__version__} sees none here "
            "(torch.cuda.is_available() is False); run `pytest claims -m gpu` on a GPU host"
        )


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> Scale:
    """The scale this test runs at (parametrized: cpu, paper, long)."""
    base = SCALES[request.param]
    seeds = request.config.getoption("--cnnconv-seeds") or base.seeds
    device = base.device
    if device == "cuda" and torch.cuda.is_available():
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        device = worker_device(worker, torch.cuda.device_count())
    return dataclasses.replace(base, device=device, seeds=seeds)


@pytest.fixture
def alpha(request: pytest.FixtureRequest) -> float:
    """The session's significance level (``--cnnconv-alpha``)."""
    return float(request.config.getoption("--cnnconv-alpha"))


@pytest.fixture
def arms(request: pytest.FixtureRequest, scale: Scale) -> Arms:
    """``arms(label=spec, ...)``: each spec trained (or loaded) over the scale's seeds;
    under ``--cnnconv-plan`` looked up and counted instead."""
    session = request.config.stash[SESSION_KEY]
    claim_id = claim_id_of(request.node) or request.node.name
    if session.planner is not None:
        plan = session.planner.claim(claim_id, request.node.nodeid)
        request.node.stash[PLAN_KEY] = plan

        def fetch(specs: list[RunSpec], stack: int | None, label: str) -> list[RunResult]:
            try:
                return session.planner.fetch(
                    plan, specs, stack or request.config.getoption("--cnnconv-stack"))
            except DataError as error:
                if request.config.getoption("--cnnconv-require-data"):
                    raise
                plan.note = f"data set {specs[0].dataset!r} missing: the claim would skip"
                pytest.skip(f"{plan.note} ({error})")
    else:
        def fetch(specs: list[RunSpec], stack: int | None, label: str) -> list[RunResult]:
            return session.fetch(specs, stack, f"{claim_id} {label}")
    factory = Arms(fetch, scale.seeds)
    request.node.stash[ARMS_KEY] = factory
    return factory


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    claim_id = claim_id_of(pyfuncitem)
    if claim_id is None:
        return None
    session = pyfuncitem.config.stash[SESSION_KEY]
    if session.planner is not None:
        return plan_claim(pyfuncitem, session.planner, claim_id)
    decision = call_test(pyfuncitem)
    if not isinstance(decision, stats.Decision):
        raise TypeError(
            f"claim test {pyfuncitem.name} returned {type(decision).__name__}; a claim test "
            "returns a cnnconv.stats.Decision (e.g. `return stats.greater(a, b)`)"
        )
    marker = pyfuncitem.get_closest_marker("claim")
    assert marker is not None
    factory = pyfuncitem.stash.get(ARMS_KEY, None)
    arm_records = [arm_record(arm) for arm in factory.requested] if factory else []
    scale = pyfuncitem.funcargs.get("scale")
    regressions = []
    if session.baseline is not None:
        if pyfuncitem.nodeid not in session.baseline["claims"]:
            warnings.warn(pytest.PytestWarning(
                f"{pyfuncitem.nodeid} is not in baseline {session.baseline['name']!r}, so "
                "nothing was compared (a new test, or one whose node ID changed, e.g. since "
                "claim IDs lead it): save the baseline again"), stacklevel=1)
        regressions = baseline.regressions(
            session.baseline, pyfuncitem.nodeid, arm_records,
            pyfuncitem.config.getoption("--cnnconv-compare-margin"))
    record = {
        "nodeid": pyfuncitem.nodeid,
        "id": claim_id,
        "source": source_of(pyfuncitem),
        "sentence": marker.kwargs.get("sentence", ""),
        "paper": marker.kwargs.get("paper", ""),
        "scale": scale.name if isinstance(scale, Scale) else "",
        "dataset": factory.requested[0].spec.dataset if factory and factory.requested else "",
        "decision": decision.as_dict(),
        "arms": arm_records,
        "regressions": [r.as_dict() for r in regressions],
    }
    # plain JSON types: under xdist the record travels through execnet, which serialises
    # only exact built-in types and refuses e.g. numpy.float64 (a float subclass)
    record = json.loads(json.dumps(record, default=_number))
    pyfuncitem.user_properties.append((RECORD, record))
    pyfuncitem.user_properties.extend(junit_properties(record))
    problems = []
    if not decision.supported:
        problems.append(f"{claim_id} {decision.verdict.upper()}\n{decision.explain()}")
    for regression in regressions:
        problems.append(f"regression against baseline: {regression.text}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    return True


def call_test(item: pytest.Function) -> Any:
    """Call a test function with the fixtures it asks for; its return value."""
    return item.obj(**{name: item.funcargs[name] for name in item._fixtureinfo.argnames})


def plan_claim(item: pytest.Function, planner: Planner, claim_id: str) -> bool:
    """Under ``--cnnconv-plan``: run the claim against the planner (its arms counted, its
    decision discarded) and report it as skipped with what it needs."""
    if "arms" not in item._fixtureinfo.argnames:
        plan = planner.claim(claim_id, item.nodeid)
        plan.note = "trains nothing"
    else:
        plan = item.stash[PLAN_KEY]
        try:
            call_test(item)
        except pytest.skip.Exception:
            plan.note = plan.note or "the claim skips itself here"
            raise
    pytest.skip(f"--cnnconv-plan: {len(plan.needed)} runs needed, {len(plan.to_train)} to train")


def junit_properties(record: dict[str, Any]) -> list[tuple[str, object]]:
    """The verdict as JUnit XML properties of the test case (``--junitxml``), so that a CI
    test report shows it without the Markdown report."""
    d = record["decision"]
    return [("claim", record["id"]), ("scale", record["scale"]), ("dataset", record["dataset"]),
            ("verdict", d["verdict"]), ("effect", d["effect"]), ("effect_name", d["effect_name"]),
            ("ci_low", d["ci"][0]), ("ci_high", d["ci"][1]), ("p_value", d["p_value"]),
            ("p_against", d["p_against"]), ("n", d["n"]), ("alpha", d["alpha"])]


def arm_record(arm: Any) -> dict[str, Any]:
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
