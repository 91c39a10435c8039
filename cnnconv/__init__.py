"""cnnconv: does this CNN training claim hold on my stack? Claims as pytest tests.

The package is small modules with one job each:

- ``data``: data sets found on disk and a loader that lives on the device
- ``models``: the networks, in a registry by name
- ``precision``: precision modes and CPU emulation of TF32
- ``train``: one run from a frozen spec
- ``store``: the on-disk cache of runs
- ``stats``: per-run summaries and decisions across seeds
- ``claims``: what a claim test asks for (arms of seeds)
- ``plugin``: the pytest plugin; ``report``: the Markdown report; ``cli``: ``cnnconv``
- ``choices``: the one "unknown name; choose one of ..." error
"""

__version__ = "0.1.0"
