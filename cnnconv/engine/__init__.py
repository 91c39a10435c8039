"""The training engine: a ``RunSpec`` in, a ``RunResult`` out, N seeds as one computation.

- ``spec``: what a run is, its validation and its store key; ``result``: what it produced
- ``datasets``: the data sets on disk; ``loader``: batches drawn and augmented on the device
- ``models``: the networks, by name; ``precision``: the precision modes; ``kernels``: the
  rules applied to every product in the dispatcher (TF32 emulation, thin stacked convolutions)
- ``schedule``: a run's length, learning rate per step and evaluation points
- ``train``: the loop; ``stacking``: N seeds as one stacked model; ``optimizer``: their
  fused optimizer and per-seed loss scaling; ``teacher``: distillation
- ``cuda_graph``: the step replayed as a CUDA graph; ``memory``: how many seeds fit;
  ``device``: the device, its settings and the environment recorded with a run
- ``twin``: the rounding yardstick a change of computation is held to
- ``validation``: the errors for unknown names and out-of-range numbers

The engine knows nothing of claims, pytest or statistics; this file imports nothing, so
that ``validation`` (which the pytest plugin reads for its options) loads without torch.
"""
