"""Benchmarks share the tests' data fixtures (real CIFAR-10 from $CNNCONV_DATA)."""

from tests.conftest import cifar_dir  # noqa: F401
