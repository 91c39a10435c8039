"""The harness: from a claim test to its runs, its verdict and where the verdict goes.

- ``scales``: where a claim runs and how big; ``markers``: what a test's cnnconv markers say
- ``session``: the state behind the pytest plugin, and the ``ClaimRunner`` chosen once per
  session -- ``training`` (runs from the store or the engine, decisions recorded) or
  ``plan`` (``--cnnconv-plan``: runs counted and priced, nothing trained)
- ``arms``: the arms a claim asks for; ``store``: the run store, shared between processes
- ``records``: a decision's record and where it goes; ``baselines``: saved and compared;
  ``report``: the Markdown report with figures; ``progress``: the progress line
- ``flops`` and ``throughput``: what a run costs and how fast a device trains it
- ``workers``: pytest-xdist workers' devices and shares; ``paths``: default locations

This file imports nothing: ``scales``, ``markers``, ``session`` and ``paths`` load without
torch, as the plugin needs.
"""
