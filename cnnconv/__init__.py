"""cnnconv: does this CNN training claim hold on my stack? Claims as pytest tests.

Four subpackages, each a layer that imports only the ones below it:

- ``engine``: training -- a ``RunSpec`` in, a ``RunResult`` out, N seeds as one computation
- ``stats``: per-run summaries and decisions across seeds, on scipy (``from cnnconv import
  stats``)
- ``harness``: from a claim test to its runs and its verdict -- arms, the run store, the
  plan, records, baselines, the report
- ``tools``: for a machine's operator -- ``doctor``, GEMM timings, ``./dev gpu``

and two faces: ``plugin`` (pytest's entry point) and ``cli`` (the ``cnnconv`` command).
"""

__version__ = "0.1.0"
