"""The pytest plugin end to end, on the synthetic data set (pytester runs inner sessions)."""

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
import torch

from cnnconv.harness.store import RunStore

CLAIMS_DIR = Path(__file__).resolve().parent.parent / "claims"

CLAIMS = '''
import os
import pytest
from cnnconv import stats
from cnnconv.engine.spec import RunSpec

def spec(lr, scale):
    return RunSpec(model="lenet5", dataset="synthetic", precision="fp32", batch_size=32,
                   iterations=40, lr=lr, device=scale.device)

LR = float(os.environ.get("CLAIM_LR", "0.05"))

@pytest.mark.claim("T-LEARN", source="T", sentence="Training lowers the loss.", paper="yes")
def test_training_beats_a_frozen_model(arms, scale, alpha):
    trained, frozen = arms(trained=spec(LR, scale), frozen=spec(0.0, scale))
    return stats.less(trained.window_mean(30, 40), frozen.window_mean(30, 40), alpha=alpha)

@pytest.mark.claim("T-WRONG", source="T", sentence="A frozen model beats training.")
def test_the_opposite_is_refuted(arms, scale):
    trained, frozen = arms(trained=spec(LR, scale), frozen=spec(0.0, scale))
    return stats.less(frozen.window_mean(30, 40), trained.window_mean(30, 40))

@pytest.mark.xfail_at_scale("cpu", reason="measured: refuted at cpu scale")
@pytest.mark.claim("T-XFAIL", source="T", sentence="Known not to replicate.")
def test_known_not_to_replicate(arms, scale):
    trained, frozen = arms(trained=spec(LR, scale), frozen=spec(0.0, scale))
    return stats.greater(trained.window_mean(30, 40), frozen.window_mean(30, 40))
'''


