"""Tools for whoever runs cnnconv on a machine: ``doctor`` (does this machine compute what
cnnconv says?), ``gemm`` (GEMM throughput per dtype) and ``campaign`` (``./dev gpu``, the
resumable bring-up of a GPU runner)."""
