"""The pytest plugin (entry point ``pytest11: cnnconv``): claims as tests.

A claim test is marked ``@pytest.mark.claim("ID", source=..., sentence=..., paper=...)``
and returns a ``stats.Decision``. The plugin calls it at the looks of its scale (5, 8, 12
and 16 seeds per arm at cpu scale; ``stats.Design``), with its arms extended to the look's
seeds and ``alpha`` set to the look's level, until the verdict is decided; and hands the
decision to the session's runner (``harness.session``), which records it and fails the
test unless the verdict is "supported" (the message says refuted or inconclusive, at
which look, and why) -- or, under ``--cnnconv-plan``, counts what the claim would train
at its first look and in the worst case, and skips it. ``xfail_at_scale``
marks a claim known not to replicate at a scale, as a strict xfail.

Tests that take the ``scale`` fixture run once per selected scale: ``cpu`` (real data,
scaled down, minutes on 2 cores), ``paper`` (the source's protocol, marked ``gpu``) and,
when asked for, ``long`` (P0 and P4 at hours on a CPU; claims a scale does not cover skip).
Tests marked ``gpu`` are skipped where CUDA is absent. Under pytest-xdist each worker
``gwN`` trains on ``cuda:(N mod device_count)`` and plans its stacks within its share of
that device's memory; workers share the run store, whose per-run locks make each run
computed once.

A claim's ID is part of its node ID (``test_x[P0-PREC-2-cpu-cifar10]``) and a keyword,
so ``-k P0-PREC-2`` selects it.

Installing cnnconv costs a pytest session without claims nothing: this module imports
neither torch, scipy nor matplotlib (a test holds it to that). They load when a claim
test is set up, through the runner -- or, in a pytest-xdist worker, at configure time,
where the worker takes its share of the machine's cores and GPU memory for every test.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cnnconv.engine.validation import option_number
from cnnconv.harness.markers import (
    claim_id_of,
    claim_selected,
    expected_failures,
    listed,
    params_of,
    source_of,
)
from cnnconv.harness.paths import THROUGHPUT_TABLE, default_store_dir
from cnnconv.harness.scales import SCALES, Scale
from cnnconv.harness.session import ClaimRunner, ClaimSession

if TYPE_CHECKING:  # imports torch and scipy: for the annotations only
    from cnnconv.harness.arms import Arms
    from cnnconv.stats import Decision, SequentialDecision

SESSION = pytest.StashKey[ClaimSession]()


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
                    help="decide every claim at one look of N seeds per arm, at least 2 (default: "
                         "sequentially, at looks of 5, 8, 12 and 16 seeds at cpu and long scale, "
                         "8, 12, 16 and 24 at paper scale, until the verdict is decided; a claim "
                         "may ask for more)")
    group.addoption("--cnnconv-max-seeds", type=option_number("--cnnconv-max-seeds", 2, integer=True),
                    metavar="N",
                    help="the most seeds per arm a claim trains: the looks below N, then N "
                         "(default: the scale's last look; a claim that asks its arms for "
                         "more, arms(seeds=M), starts at M)")
    group.addoption("--cnnconv-alpha", type=option_number("--cnnconv-alpha", 0, 1, low_open=True),
                    default=0.05, metavar="ALPHA",
                    help="significance level of every decision, in (0, 1) (default 0.05)")
    group.addoption("--cnnconv-data", metavar="DIR", default=os.environ.get("CNNCONV_DATA"),
                    help="data directory (default $CNNCONV_DATA, then the cache)")
    group.addoption("--cnnconv-require-data", action="store_true",
                    help="fail, instead of skip, claims whose data set is missing")
    group.addoption("--cnnconv-source", metavar="SOURCES",
                    help="run only the claims of these comma-separated sources, as their "
                         "claim markers name them (P0, P1, P2, P3, P4, GEMM)")
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
                    help="the measured throughput --cnnconv-plan prices runs with, relative to "
                         f"the project's root (default {THROUGHPUT_TABLE}, written by "
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


def training(session: ClaimSession) -> ClaimRunner:
    """The runner of an ordinary session: claims trained and recorded."""
    from cnnconv.harness.training import Training  # torch and scipy: on first need only

    return Training(session)


def planning(session: ClaimSession) -> ClaimRunner:
    """The runner of ``--cnnconv-plan``: claims counted, nothing trained."""
    from cnnconv.harness.plan import Planning  # torch: on first need only

    return Planning(session)


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
    scales = listed(config.getoption("--cnnconv-scale"))
    unknown = sorted(set(scales) - set(SCALES))
    if unknown:
        raise pytest.UsageError(
            f"--cnnconv-scale: unknown scale {', '.join(unknown)}; choose from {', '.join(SCALES)}")
    plan = config.getoption("--cnnconv-plan")
    if plan and (os.environ.get("PYTEST_XDIST_WORKER") or getattr(config.option, "numprocesses", None)):
        raise pytest.UsageError("--cnnconv-plan runs in one process: drop -n (xdist)")
    session = ClaimSession(config, scales, planning if plan else training)
    if plan:  # a plan prints its table, and skips the tests that are not claims, in any case
        session.start()
    compare = config.getoption("--cnnconv-compare")
    if compare:
        from cnnconv.harness import baselines  # only for a comparison: it loads scipy

        try:
            session.baseline = baselines.load(session.baseline_dir, compare)
        except baselines.BaselineError as error:
            raise pytest.UsageError(str(error)) from None
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "cnnconv-session")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # (torch is imported in xdist workers only)
        from cnnconv.harness.workers import share_with_workers

        share_with_workers(os.environ)


def session_of(config: pytest.Config) -> ClaimSession:
    return config.stash[SESSION]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A claim test's ID becomes its first parameter (``test_x[P0-PREC-2-cpu-cifar10]``),
    then the scales to run at."""
    claim_id = claim_id_of(metafunc.definition)
    if claim_id is not None:
        metafunc.parametrize("cnnconv_claim", [claim_id], ids=[claim_id], indirect=True)
    if "scale" not in metafunc.fixturenames:
        return
    params = [
        pytest.param(name, id=name, marks=[pytest.mark.gpu] if SCALES[name].device == "cuda" else [])
        for name in session_of(metafunc.config).scales
    ]
    metafunc.parametrize("scale", params, indirect=True)


