"""The pytest plugin (entry point ``pytest11: cnnconv``): claims as tests.

A claim test is marked ``@pytest.mark.claim("ID", source=..., sentence=..., paper=...)``
and returns a ``stats.Decision``. The plugin calls it, records the decision and fails the
test unless the verdict is "supported" (the message says refuted or inconclusive, and
why). ``xfail(strict=True)`` marks a claim known not to replicate at a scale.

Tests that take the ``scale`` fixture run once per selected scale: ``cpu`` (real data,
scaled down, minutes on 2 cores) and ``paper`` (the source's protocol, marked ``gpu``).
Tests marked ``gpu`` are skipped where CUDA is absent. Under pytest-xdist each worker
``gwN`` trains on ``cuda:(N mod device_count)``; workers share the run store, whose
per-run locks make each run computed once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cnnconv import stats
from cnnconv.claims import SCALES, Arms, Scale
from cnnconv.data import DataError
from cnnconv.result import RunResult
from cnnconv.spec import RunSpec
from cnnconv.store import RunStore, default_store_dir
from cnnconv.train import train_seeds

ARMS_KEY = pytest.StashKey[Arms]()
SESSION_KEY = pytest.StashKey["ClaimSession"]()
RECORD = "cnnconv"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cnnconv", "cnnconv: claims about CNN convergence")
    group.addoption("--cnnconv-scale", default="cpu,paper", metavar="SCALES",
                    help="comma-separated scales to run: cpu, paper (default both; paper "
                         "tests are marked gpu)")
    group.addoption("--cnnconv-seeds", type=int, metavar="N",
                    help="seeds per arm (default: cpu 5, paper 8; a claim may ask for more)")
    group.addoption("--cnnconv-alpha", type=float, default=0.05, metavar="ALPHA",
                    help="significance level of every decision (default 0.05)")
    group.addoption("--cnnconv-data", metavar="DIR", default=os.environ.get("CNNCONV_DATA"),
                    help="data directory (default $CNNCONV_DATA, then the cache)")
    group.addoption("--cnnconv-require-data", action="store_true",
                    help="fail, instead of skip, claims whose data set is missing")
    group.addoption("--cnnconv-store", metavar="DIR", type=Path,
                    help=f"run store directory (default $CNNCONV_STORE or {default_store_dir()})")
    group.addoption("--cnnconv-stack", type=int, default=0, metavar="N",
                    help="train at most N seeds of an arm as one vectorised computation "
                         "(default: all of them; 1 trains seed by seed)")
    group.addoption("--cnnconv-slow", action="store_true",
                    help="also run the claims marked slow at cpu scale (their runs take "
                         "minutes each on 2 cores)")
    group.addoption("--cnnconv-fresh", action="store_true",
                    help="retrain runs even when the store has them")
    group.addoption("--cnnconv-report", metavar="PATH", type=Path,
                    help="write a Markdown report with figures here")
    group.addoption("--cnnconv-json", metavar="PATH", type=Path,
                    help="write every verdict as JSON here")
    group.addoption("--cnnconv-save-baseline", metavar="NAME",
                    help="save this session's arm metrics as a named baseline")
    group.addoption("--cnnconv-compare", metavar="NAME",
                    help="fail claims whose arms got significantly worse than baseline NAME")
    group.addoption("--cnnconv-compare-margin", type=float, default=0.02, metavar="FRACTION",
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
        session.baseline = load_baseline(session.baseline_dir, compare)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "cnnconv-session")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        # CPU runs: share the cores between workers instead of oversubscribing them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


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
        self._store: RunStore | None = None

    @property
    def store(self) -> RunStore:
        if self._store is None:
            self._store = RunStore(self.store_dir)
        return self._store

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    def fetch(self, specs: list[RunSpec], stack: int | None = None) -> list[RunResult]:
        """Runs from the store, the missing ones trained ``stack`` (default
        ``--cnnconv-stack``) seeds at a time."""
        data_dir = self.config.getoption("--cnnconv-data")
        fresh = self.config.getoption("--cnnconv-fresh")
        size = stack or self.config.getoption("--cnnconv-stack") or len(specs)

        def teacher_weights(teachers: list[RunSpec]) -> list[Any]:
            return [run.weights for run in self.store.get_or_train_many(teachers, compute)]

        def compute(todo: list[RunSpec]) -> list[RunResult]:
            return train_seeds(todo, data_dir=data_dir, teacher_weights=teacher_weights)

        try:
            return [run for start in range(0, len(specs), size)
                    for run in self.store.get_or_train_many(specs[start:start + size], compute, fresh)]
        except DataError as error:
            if self.config.getoption("--cnnconv-require-data"):
                raise
            pytest.skip(f"data set {specs[0].dataset!r} not available: {error}")


    # -- hooks of the registered session object ---------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect claim records; under xdist they arrive here from the workers."""
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name != RECORD:
                continue
            record = dict(value)
            if hasattr(report, "wasxfail"):
                record["outcome"] = "xfailed" if report.skipped else "xpassed"
            else:
                record["outcome"] = report.outcome
            self.records.append(record)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
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
        """Write the verdict JSON, the baseline and the report (on the controller only)."""
        if self.is_worker:
            return
        config = self.config
        records = sorted(self.records, key=record_order)
        json_path = config.getoption("--cnnconv-json")
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({
                "created": time.time(), "torch": torch.__version__,
                "alpha": config.getoption("--cnnconv-alpha"), "claims": records,
            }, indent=1))
        name = config.getoption("--cnnconv-save-baseline")
        if name:
            save_baseline(self.baseline_dir, name, records)
        report_path = config.getoption("--cnnconv-report")
        if report_path and records:
            from cnnconv.report import write_report

            write_report(records, self.store, report_path)


