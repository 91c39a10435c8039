"""A training step captured in a CUDA graph and replayed.

A stacked step of small networks is launch-bound: hundreds of small kernels, each costing
more to launch than to run. A CUDA graph launches them all at once. ``StepGraph`` runs the
first ``WARMUP_STEPS`` steps eagerly on a side stream (capture requires that the step's
allocations and lazy initialisations have happened off the capturing stream), then
captures one step and replays it for the rest of the run, copying each step's inputs into
the tensors the graph reads.

Everything happens under ``torch.cuda.device(device)`` and on one side stream of that
device, created once: a run on ``cuda:1`` must not capture on a stream of the current
device (``cuda:0``), which would record nothing or fail. A capture that fails (an op that
cannot be captured) is reported and the run goes on eagerly, on a device checked to be
usable again.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

WARMUP_STEPS = 3

Step = Callable[..., Sequence[Tensor]]


class StepGraph:
    """``step`` (a function of tensors returning tensors, with fixed shapes and no host
    synchronisation) as a replayed CUDA graph on ``device``; call it like ``step``.

    ``captured`` says whether the graph is in use; ``failure`` holds why capture failed.
    """

    def __init__(self, step: Step, device: torch.device, warmup: int = WARMUP_STEPS) -> None:
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}")
        self.step, self.device, self.warmup = step, device, warmup
        with torch.cuda.device(device):
            self.stream = torch.cuda.Stream(device)
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: list[Tensor | None] = []
        self.outputs: Sequence[Tensor] = ()
        self.failure: str | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, *inputs: Tensor | None) -> Sequence[Tensor]:
        self.calls += 1
        if self.failure is not None:
            return self.step(*inputs)
        if self.calls <= self.warmup:
            return self._on_side_stream(inputs)
        if self.graph is None:
            self._capture(inputs)
            if self.graph is None:
                return self.step(*inputs)
        for target, value in zip(self.inputs, inputs):
            if target is not None:
                target.copy_(value)
        self.graph.replay()
        return self.outputs

    def _on_side_stream(self, inputs: Sequence[Tensor | None]) -> Sequence[Tensor]:
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            outputs = self.step(*inputs)
        current.wait_stream(self.stream)
        return outputs

    def _capture(self, example: Sequence[Tensor | None]) -> None:
        """Capture one step on the side stream. Capturing records the kernels without
        running them, so the step that triggers it is then replayed like the rest.

        Python's garbage collector is run before and held off during capture: it could
        otherwise free an earlier run's graph mid-capture, which invalidates the capture.
        Running out of memory is not a capture failure: it propagates, so the caller can
        train fewer seeds at once."""
        self.inputs = [t.clone() if t is not None else None for t in example]
        graph = torch.cuda.CUDAGraph()
        caller_stream = torch.cuda.current_stream(self.device)
        gc.collect()
        gc.disable()
        try:
            with torch.cuda.device(self.device):
                torch.cuda.synchronize(self.device)
                with torch.cuda.graph(graph, stream=self.stream):
                    self.outputs = self.step(*self.inputs)
        except torch.OutOfMemoryError:
            raise
        except Exception as error:  # an op that cannot be captured: train eagerly instead
            self.failure = f"{type(error).__name__}: {error}"
        finally:
            gc.enable()
        if self.failure is None:
            self.graph = graph
            return
        self.inputs, self.outputs = [], ()
        del graph
        torch.cuda.set_stream(caller_stream)  # a failed capture_end may leave the side stream current
        _check_usable(self.device, self.failure)
        warnings.warn(f"CUDA graph capture failed on {self.device} ({self.failure}); "
                      "training eagerly", stacklevel=3)


def _check_usable(device: torch.device, failure: str) -> None:
    """After a failed capture: wait for the device, free the graph's pool, and prove with
    a tiny op that the device still computes; if not, say how to train without graphs."""
    try:
        with torch.cuda.device(device):
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            probe = _probe(device)
    except Exception as error:
        raise RuntimeError(
            f"CUDA graph capture failed on {device} ({failure}) and left the device unusable "
            f"({error}); rerun with train_seeds(..., cuda_graph=False)") from error
    if probe != 4.0:
        raise RuntimeError(f"after a failed CUDA graph capture on {device}, 1 + 1 gave "
                           f"{probe / 2}; rerun with train_seeds(..., cuda_graph=False)")


def _probe(device: torch.device) -> float:
    """A tiny computation on ``device``: 1 + 1, twice, summed (4.0 on a working device)."""
    return torch.ones(2, device=device).add_(1).sum().item()
