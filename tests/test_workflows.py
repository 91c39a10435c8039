"""The GitHub workflows are valid (GitHub's workflow JSON schema, vendored by check-jsonschema)
and do what the README promises."""

import subprocess
import sys
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"


@pytest.mark.parametrize("name", ["claims-gpu.yml", "tests.yml"])
def test_workflow_matches_the_github_schema(name):
    pytest.importorskip("check_jsonschema", reason="pip install check-jsonschema")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         str(WORKFLOWS / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gpu_workflow_runs_the_gpu_claims_and_publishes_the_verdicts():
    text = (WORKFLOWS / "claims-gpu.yml").read_text()
    assert "runs-on: [self-hosted, linux, gpu]" in text
    assert "pytest claims --cnnconv-source=${{ matrix.source }} -m gpu -n" in text
    assert "actions/cache@v4" in text and "CNNCONV_STORE" in text and "CNNCONV_DATA" in text
    assert "GITHUB_STEP_SUMMARY" in text and "actions/upload-artifact@v4" in text


def test_gpu_workflow_checks_the_gpu_first_and_splits_the_claims_by_source(claim_sources):
    """One job per source, each with its own timeout and store; every source the claims'
    markers name has its job; both data sets fetched (the Fashion-MNIST claims error under
    --cnnconv-require-data without it)."""
    text = (WORKFLOWS / "claims-gpu.yml").read_text()
    assert "cnnconv doctor" in text and "needs: self-check" in text
    assert "timeout-minutes: ${{ matrix.timeout }}" in text
    assert "runs-${{ matrix.source }}" in text
    for source in set(claim_sources):
        assert text.count(f"- source: {source}\n") == 1, f"source {source} needs exactly one job"
    assert "data fetch fashion-mnist" in text and "data fetch cifar10" in text


def test_cpu_workflow_runs_the_readme_test_command():
    assert "./dev test" in (WORKFLOWS / "tests.yml").read_text()
