"""Several pytest-xdist workers share one run store: each run is computed once, every claim
sees the same results, and a worker killed mid-run loses nothing that was finished."""

import json

import pytest

pytest.importorskip("xdist", reason="pip install pytest-xdist")

CONFTEST = '''
import os
import signal
import cnnconv.harness.training as training

real_train_seeds = training.train_seeds

def train_seeds(specs, **kwargs):
    if specs[0].lr == 0.123 and os.environ.get("KILL_WORKER") == "1":
        os.kill(os.getpid(), signal.SIGKILL)  # a worker dies in the middle of a run
    return real_train_seeds(specs, **kwargs)

training.train_seeds = train_seeds
'''

CLAIMS = '''
import dataclasses
import numpy as np
import pytest
from cnnconv import stats
from cnnconv.engine.spec import RunSpec

def spec(lr):
    return RunSpec(model="lenet5", dataset="synthetic", precision="fp32", batch_size=32,
                   iterations=30, lr=lr)

@pytest.mark.claim("X-SHARED")
@pytest.mark.parametrize("n", range(4))
def test_shared_runs(arms, n):
    trained, frozen = arms(trained=spec(0.05), frozen=spec(0.0))
    return stats.less(trained.window_mean(20, 30), frozen.window_mean(20, 30))

@pytest.mark.claim("X-NUMPY")
def test_numpy_numbers_travel(arms):
    (arm,) = arms(trained=spec(0.05))
    decision = stats.exact(arm.n, True)  # with numpy scalars, as scipy's tests give them
    return dataclasses.replace(decision, effect=np.float64(arm.n), p_value=np.float64(0.0),
                               n=np.int64(arm.n))

@pytest.mark.claim("X-KILL")
def test_killed(arms):
    (arm,) = arms(victim=spec(0.123))
    return stats.exact(arm.n, True)
'''


def test_workers_compute_each_shared_run_once_and_survive_a_killed_worker(pytester, tmp_path):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_x=CLAIMS)
    store = tmp_path / "store"
    common = ["-n", "2", "--cnnconv-scale=cpu", f"--cnnconv-store={store}", "--cnnconv-seeds=3",
              f"--cnnconv-json={tmp_path / 'v.json'}", "-p", "no:randomly"]
    pytester._monkeypatch.setenv("KILL_WORKER", "1")
    first = pytester.runpytest_subprocess(*common)
    first.assert_outcomes(passed=5, failed=1)
    first.stdout.fnmatch_lines(["*worker 'gw*' crashed while running*test_killed*"])
    journal = [json.loads(line) for line in (store / "computed.jsonl").read_text().splitlines()]
    assert len(journal) == 6 and len({entry["key"] for entry in journal}) == 6
    assert len({entry["pid"] for entry in journal}) >= 1
    verdicts = json.loads((tmp_path / "v.json").read_text())["claims"]
    shared = {json.dumps(v["decision"]) for v in verdicts if v["id"] == "X-SHARED"}
    assert len(shared) == 1  # every claim saw identical results
    assert not list(store.glob("*.corrupt"))

    pytester._monkeypatch.setenv("KILL_WORKER", "0")
    second = pytester.runpytest_subprocess(*common)
    second.assert_outcomes(passed=6)
    journal = (store / "computed.jsonl").read_text().splitlines()
    assert len(journal) == 9  # only the killed worker's three runs were computed again
