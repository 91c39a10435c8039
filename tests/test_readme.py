"""The README's "Writing a claim" example runs as written, with the claims' own protocols,
on the synthetic data set: at every scale against runs of that scale's lengths (a plan
calls the claim on stand-in runs, so a window a scale's runs do not reach is an error
there), and trained for real on a P0 protocol 200 times shorter than the source's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Appended to the example: the same claim on the synthetic data set (no CIFAR-10 needed).
ON_SYNTHETIC_DATA = '''

@pytest.fixture
def dataset():
    return "synthetic"
'''
# ... and, to train it in seconds, P0's protocol 200 times shorter on a width-4 network
# (40 iterations; the windows scale with it, as they do at every scale).
SHORT = ON_SYNTHETIC_DATA + '''

@pytest.fixture
def p0(scale, dataset):
    from conftest import p0_protocol
    return p0_protocol(scale, dataset, factor=200, width=4)
'''


def readme_claim() -> str:
    """The first Python block of the README's "Writing a claim" section."""
    section = (ROOT / "README.md").read_text().split("## Writing a claim", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def run_claim(pytester: pytest.Pytester, code: str, *args: str) -> pytest.RunResult:
    pytester.makeconftest((ROOT / "claims" / "conftest.py").read_text())
    pytester.makepyfile(test_readme_claim=code)
    return pytester.runpytest_inprocess("--cnnconv-seeds=2", "-p", "no:cacheprovider", *args)


def test_the_readme_claim_runs_against_every_scales_run_lengths(pytester, tmp_path):
    result = run_claim(pytester, readme_claim() + ON_SYNTHETIC_DATA, "--cnnconv-scale=cpu,long,paper",
                       "--cnnconv-plan", f"--cnnconv-store={tmp_path / 'store'}", "-rs",
                       f"--cnnconv-json={tmp_path / 'plan.json'}")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["SKIPPED [[]3[]] *--cnnconv-plan: 4 runs needed, 4 to train"])
    plans = json.loads((tmp_path / "plan.json").read_text())["plan"]
    lengths = {plan["nodeid"].split("-")[-1].rstrip("]"): {run["iterations"] for run in plan["runs"]}
               for plan in plans}
    assert lengths == {"cpu": {400}, "long": {8000}, "paper": {8000}}


def test_the_readme_claim_trains_and_decides(pytester, tmp_path):
    result = run_claim(pytester, readme_claim() + SHORT, "--cnnconv-scale=cpu",
                       f"--cnnconv-store={tmp_path / 'store'}",
                       f"--cnnconv-json={tmp_path / 'verdicts.json'}")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 1, result.stdout.str()
    (record,) = json.loads((tmp_path / "verdicts.json").read_text())["claims"]
    assert record["id"] == "P0-PREC-1" and record["decision"]["n"] == 2
    assert [arm["windows"] for arm in record["arms"]] == [[[1, 7]]] * 2  # 200-1500 / 200
    assert all(len(arm["keys"]) == 2 for arm in record["arms"])


def test_a_window_in_the_sources_iterations_fails_where_runs_are_shorter(pytester, tmp_path):
    """What the README's example did before: ``window_mean(200, 1500)`` names iterations
    a cpu-scale run (400 of them) never reaches."""
    literal = readme_claim().replace("*p0.early", "200, 1500")
    assert literal != readme_claim()
    result = run_claim(pytester, literal + ON_SYNTHETIC_DATA, "--cnnconv-scale=cpu",
                       "--cnnconv-plan", f"--cnnconv-store={tmp_path / 'store'}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*window [[]200, 1500) is outside the curve of 400 points*"])