@pytest.fixture
def claims_run(pytester, tmp_path):
    pytester.makepyfile(test_claims=CLAIMS)

    def run(*args, **env):
        for name, value in env.items():
            pytester._monkeypatch.setenv(name, value)
        return pytester.runpytest_inprocess(f"--cnnconv-store={tmp_path / 'store'}", "--cnnconv-seeds=3",
                                  "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)
    return run


def test_supported_passes_refuted_fails_xfail_holds_and_gpu_skips(claims_run, tmp_path):
    result = claims_run(f"--cnnconv-json={tmp_path / 'v.json'}",
                        f"--cnnconv-report={tmp_path / 'report' / 'README.md'}", "-rs",
                        f"--junitxml={tmp_path / 'junit.xml'}")
    result.assert_outcomes(passed=1, failed=1, xfailed=1, skipped=3)
    result.stdout.fnmatch_lines([
        # progress, off a terminal: one line per arm trained (two arms, shared by 3 claims)
        "T-LEARN trained: trained 3 seed(s) x 40 it in * s (* seed-it/s), loss *",
        "T-LEARN frozen: trained 3 seed(s) x 40 it in *",
        "*T-WRONG REFUTED*",
        "*refuted: mean difference*n=3*",
        "*cnnconv claims*",
        "T-LEARN*cpu*supported*passed*",
        "*needs a CUDA GPU*pytest claims -m gpu*",
    ])
    assert result.stdout.str().count(": trained 3 seed(s)") == 2
    verdicts = json.loads((tmp_path / "v.json").read_text())["claims"]
    assert {(v["id"], v["decision"]["verdict"], v["outcome"]) for v in verdicts} == {
        ("T-LEARN", "supported", "passed"), ("T-WRONG", "refuted", "failed"),
        ("T-XFAIL", "refuted", "xfailed")}
    report = (tmp_path / "report" / "README.md").read_text()
    assert "T-LEARN" in report and "figures/t-learn-cpu-scale-synthetic.png" in report
    assert (tmp_path / "report" / "figures" / "t-learn-cpu-scale-synthetic.png").stat().st_size > 10_000
    assert all(v["dataset"] == "synthetic" for v in verdicts)
    learn = next(v for v in verdicts if v["id"] == "T-LEARN")
    assert learn["arms"][0]["windows"] == [[30, 40]] and len(learn["arms"][0]["keys"]) == 3
    # JUnit XML: each verdict as properties of its test case, the whole record not dumped
    cases = {case.get("name"): case for case in
             ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    properties = {name: {p.get("name"): p.get("value") for p in case.iter("property")}
                  for name, case in cases.items()}
    learned = properties["test_training_beats_a_frozen_model[T-LEARN-cpu]"]
    decision = learn["decision"]
    assert learned["claim"] == "T-LEARN" and learned["verdict"] == "supported"
    assert learned["n"] == "3" and learned["scale"] == "cpu" and learned["dataset"] == "synthetic"
    assert float(learned["p_value"]) == pytest.approx(decision["p_value"])
    assert float(learned["p_value"]) < 0.05
    assert float(learned["ci_low"]) < float(learned["effect"]) < float(learned["ci_high"])
    assert float(learned["effect"]) == pytest.approx(decision["effect"])
    assert properties["test_the_opposite_is_refuted[T-WRONG-cpu]"]["verdict"] == "refuted"
    assert not any("cnnconv" in props for props in properties.values())


def test_second_session_uses_the_store(claims_run, tmp_path):
    quiet = claims_run("--cnnconv-scale=cpu", "-q")
    assert "trained 3 seed(s)" not in quiet.stdout.str()  # -q: no progress
    computed = (tmp_path / "store" / "computed.jsonl").read_text().splitlines()
    assert len(computed) == 6  # two arms x three seeds, shared by all three claims
    claims_run("--cnnconv-scale=cpu").assert_outcomes(passed=1, failed=1, xfailed=1)
    assert (tmp_path / "store" / "computed.jsonl").read_text().splitlines() == computed


def test_baseline_comparison_catches_a_regression(claims_run, tmp_path):
    claims_run("--cnnconv-scale=cpu", "--cnnconv-save-baseline=good")
    assert (tmp_path / "baselines" / "good.json").exists()
    same = claims_run("--cnnconv-scale=cpu", "--cnnconv-compare=good", "-k", "LEARN or beats")
    same.assert_outcomes(passed=1)
    worse = claims_run("--cnnconv-scale=cpu", "--cnnconv-compare=good", "-k", "beats",
                       CLAIM_LR="0.002")
    worse.assert_outcomes(failed=1)
    worse.stdout.fnmatch_lines(["*regression against baseline: trained loss[[]30:40[]]: supported*"])
    # a plan leaves baselines alone; a test the baseline lacks is compared with nothing, and said so
    claims_run("--cnnconv-scale=cpu", "--cnnconv-plan", "--cnnconv-save-baseline=good")
    assert json.loads((tmp_path / "baselines" / "good.json").read_text())["claims"]
    claims_run("--cnnconv-scale=cpu", "--cnnconv-save-baseline=part", "-k", "LEARN")
    new = claims_run("--cnnconv-scale=cpu", "--cnnconv-compare=part", "-k", "WRONG")
    new.stdout.fnmatch_lines(["*T-WRONG-cpu[]] is not in baseline 'part', so nothing was compared*"])


SEQUENTIAL = '''
import numpy as np
import pytest
from cnnconv import stats
from cnnconv.engine.spec import RunSpec

# One number per seed, fixed by the seed: the claim "mean > 0" is undecided at 5 and 8
# seeds (p 0.17, 0.054) and supported at 12 (p 0.0034) at the cpu looks' levels.
VALUES = np.r_[1.0, 2.0, 3.0, -2.5, 1.5, 0.5, 2.0, 1.0, 3.0, 2.0, 1.0, 2.5, 0, 0, 0, 0]

def spec(scale, lr):
    return RunSpec(model="lenet5", dataset="synthetic", precision="fp32", batch_size=32,
                   iterations=3, lr=lr, device=scale.device)

def values(arm):
    return VALUES[[run.spec.seed for run in arm.runs]]

@pytest.mark.claim("T-LATE")
def test_late(arms, scale, alpha):
    (a,) = arms(a=spec(scale, 0.05))
    return stats.greater(values(a), 0.0, alpha=alpha)

@pytest.mark.claim("T-NEVER")
def test_never(arms, scale, alpha):
    (b,) = arms(b=spec(scale, 0.01))
    return stats.greater(np.tile([1.0, -1.0], 8)[:b.n], 0.0, alpha=alpha)

@pytest.mark.claim("T-MIN")
def test_needs_ten(arms, scale, alpha):
    (c,) = arms(seeds=10, c=spec(scale, 0.02))
    return stats.greater(values(c), 0.0, alpha=alpha)

@pytest.mark.claim("T-DEAF")
def test_deaf(arms, scale):
    (a,) = arms(a=spec(scale, 0.05))
    return stats.greater(values(a), 0.0)
'''


def test_a_claim_is_decided_at_the_first_look_that_decides_it(pytester, tmp_path):
    """Sequential by default: T-LATE is supported at the third look (12 seeds), each look
    training only its new seeds; T-NEVER stays undecided to the cap; a claim that ignores
    the look's level is an error that says so. The look shows in the progress lines, the
    table, the JSON and the JUnit properties."""
    from cnnconv.stats import Design

    pytester.makepyfile(test_sequential=SEQUENTIAL)
    store = tmp_path / "store"
    result = pytester.runpytest_inprocess(
        f"--cnnconv-store={store}", "--cnnconv-scale=cpu", f"--cnnconv-json={tmp_path / 'v.json'}",
        f"--junitxml={tmp_path / 'junit.xml'}", "-W", "ignore::pytest.PytestAssertRewriteWarning",
        "-k", "not MIN")
    result.assert_outcomes(passed=1, failed=2)
    levels = Design((5, 8, 12, 16)).levels
    result.stdout.fnmatch_lines([
        "T-LATE a (look 1/4): trained 5 seed(s) x 3 it*",
        "T-LATE a (look 2/4): trained 3 seed(s) x 3 it*",
        "T-LATE a (look 3/4): trained 4 seed(s) x 3 it*",
        "T-NEVER b (look 4/4): trained 4 seed(s)*",
        "*look 4 of 4 (16 seeds per arm, level 0.0194, cap 16*",
        "*at look 1 (n=5) was taken at alpha 0.05, not the look's level 0.01985*`alpha=alpha`*",
        "T-LATE * supported * passed * 0.00337 * 0.0185 * 12 of 16",
        "T-NEVER * inconclusive * failed * 0.0194 * 16 of 16",
    ])
    verdicts = {v["id"]: v for v in json.loads((tmp_path / "v.json").read_text())["claims"]}
    late = verdicts["T-LATE"]
    assert late["sequential"] | {"text": ""} == {
        "look": 3, "looks": [5, 8, 12, 16], "n": 12, "boundary": levels[2], "levels": list(levels),
        "cap": 16, "alpha": 0.05, "spending": "pocock", "seeds_needed": None,
        "text": ""}
    assert late["decision"]["alpha"] == levels[2] and len(late["arms"][0]["keys"]) == 12
    journal = (store / "computed.jsonl").read_text().splitlines()
    assert len(journal) == 12 + 16  # each seed trained once, whatever the looks
    properties = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
                  for case in ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    late_properties = properties["test_late[T-LATE-cpu]"]
    assert (late_properties["look"], late_properties["seeds"], late_properties["cap"]) == ("3", "12", "16")
    assert float(late_properties["boundary"]) == pytest.approx(levels[2])
    # --cnnconv-max-seeds caps the looks; --cnnconv-seeds decides at one look, at alpha
    capped = pytester.runpytest_inprocess(
        f"--cnnconv-store={store}", "--cnnconv-scale=cpu", "--cnnconv-max-seeds=8", "-k", "LATE",
        f"--cnnconv-json={tmp_path / 'capped.json'}")
    capped.assert_outcomes(failed=1)
    (record,) = json.loads((tmp_path / "capped.json").read_text())["claims"]
    assert record["sequential"]["looks"] == [5, 8] and record["decision"]["verdict"] == "inconclusive"
    fixed = pytester.runpytest_inprocess(
        f"--cnnconv-store={store}", "--cnnconv-scale=cpu", "--cnnconv-seeds=12", "-k", "LATE",
        f"--cnnconv-json={tmp_path / 'fixed.json'}")
    fixed.assert_outcomes(passed=1)
    (record,) = json.loads((tmp_path / "fixed.json").read_text())["claims"]
    assert record["sequential"]["looks"] == [12] and record["decision"]["alpha"] == 0.05
    assert (store / "computed.jsonl").read_text().splitlines() == journal  # all from the store


def test_seeds_options_shape_the_looks():
    from cnnconv.harness.scales import SCALES

    cpu, paper = SCALES["cpu"], SCALES["paper"]
    assert (cpu.looks, paper.looks, cpu.seeds, paper.seeds) == ((5, 8, 12, 16), (8, 12, 16, 24), 5, 8)
    assert cpu.with_seeds(cap=10).looks == (5, 8, 10) and cpu.with_seeds(cap=5).looks == (5,)
    assert cpu.with_seeds(cap=24).looks == (5, 8, 12, 16, 24) and cpu.with_seeds(cap=3).looks == (3,)
    assert cpu.with_seeds(fixed=7).looks == (7,) and cpu.with_seeds(fixed=7, cap=6).looks == (6,)
    assert cpu.with_seeds() == cpu


def test_a_claim_that_needs_more_seeds_starts_its_looks_there(pytester, tmp_path):
    pytester.makepyfile(test_sequential=SEQUENTIAL)
    result = pytester.runpytest_inprocess(
        f"--cnnconv-store={tmp_path / 'store'}", "--cnnconv-scale=cpu", "-k", "MIN",
        f"--cnnconv-json={tmp_path / 'v.json'}")
    result.assert_outcomes(passed=1)  # p 0.012 at 10 seeds, level 0.0357
    result.stdout.fnmatch_lines(["T-MIN c (look 1/4): trained 10 seed(s)*"])
    (record,) = json.loads((tmp_path / "v.json").read_text())["claims"]
    assert record["sequential"]["looks"] == [10, 12, 16] and record["sequential"]["look"] == 1
    assert len((tmp_path / "store" / "computed.jsonl").read_text().splitlines()) == 10


def test_the_plan_prices_the_first_look_and_the_worst_case(pytester, tmp_path):
    pytester.makepyfile(test_sequential=SEQUENTIAL)
    plan = pytester.runpytest_inprocess(
        f"--cnnconv-store={tmp_path / 'store'}", "--cnnconv-scale=cpu", "--cnnconv-plan",
        "-k", "LATE or NEVER",
        f"--cnnconv-json={tmp_path / 'plan.json'}", f"--cnnconv-throughput-table={tmp_path / 'no.json'}")
    plan.stdout.fnmatch_lines([
        "claim*runs*stored*first*worst*seed-it*FLOPs*first look*worst case*test",
        "T-LATE * 16 * 0 * 5 * 16 * 48 *",
        "total * 32 * 0 * 10 * 32 * 96 *",
    ])
    planned = json.loads((tmp_path / "plan.json").read_text())["plan"]
    runs = [run for claim in planned for run in claim["runs"]]
    assert len(runs) == 32 and sum(run["first_look"] for run in runs) == 10


def test_a_claims_id_names_its_test_and_selects_it(claims_run):
    listed = claims_run("--collect-only", "-q", "-k", "T-LEARN")
    listed.stdout.fnmatch_lines(["test_claims.py::test_training_beats_a_frozen_model[[]T-LEARN-cpu[]]",
                                 "test_claims.py::test_training_beats_a_frozen_model[[]T-LEARN-paper[]]",
                                 "2/6 tests collected (4 deselected)*"])
    by_option = claims_run("--collect-only", "-q", "--cnnconv-claim=T-WRONG,T-X")
    by_option.stdout.fnmatch_lines(["*[[]T-WRONG-cpu[]]", "*[[]T-WRONG-paper[]]",
                                    "2/6 tests collected (4 deselected)*"])  # T-X: no claim


def _collected(pytester, *args: str) -> list[str]:
    """Node IDs pytest collects from this project's claims (no data needed)."""
    result = pytester.runpytest_inprocess(str(CLAIMS_DIR), "--collect-only", "-q",
                                          "-p", "no:cacheprovider", "--cnnconv-scale=cpu", *args)
    return [line for line in result.stdout.lines if "::" in line]


@pytest.mark.parametrize("args,prefix,count", [
    (["-k", "P0-PREC-2"], "P0-PREC-2-", 2),  # CIFAR-10 and Fashion-MNIST
    (["-k", "P0-BS"], "P0-BS-", 8),
    (["-k", "P3"], "P3-", 9),
    (["--cnnconv-claim", "P1"], "P1-", 5),  # `-k P1` would also match P3-FP16
])
def test_the_projects_claims_select_by_id(pytester, args, prefix, count):
    nodes = _collected(pytester, *args)
    assert len(nodes) == count and all(f"[{prefix}" in node for node in nodes), nodes


@pytest.mark.parametrize("option,message", [
    ("--cnnconv-alpha=1.5", "--cnnconv-alpha must be a finite number in (0, 1), got 1.5"),
    ("--cnnconv-alpha=nan", "--cnnconv-alpha must be a finite number in (0, 1), got nan"),
    ("--cnnconv-seeds=1", "--cnnconv-seeds must be an integer >= 2, got 1"),
    ("--cnnconv-seeds=two", "--cnnconv-seeds takes an integer, got 'two'"),
    ("--cnnconv-max-seeds=1", "--cnnconv-max-seeds must be an integer >= 2, got 1"),
    ("--cnnconv-stack=-1", "--cnnconv-stack must be an integer >= 0, got -1"),
    ("--cnnconv-compare-margin=inf", "--cnnconv-compare-margin must be a finite number >= 0"),
])
def test_out_of_range_options_are_usage_errors(pytester, option, message):
    result = pytester.runpytest_inprocess(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_unknown_baseline_and_scale_are_usage_errors(claims_run):
    result = claims_run("--cnnconv-compare=nope")
    result.stderr.fnmatch_lines(["*no baseline 'nope'*save one with --cnnconv-save-baseline=nope*"])
    result = claims_run("--cnnconv-scale=huge")
    result.stderr.fnmatch_lines(["*unknown scale huge; choose from cpu, long, paper*"])


SLOW_AND_PARAMETRIZED = '''
import pytest
from cnnconv import stats
from cnnconv.engine.spec import RunSpec

def spec(lr, scale):
    return RunSpec(model="resnet9", model_options={"width": 4}, dataset="synthetic",
                   precision="fp32", batch_size=32, iterations=30, lr=lr, device=scale.device)

@pytest.mark.slow(seconds=42)
@pytest.mark.claim("T-SLOW")
def test_slow(arms, scale):
    (a,) = arms(a=spec(0.05, scale))
    return stats.exact(a.n, a.n == 3)

@pytest.mark.parametrize("direction", ["right", "wrong"])
@pytest.mark.xfail_at_scale("cpu", direction="wrong", reason="measured: the wrong way round")
@pytest.mark.claim("T-PARAM")
def test_param(arms, scale, direction):
    trained, frozen = arms(trained=spec(0.05, scale), frozen=spec(0.0, scale))
    low, high = (trained, frozen) if direction == "right" else (frozen, trained)
    return stats.less(low.window_mean(20, 30), high.window_mean(20, 30))
'''


def test_slow_claims_need_the_option_and_xfail_matches_parameters(pytester, tmp_path):
    pytester.makepyfile(test_slow=SLOW_AND_PARAMETRIZED)
    common = ["--cnnconv-scale=cpu", f"--cnnconv-store={tmp_path}", "--cnnconv-seeds=3", "-rs"]
    quick = pytester.runpytest_inprocess(*common, "--cnnconv-stack=2")
    quick.assert_outcomes(passed=1, xfailed=1, skipped=1)
    quick.stdout.fnmatch_lines(["*slow at cpu scale (about 42 s of training*--cnnconv-slow*"])
    journal = (tmp_path / "computed.jsonl").read_text().splitlines()
    assert [json.loads(line)["stack"] for line in journal] == [2, 2, 1] * 2  # 3 seeds: 2 + 1
    # one progress line per arm, over its two computations
    assert quick.stdout.str().count("T-PARAM trained: trained 3 seed(s) x 30 it") == 1
    full = pytester.runpytest_inprocess(*common, "--cnnconv-slow")
    full.assert_outcomes(passed=2, xfailed=1)


def test_xfail_at_scale_is_strict_unless_told(pytester):
    pytester.makepyfile('''
        import pytest
        from cnnconv import stats
        @pytest.mark.xfail_at_scale("cpu", reason="measured: refuted")
        @pytest.mark.claim("T-STRICT")
        def test_strict(scale):
            return stats.exact(1.0, True)
        @pytest.mark.xfail_at_scale("cpu", strict=False, reason="measured: a timing")
        @pytest.mark.claim("T-TIMING")
        def test_timing(scale):
            return stats.exact(1.0, True)
    ''')
    result = pytester.runpytest_inprocess("--cnnconv-scale=cpu")
    result.assert_outcomes(failed=1, xpassed=1)
    result.stdout.fnmatch_lines(["*test_strict*", "*XPASS(strict)] measured: refuted*"])


def test_xfail_at_scale_does_not_hide_other_errors(pytester):
    pytester.makepyfile('''
        import pytest
        @pytest.mark.xfail_at_scale("cpu", reason="measured: refuted")
        @pytest.mark.claim("T-CRASH")
        def test_crashes(scale):
            raise RuntimeError("data missing")
    ''')
    result = pytester.runpytest_inprocess("--cnnconv-scale=cpu")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: data missing*"])


def test_a_claim_must_return_a_decision(pytester):
    pytester.makepyfile('''
        import pytest
        @pytest.mark.claim("T-NONE")
        def test_forgot_to_return():
            pass
    ''')
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*returned NoneType; a claim test returns a cnnconv.stats.Decision*"])


def test_missing_data_skips_with_the_fix_or_fails_when_required(pytester, tmp_path, monkeypatch):
    monkeypatch.delenv("CNNCONV_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    pytester.makepyfile('''
        import pytest
        from cnnconv import stats
        from cnnconv.engine.spec import RunSpec
        @pytest.mark.claim("T-DATA")
        def test_needs_cifar(arms):
            (a,) = arms(a=RunSpec(model="lenet5", iterations=5))
            return stats.exact(1, True)
    ''')
    skipped = pytester.runpytest_inprocess("--cnnconv-scale=cpu", f"--cnnconv-store={tmp_path}", "-rs")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*CIFAR-10 not found*cnnconv data fetch cifar10*"])
    failed = pytester.runpytest_inprocess("--cnnconv-scale=cpu", f"--cnnconv-store={tmp_path}",
                                "--cnnconv-require-data")
    failed.assert_outcomes(failed=1)


def test_worker_device_assignment():
    from cnnconv.harness.workers import worker_device, workers_on_device
    assert worker_device(None, 4) == "cuda"
    assert worker_device("gw5", 4) == "cuda:1"
    assert worker_device("gw0", 1) == "cuda"
    assert workers_on_device(None, 0, 1) == 1
    assert workers_on_device("gw1", 4, 1) == 4  # one GPU: all four share it
    assert [workers_on_device(f"gw{n}", 3, 2) for n in range(3)] == [2, 1, 2]
    assert workers_on_device("gw3", 4, 8) == 1


def test_xdist_workers_on_one_gpu_each_plan_within_their_share(monkeypatch):
    """Two workers on a (pretended) single GPU tell the engine they share it; without
    this each would plan its stacks for all of the GPU's free memory."""
    import cnnconv.engine.device as device_mod
    from cnnconv.harness.workers import share_with_workers
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(device_mod, "_processes_per_device", 1)
    threads = torch.get_num_threads()
    try:
        share_with_workers({"PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "2"})
        assert device_mod._processes_per_device == 2
    finally:
        torch.set_num_threads(threads)
    share_with_workers({})  # not a worker: nothing changes
    assert device_mod._processes_per_device == 2


def test_report_smoothing_keeps_ends_honest():
    import numpy as np

    from cnnconv.harness.report import smooth

    curve = np.r_[np.ones(99), 0.0]  # one low last sample
    smoothed = smooth(curve[None], 20)[0]
    assert smoothed.shape == (100,)
    assert smoothed[-1] == pytest.approx(10 / 11)  # the mean of the 11 points in reach
    assert np.allclose(smoothed[:80], 1.0)


PLANNED = '''
import pytest
from cnnconv import stats
from cnnconv.engine.spec import RunSpec

def spec(scale, **changes):
    return RunSpec(model="lenet5", dataset="synthetic", precision="fp32", batch_size=32,
                   iterations=30, lr=0.05, device=scale.device).replace(**changes)

@pytest.mark.claim("T-SHARED")
def test_shared(arms, scale):
    a, b = arms(a=spec(scale), b=spec(scale, lr=0.01))
    return stats.exact(1.0, True)

@pytest.mark.claim("T-ALSO")
def test_also(arms, scale):
    (a,) = arms(a=spec(scale))  # the same runs as T-SHARED's arm a
    return stats.exact(1.0, True)

@pytest.mark.claim("T-KD")
def test_taught(arms, scale):
    teacher = spec(scale, model="resnet9", model_options={"width": 4})
    (student,) = arms(student=spec(scale, teacher=teacher, distill_temperature=4.0))
    return stats.exact(1.0, True)

@pytest.mark.claim("T-EPOCHS")
def test_epochs(arms, scale):
    (a,) = arms(stack=1, seeds=4, long=spec(scale, iterations=None, epochs=0.75))
    return stats.exact(1.0, True)

@pytest.mark.claim("T-NONE")
def test_trains_nothing():
    return stats.exact(1.0, True)
'''


def _journal(store: Path) -> list[str]:
    path = store / "computed.jsonl"
    return [json.loads(line)["key"] for line in path.read_text().splitlines()] if path.exists() else []


def _planned(path: Path) -> dict[str, int]:
    """The runs a plan says are still to train: key -> iterations."""
    return {run["key"]: run["iterations"] for claim in json.loads(path.read_text())["plan"]
            for run in claim["runs"] if not run["stored"]}


def _trained(store: Path, keys: list[str]) -> dict[str, int]:
    runs = RunStore(store)
    return {key: len(runs.load_key(key).losses) for key in keys}


def test_the_plan_is_what_a_real_session_then_trains(pytester, tmp_path):
    """Runs in the store are not planned again; shared arms, distillation teachers, epoch
    lengths and ``stack=1`` are counted; the real session then trains exactly those runs."""
    pytester.makepyfile(test_planned=PLANNED)
    store = tmp_path / "store"
    common = ["--cnnconv-scale=cpu", f"--cnnconv-store={store}", "--cnnconv-seeds=2"]
    pytester.runpytest_inprocess(*common, "--cnnconv-claim=T-SHARED").assert_outcomes(passed=1)
    before = _journal(store)
    assert len(before) == 4  # two arms of two seeds
    plan = pytester.runpytest_inprocess(*common, "--cnnconv-plan",
                                         f"--cnnconv-json={tmp_path / 'plan.json'}",
                                         f"--cnnconv-throughput-table={tmp_path / 'none.json'}")
    plan.assert_outcomes(skipped=5)
    plan.stdout.fnmatch_lines([
        "*cnnconv plan: nothing was trained*",
        "claim*runs*stored*first*worst*seed-it*FLOPs*first look*worst case*test",
        "T-SHARED * 4 * 4 * 0 * 0 * 0 *",
        "T-ALSO * 2 * 2 * 0 * 0 * 0 *",
        "T-KD * 4 * 0 * 4 * 4 * 120 *",  # two students and their two teachers, 30 it each
        "T-EPOCHS * 4 * 0 * 4 * 4 * 192 *",  # 0.75 epochs of 2,048 images at batch 32: 48 it
        "T-NONE * 0 * 0 * 0 * 0 * 0 * (trains nothing)",
        "total * 12 * 4 * 8 * 8 * 312 *",
        "time: no measured throughput for *--benchmark-enable*",
    ])
    assert _journal(store) == before  # the plan trained nothing
    planned = _planned(tmp_path / "plan.json")
    pytester.runpytest_inprocess(*common).assert_outcomes(passed=5)
    trained = _journal(store)[len(before):]
    assert sorted(trained) == sorted(planned)  # the same runs, each trained once
    assert _trained(store, trained) == planned  # of the planned lengths
    # --cnnconv-fresh retrains every arm, but a student's teacher still comes from the store
    fresh = [*common, "--cnnconv-fresh"]
    pytester.runpytest_inprocess(*fresh, "--cnnconv-plan", f"--cnnconv-json={tmp_path / 'fresh.json'}")
    planned = _planned(tmp_path / "fresh.json")
    assert len(planned) == 10  # 4 + 2 students + 4; not the 2 teachers
    done = len(_journal(store))
    pytester.runpytest_inprocess(*fresh).assert_outcomes(passed=5)
    assert sorted(_journal(store)[done:]) == sorted(planned)


def test_the_long_scale_runs_p0_at_the_source_iteration_counts(pytester, cifar_dir, tmp_path):
    """``--cnnconv-scale=long``: P0's CIFAR-10 claims at 8,000 (base) and 5,000 iterations
    on the cpu scale's width-8 network; other sources (but P4) and Fashion-MNIST skip,
    naming the scales that run them."""
    result = pytester.runpytest_inprocess(
        str(CLAIMS_DIR), "-p", "no:cacheprovider", "--cnnconv-scale=long", "-v", "-rs",
        "--cnnconv-claim=P0-PREC-2,P1-LR-2", f"--cnnconv-data={cifar_dir}",
        f"--cnnconv-store={tmp_path / 'store'}", "--cnnconv-plan",
        f"--cnnconv-json={tmp_path / 'plan.json'}")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines([
        "*[[]P0-PREC-2-long-cifar10[]] SKIPPED*", "*[[]P0-PREC-2-long-fashion-mnist[]] SKIPPED*",
        "*[[]P1-LR-2-long[]] SKIPPED*",
        "*--cnnconv-plan: 10 runs needed at the first look, 32 at the last; 10 to train at the "
        "first, 32 in the worst case",
        "SKIPPED [[]2[]] *: scale long covers P0/P4 on cifar10 only; run this claim "
        "at another scale (--cnnconv-scale=cpu or paper)"])
    runs = [run for claim in json.loads((tmp_path / "plan.json").read_text())["plan"]
            for run in claim["runs"]]
    assert sorted(run["iterations"] for run in runs) == [5000] * 16 + [8000] * 16  # to the cap
    assert sorted(run["iterations"] for run in runs if run["first_look"]) == [5000] * 5 + [8000] * 5
    assert all(run["label"].startswith("resnet18(width=8) cifar10 ") for run in runs)


def test_the_plan_of_a_cpu_scale_claim_is_what_it_trains(pytester, cifar_dir, tmp_path):
    """The same on this project's claims with real data: P1-LR-2 at cpu scale (LeNet-5 at
    lr 0.5, 8 epochs of 2,500 images), two seeds."""
    store = tmp_path / "store"

    def session(*args: str) -> pytest.RunResult:
        return pytester.runpytest_inprocess(
            str(CLAIMS_DIR), "-p", "no:cacheprovider", "--cnnconv-scale=cpu",
            "--cnnconv-claim=P1-LR-2", "--cnnconv-seeds=2", f"--cnnconv-store={store}", *args)

    session("--cnnconv-plan", f"--cnnconv-json={tmp_path / 'plan.json'}").assert_outcomes(skipped=1)
    planned = _planned(tmp_path / "plan.json")
    assert len(planned) == 2 and set(planned.values()) == {8 * (2500 // 128)}
    assert _journal(store) == []
    session()
    trained = _journal(store)
    assert sorted(trained) == sorted(planned) and _trained(store, trained) == planned


def test_training_and_planning_are_two_implementations_of_one_runner():
    """The session's hooks and fixtures call a ``ClaimRunner`` and never ask which: both
    runners have its every method, with its parameters."""
    import inspect

    from cnnconv.harness.plan import Planning
    from cnnconv.harness.session import ClaimRunner
    from cnnconv.harness.training import Training

    methods = [name for name, value in vars(ClaimRunner).items()
               if inspect.isfunction(value) and not name.startswith("_")]
    assert {"setup", "arms", "conclude", "skipped", "on_report", "summary", "finish"} <= set(methods)
    for runner in (Training, Planning):
        for name in methods:
            expected = list(inspect.signature(getattr(ClaimRunner, name)).parameters)
            assert list(inspect.signature(getattr(runner, name)).parameters) == expected, (runner, name)