@pytest.fixture(autouse=True)
def cnnconv_claim(request: pytest.FixtureRequest) -> str | None:
    """The claim ID of a claim test (its first parameter, so that the node ID shows it and
    ``-k`` selects by it); None in other tests."""
    return getattr(request, "param", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the claims ``--cnnconv-claim`` and ``--cnnconv-source`` select, make each
    claim's ID a keyword of its test, and turn ``xfail_at_scale`` markers into strict
    xfails of the matching items."""
    ids, sources = listed(config.getoption("--cnnconv-claim")), listed(config.getoption("--cnnconv-source"))

    def kept(item: pytest.Item) -> bool:
        claim_id = claim_id_of(item)
        if claim_id is None:
            return not (ids or sources)
        return (not ids or claim_selected(claim_id, ids)) and (not sources or source_of(item) in sources)

    deselected = [item for item in items if not kept(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]
    for item in items:
        claim_id = claim_id_of(item)
        if claim_id is not None:
            item.extra_keyword_matches.add(claim_id)
        for xfail in expected_failures(item):
            item.add_marker(xfail)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a slow claim at cpu scale without ``--cnnconv-slow``, and a claim its scale does
    not cover; then the runner decides (no CUDA for a gpu test; under a plan, no test but
    claims). A test that is neither a claim nor marked gpu builds no runner: a session
    without claims imports nothing heavy."""
    params = params_of(item)
    slow = item.get_closest_marker("slow")
    if slow is not None and params.get("scale") == "cpu" and not item.config.getoption("--cnnconv-slow"):
        seconds = slow.kwargs.get("seconds", slow.args[0] if slow.args else "?")
        pytest.skip(f"slow at cpu scale (about {seconds} s of training on 2 cores); "
                    "run it with --cnnconv-slow")
    claim = claim_id_of(item) is not None
    if claim and "scale" in params:
        scale = SCALES[params["scale"]]
        if not scale.covers(source_of(item), params.get("dataset")):
            pytest.skip(f"scale {scale.name} covers {'/'.join(scale.sources)} on "
                        f"{'/'.join(scale.datasets)} only; run this claim at another "
                        "scale (--cnnconv-scale=cpu or paper)")
    session = session_of(item.config)
    if claim or item.get_closest_marker("gpu") is not None or session.has_runner:
        session.runner.setup(item)


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> Scale:
    """The scale this test runs at (parametrized: cpu, paper, long), on this process's
    device and with the session's seeds."""
    from cnnconv.harness.workers import claim_device  # torch: a claim is being set up

    base = SCALES[request.param].with_seeds(request.config.getoption("--cnnconv-seeds"),
                                            request.config.getoption("--cnnconv-max-seeds"))
    return dataclasses.replace(base, device=claim_device(base.device))


@pytest.fixture
def alpha(request: pytest.FixtureRequest) -> float:
    """The session's significance level (``--cnnconv-alpha``)."""
    return float(request.config.getoption("--cnnconv-alpha"))


@pytest.fixture
def arms(request: pytest.FixtureRequest, scale: Scale) -> Arms:
    """``arms(label=spec, ...)``: each spec over the scale's seeds, from the session's
    runner (trained or loaded; under ``--cnnconv-plan`` looked up and counted)."""
    return session_of(request.config).runner.arms(request.node, scale)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Decide a claim at its looks and hand the decision to the runner, which records it."""
    if claim_id_of(pyfuncitem) is None:
        return None
    runner = session_of(pyfuncitem.config).runner
    try:
        decided = decide_claim(pyfuncitem, runner)
    except pytest.skip.Exception:
        runner.skipped(pyfuncitem)
        raise
    runner.conclude(pyfuncitem, decided)
    return True


def decide_claim(item: pytest.Function, runner: ClaimRunner) -> SequentialDecision:
    """The claim decided at the looks of its scale (``stats.Design``): the test body runs
    again at each look with its arms extended to the look's seeds and ``alpha`` set to the
    look's level, until the verdict is decided. A claim without arms has one look, at
    alpha; one that asks for a minimum of seeds starts there."""
    from cnnconv.stats import Design  # loaded already: the claim test imports stats

    alpha = float(item.config.getoption("--cnnconv-alpha"))
    arms, scale = item.funcargs.get("arms"), item.funcargs.get("scale")
    design = Design(scale.looks if arms is not None else (1,), alpha)

    def decide_at(seeds: int, level: float) -> Decision:
        if arms is not None:
            look = design.looks.index(seeds) + 1
            arms.start_look(seeds, f"look {look}/{len(design.looks)}" if len(design.looks) > 1 else "")
        decision = call_claim(item, level)
        if arms is not None and arms.minimum > design.looks[0]:
            raise _MoreSeeds  # its seeds are trained: decide again from there
        return decision

    try:
        return runner.decide(item, design, decide_at)
    except _MoreSeeds:
        design = design.floored(arms.minimum)
        return runner.decide(item, design, decide_at)


class _MoreSeeds(Exception):
    """A claim asked its arms for more seeds than its first look has."""


def call_claim(item: pytest.Function, alpha: float) -> Decision:
    """Call a claim test with the fixtures it asks for (``alpha`` as given); its decision."""
    from cnnconv.stats import Decision  # loaded already: the claim test imports stats

    args = {name: item.funcargs[name] for name in item._fixtureinfo.argnames}
    if "alpha" in args:
        args["alpha"] = alpha
    decision = item.obj(**args)
    if not isinstance(decision, Decision):
        raise TypeError(
            f"claim test {item.name} returned {type(decision).__name__}; a claim test "
            "returns a cnnconv.stats.Decision (e.g. `return stats.greater(a, b)`)"
        )
    return decision