def record_order(record: dict[str, Any]) -> tuple[str, str, str]:
    """Claims sorted by ID, then scale, then data set."""
    return record["id"], record["scale"], record.get("dataset", "")


def worker_device(worker_id: str | None, device_count: int) -> str:
    """The CUDA device for an xdist worker: ``gwN`` -> ``cuda:(N mod count)``."""
    if not worker_id or not worker_id.startswith("gw") or device_count < 2:
        return "cuda"
    return f"cuda:{int(worker_id[2:]) % device_count}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scale" not in metafunc.fixturenames:
        return
    session = metafunc.config.stash[SESSION_KEY]
    params = [
        pytest.param(name, id=name, marks=[pytest.mark.gpu] if SCALES[name].device == "cuda" else [])
        for name in session.scales
    ]
    metafunc.parametrize("scale", params, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Turn ``xfail_at_scale(scale, reason=...)`` into a strict xfail of that scale's item.

    Only the claim's own verdict failure counts as the expected failure (``raises``): a
    missing data set or a crash in a marked claim is still an error. ``strict=False``
    is for a verdict that moves with the machine's load (a wall-clock timing measured
    on a shared CPU): it may then pass without failing the run.
    """
    for item in items:
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
    slow = item.get_closest_marker("slow")
    callspec = getattr(item, "callspec", None)
    at_cpu = callspec is not None and callspec.params.get("scale") == "cpu"
    if slow is not None and at_cpu and not item.config.getoption("--cnnconv-slow"):
        seconds = slow.kwargs.get("seconds", slow.args[0] if slow.args else "?")
        pytest.skip(f"slow at cpu scale (about {seconds} s of training on 2 cores); "
                    "run it with --cnnconv-slow")
    if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
        pytest.skip(
            f"needs a CUDA GPU: torch {torch.__version__} sees none here "
            "(torch.cuda.is_available() is False); run `pytest claims -m gpu` on a GPU host"
        )


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> Scale:
    """The scale this test runs at (parametrized: cpu, paper)."""
    base = SCALES[request.param]
    seeds = request.config.getoption("--cnnconv-seeds") or base.seeds
    device = base.device
    if device == "cuda":
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        device = worker_device(worker, torch.cuda.device_count())
    return Scale(base.name, device, seeds)


@pytest.fixture
def alpha(request: pytest.FixtureRequest) -> float:
    """The session's significance level (``--cnnconv-alpha``)."""
    return float(request.config.getoption("--cnnconv-alpha"))


