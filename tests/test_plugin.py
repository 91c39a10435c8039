"""The pytest plugin end to end, on the synthetic data set (pytester runs inner sessions)."""

import json

import pytest

CLAIMS = '''
import os
import pytest
from cnnconv import stats
from cnnconv.spec import RunSpec

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
        return pytester.runpytest_subprocess(f"--cnnconv-store={tmp_path / 'store'}", "--cnnconv-seeds=3",
                                  "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)
    return run


def test_supported_passes_refuted_fails_xfail_holds_and_gpu_skips(claims_run, tmp_path):
    result = claims_run(f"--cnnconv-json={tmp_path / 'v.json'}",
                        f"--cnnconv-report={tmp_path / 'report' / 'README.md'}", "-rs")
    result.assert_outcomes(passed=1, failed=1, xfailed=1, skipped=3)
    result.stdout.fnmatch_lines([
        "*T-WRONG REFUTED*",
        "*refuted: mean difference*n=3*",
        "*cnnconv claims*",
        "T-LEARN*cpu*supported*passed*",
        "*needs a CUDA GPU*pytest claims -m gpu*",
    ])
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


def test_second_session_uses_the_store(claims_run, tmp_path):
    claims_run("--cnnconv-scale=cpu")
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


def test_unknown_baseline_and_scale_are_usage_errors(claims_run):
    result = claims_run("--cnnconv-compare=nope")
    result.stderr.fnmatch_lines(["*no baseline 'nope'*save one with --cnnconv-save-baseline=nope*"])
    result = claims_run("--cnnconv-scale=huge")
    result.stderr.fnmatch_lines(["*unknown scale huge; choose from cpu, paper*"])


SLOW_AND_PARAMETRIZED = '''
import pytest
from cnnconv import stats
from cnnconv.spec import RunSpec

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
    quick = pytester.runpytest_subprocess(*common, "--cnnconv-stack=2")
    quick.assert_outcomes(passed=1, xfailed=1, skipped=1)
    quick.stdout.fnmatch_lines(["*slow at cpu scale (about 42 s of training*--cnnconv-slow*"])
    journal = (tmp_path / "computed.jsonl").read_text().splitlines()
    assert [json.loads(line)["stack"] for line in journal] == [2, 2, 1] * 2  # 3 seeds: 2 + 1
    full = pytester.runpytest_subprocess(*common, "--cnnconv-slow")
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
    result = pytester.runpytest_subprocess("--cnnconv-scale=cpu")
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
    result = pytester.runpytest_subprocess("--cnnconv-scale=cpu")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: data missing*"])


def test_a_claim_must_return_a_decision(pytester):
    pytester.makepyfile('''
        import pytest
        @pytest.mark.claim("T-NONE")
        def test_forgot_to_return():
            pass
    ''')
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*returned NoneType; a claim test returns a cnnconv.stats.Decision*"])


def test_missing_data_skips_with_the_fix_or_fails_when_required(pytester, tmp_path, monkeypatch):
    monkeypatch.delenv("CNNCONV_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    pytester.makepyfile('''
        import pytest
        from cnnconv import stats
        from cnnconv.spec import RunSpec
        @pytest.mark.claim("T-DATA")
        def test_needs_cifar(arms):
            (a,) = arms(a=RunSpec(model="lenet5", iterations=5))
            return stats.exact(1, True)
    ''')
    skipped = pytester.runpytest_subprocess("--cnnconv-scale=cpu", f"--cnnconv-store={tmp_path}", "-rs")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*CIFAR-10 not found*cnnconv data fetch cifar10*"])
    failed = pytester.runpytest_subprocess("--cnnconv-scale=cpu", f"--cnnconv-store={tmp_path}",
                                "--cnnconv-require-data")
    failed.assert_outcomes(failed=1)


def test_worker_device_assignment():
    from cnnconv.plugin import worker_device
    assert worker_device(None, 4) == "cuda"
    assert worker_device("gw5", 4) == "cuda:1"
    assert worker_device("gw0", 1) == "cuda"


def test_report_smoothing_keeps_ends_honest():
    import numpy as np

    from cnnconv.report import smooth

    curve = np.r_[np.ones(99), 0.0]  # one low last sample
    smoothed = smooth(curve[None], 20)[0]
    assert smoothed.shape == (100,)
    assert smoothed[-1] == pytest.approx(10 / 11)  # the mean of the 11 points in reach
    assert np.allclose(smoothed[:80], 1.0)
