"""Shared fixtures: where real data is, and a tiny synthetic data set for every code path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch._dynamo  # see below

import cnnconv.harness.plan  # see below
import cnnconv.harness.training  # noqa: F401 (see below)
from cnnconv.engine import datasets as data

# pytester's in-process sessions (tests/test_plugin.py) drop the modules first imported
# inside them. Counting FLOPs (--cnnconv-plan) imports torch._dynamo, which registers
# torch._inductor's test operators once per process: a second import would register them
# again and fail. The plugin imports its runners (and with them cnnconv.stats) on first
# need: first imported inside one session, they would be imported again in the next, and
# a claim test holding the first import's cnnconv.stats would return a Decision of
# another class. Imported here, each is imported once.

pytest_plugins = ["pytester"]

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _cifar_dir(env: str, fallback: Path) -> Path | None:
    for place in (os.environ.get(env), fallback):
        if place and (Path(place) / "cifar-10-batches-py" / "test_batch").exists():
            return Path(place) / "cifar-10-batches-py"
        if place and (Path(place) / "test_batch").exists():
            return Path(place)
    return None


@pytest.fixture(scope="session")
def mini_cifar_dir() -> Path:
    """The exact-pixel CIFAR-10 subset ($CNNCONV_MINI_DATA, or ../shared beside the checkout)."""
    found = _cifar_dir("CNNCONV_MINI_DATA", SHARED / "cifar10-mini")
    if found is None:
        pytest.skip("exact-pixel CIFAR-10 subset not found: set CNNCONV_MINI_DATA to a "
                    "directory holding cifar-10-batches-py/")
    return found


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """Full CIFAR-10 ($CNNCONV_DATA); the tests that need it skip without it."""
    found = _cifar_dir("CNNCONV_DATA", Path("/nonexistent"))
    if found is None:
        pytest.skip("full CIFAR-10 not found: set CNNCONV_DATA to a directory holding "
                    "cifar-10-batches-py/ (`cnnconv data fetch cifar10` downloads it)")
    return found


@pytest.fixture(scope="session")
def claim_sources() -> list[str]:
    """The source each of this project's claim tests names in its marker (collected from
    claims/, not run)."""
    from cnnconv.harness.markers import source_of

    found: list[str] = []

    class Collector:
        def pytest_collection_finish(self, session: pytest.Session) -> None:
            found.extend(source_of(item) for item in session.items)
    pytest.main([str(Path(__file__).resolve().parent.parent / "claims"), "--collect-only", "-q",
                 "-p", "no:cacheprovider", "--cnnconv-scale=paper"], plugins=[Collector()])
    assert found, "collected no claim from claims/"
    return found


@pytest.fixture(scope="session")
def tiny() -> data.Dataset:
    """256 train / 128 test synthetic images: every code path, no files."""
    return data.synthetic(n_train=256, n_test=128)


@pytest.fixture
def one_thread():
    """Pin intra-op threads so that results compare bitwise."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