@pytest.fixture
def arms(request: pytest.FixtureRequest, scale: Scale) -> Arms:
    """``arms(label=spec, ...)``: each spec trained (or loaded) over the scale's seeds."""
    session = request.config.stash[SESSION_KEY]
    factory = Arms(session.fetch, scale.seeds)
    request.node.stash[ARMS_KEY] = factory
    return factory


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    marker = pyfuncitem.get_closest_marker("claim")
    if marker is None:
        return None
    claim_id = marker.args[0] if marker.args else marker.kwargs.get("id")
    if not claim_id:
        raise pytest.UsageError(f"{pyfuncitem.nodeid}: @pytest.mark.claim needs the claim ID")
    names = pyfuncitem._fixtureinfo.argnames
    decision = pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names})
    if not isinstance(decision, stats.Decision):
        raise TypeError(
            f"claim test {pyfuncitem.name} returned {type(decision).__name__}; a claim test "
            "returns a cnnconv.stats.Decision (e.g. `return stats.greater(a, b)`)"
        )
    session = pyfuncitem.config.stash[SESSION_KEY]
    factory = pyfuncitem.stash.get(ARMS_KEY, None)
    arm_records = [arm_record(arm) for arm in factory.requested] if factory else []
    scale = pyfuncitem.funcargs.get("scale")
    regressions = compare_to_baseline(session, pyfuncitem.nodeid, arm_records)
    record = {
        "nodeid": pyfuncitem.nodeid,
        "id": claim_id,
        "source": marker.kwargs.get("source", claim_id.split("-")[0]),
        "sentence": marker.kwargs.get("sentence", ""),
        "paper": marker.kwargs.get("paper", ""),
        "scale": scale.name if isinstance(scale, Scale) else "",
        "dataset": factory.requested[0].spec.dataset if factory and factory.requested else "",
        "decision": decision.as_dict(),
        "arms": arm_records,
        "regressions": [r.as_dict() for r in regressions],
    }
    pyfuncitem.user_properties.append((RECORD, record))
    problems = []
    if not decision.supported:
        problems.append(f"{claim_id} {decision.verdict.upper()}\n{decision.explain()}")
    for regression in regressions:
        problems.append(f"regression against baseline: {regression.text}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    return True


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


def compare_to_baseline(
    session: ClaimSession, nodeid: str, arm_records: list[dict[str, Any]]
) -> list[stats.Decision]:
    """Significant worsening beyond the margin of any arm metric, against the baseline."""
    if not session.baseline:
        return []
    margin = session.config.getoption("--cnnconv-compare-margin")
    saved = session.baseline["claims"].get(nodeid, {})
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


def load_baseline(directory: Path, name: str) -> dict[str, Any]:
    path = directory / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in directory.glob("*.json")) if directory.exists() else []
        raise pytest.UsageError(
            f"--cnnconv-compare: no baseline {name!r} in {directory} (known: "
            f"{', '.join(known) or 'none'}); save one with --cnnconv-save-baseline={name}"
        )
    return json.loads(path.read_text())


def save_baseline(directory: Path, name: str, records: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    claims = {
        record["nodeid"]: {arm["label"]: {"spec": arm["spec"], "metrics": arm["metrics"]}
                           for arm in record["arms"]}
        for record in records if record.get("arms")
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"name": name, "created": time.time(), "claims": claims}, indent=1))
    return path


