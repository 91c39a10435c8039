"""cnnconv: does this CNN training claim hold on my stack? Claims as pytest tests.

The package is small modules with one job each:

- ``data``: data sets found on disk and a loader that lives on the device
- ``models``: the networks, in a registry by name
- ``precision``: precision modes and CPU emulation of TF32
- ``spec``: what a run is and its store key; ``schedule``: its length and learning rates
- ``train``: the training loop; ``seeds``: N seeds as one stacked computation
- ``cuda_graph``: the step replayed as a CUDA graph; ``memory``: how many seeds fit
- ``device``: the device, its settings and the recorded environment; ``result``: a run's output
- ``teacher``: distillation teachers; ``doctor``: the self-check of what the machine computes
- ``campaign``: ``./dev gpu``, the resumable GPU bring-up (self-check, benchmarks, claims)
- ``store``: the on-disk cache of runs
- ``stats``: per-run summaries and decisions across seeds
- ``claims``: what a claim test asks for (arms of seeds)
- ``plugin``: the pytest plugin; ``report``: the Markdown report; ``cli``: ``cnnconv``
- ``choices``: the one "unknown name; choose one of ..." error
"""

__version__ = "0.1.0"
