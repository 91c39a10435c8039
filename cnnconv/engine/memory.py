"""How many seeds fit on a device at once, and how large an evaluation chunk may be.

A stacked run holds, per seed: its weights, gradients and optimizer state; the
activations the backward pass needs (saved by autograd in the forward pass, in
proportion to the batch); its loader's draws for the epoch and the step's batch. On CUDA
the captured step's memory pool keeps the step's peak for the whole run, and evaluation
allocates beside it: it runs in chunks (``eval_chunk``), and a forward without
grad keeps about three activations alive at a time (a layer's input, its output and a
residual), so the plan adds three times the largest activation per sample.

The activation bytes are *measured*, not modelled: ``measure_footprint`` runs one
training forward of a stack of two seeds on the CPU at two batch sizes under
``torch.autograd.graph.saved_tensors_hooks`` and counts the distinct storages autograd
saves (weights excluded: they are state). The difference between the two batch sizes is
the per-sample cost, the rest is per-seed overhead (e.g. amp's low-precision weight
copies). The forward uses CUDA's arithmetic for the mode (no TF32 emulation, whose rounded
copies a GPU does not make), so the count is what the GPU will hold, up to allocator
rounding and cuDNN workspaces: ``HEADROOM`` leaves room for those.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnconv.engine.models import build_model
from cnnconv.engine.precision import PrecisionMode, get_mode, precision
from cnnconv.engine.stacking import SeedStack, dropout_shapes

# Fraction of the free memory a stack may plan to use; the rest is for cuDNN workspaces
# (cudnn.benchmark tries algorithms that want hundreds of MB), allocator rounding and
# fragmentation.
HEADROOM = 0.8
# Optimizer state tensors per parameter.
_OPTIMIZER_STATES = {"sgd": 1, "nesterov": 1, "adam": 2}
# The fewest test images a CUDA evaluation runs at once: in chunks of the training batch,
# P4's batch of 2 would evaluate 10,000 images in 5,000 stacked forward passes.
CUDA_EVAL_CHUNK = 500


def eval_chunk(batch_size: int) -> int:
    """Test images per forward pass of a CUDA evaluation of a run at ``batch_size``."""
    return max(batch_size, CUDA_EVAL_CHUNK)


@dataclass(frozen=True)
class SeedFootprint:
    """Device bytes one seed of a stacked run needs (see the module docstring)."""

    state: int
    saved_fixed: int
    saved_per_sample: int
    eval_per_sample: int
    input_per_sample: int
    draws_per_sample: int
    batch_norm_elements: int  # of the largest BatchNorm input, per sample

    def step_bytes(self, batch_size: int) -> int:
        """One seed's share of a training step at ``batch_size``, evaluation not counted."""
        return self.state + self.saved_fixed + batch_size * (self.saved_per_sample
                                                             + self.input_per_sample)

    def seed_bytes(self, batch_size: int, train_size: int) -> int:
        """One seed of a whole run: the step, an evaluation chunk (``eval_chunk``) beside
        it, and the loader's draws for an epoch of ``train_size`` samples."""
        return (self.step_bytes(batch_size) + eval_chunk(batch_size) * self.eval_per_sample
                + train_size * self.draws_per_sample)


def measure_footprint(models: tuple[nn.Module, nn.Module], sample: Tensor, mode: PrecisionMode,
                      optimizer: str, dropout_masks: bool = True) -> SeedFootprint:
    """Measure the footprint of one seed of ``models``' architecture (two CPU copies in
    the mode's parameter dtype) on inputs like ``sample`` (one image, no batch dim)."""
    stack = SeedStack(list(models)).train()
    weights = {t.untyped_storage().data_ptr() for t in stack.parameters()}
    weights |= {t.untyped_storage().data_ptr() for t in stack.buffers.values()}
    shapes = dropout_shapes(models[0], sample) if dropout_masks else []

    def saved(batch: int) -> tuple[int, int]:
        """Bytes of the distinct storages saved for backward, and of the largest one."""
        seen: dict[int, int] = {}

        def pack(t: Tensor) -> Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in weights:
                seen[storage.data_ptr()] = storage.nbytes()
            return t

        x = sample.expand(2, batch, *sample.shape).to(mode.param_dtype).contiguous()
        masks = [torch.ones(2, batch, *shape, dtype=torch.bool) for _, shape in shapes]
        with precision(mode, "cuda"), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = stack(x, dropout=masks if masks else None)
            F.cross_entropy(out.flatten(0, 1), torch.zeros(2 * batch, dtype=torch.long)).backward()
        return sum(seen.values()), max(seen.values(), default=0)

    (small, _), (large, largest) = saved(2), saved(4)
    per_sample = max(0, math.ceil((large - small) / (2 * 2)))
    fixed = max(0, math.ceil((small - 2 * 2 * per_sample) / 2))
    parameters = sum(p[0].numel() * p.element_size() for p in stack.parameters())
    buffers = sum(b[0].numel() * b.element_size() for b in stack.buffers.values())
    grads = 2 if mode.loss_scaling else 1  # fp16 unscales into new gradient tensors
    state = parameters * (1 + grads + _OPTIMIZER_STATES[optimizer]) + buffers
    element = torch.finfo(mode.param_dtype).bits // 8
    # the step's batch: gathered uint8, converted, augmented and output copies
    input_per_sample = sample.numel() * (1 + 3 * max(element, 4))
    # an epoch's draws per sample: permutation, up to four augmentation/mixup indices
    # (int64 each) and one bool per dropout mask element
    draws = 8 * 5 + sum(math.prod(shape) for _, shape in shapes)
    eval_per_sample = 3 * math.ceil(largest / (2 * 4))
    return SeedFootprint(state, fixed, per_sample, eval_per_sample, input_per_sample, draws,
                         batch_norm_elements=_largest_batch_norm_input(models[0], sample, mode))


@functools.lru_cache(maxsize=64)
def seed_footprint(model: str, options: Mapping[str, Any], precision_name: str, optimizer: str,
                   shape: tuple[int, int, int], classes: int) -> SeedFootprint:
    """The measured footprint of one seed of a run's configuration (``options``: hashable,
    as a spec's ``model_options`` are). Seconds of CPU work: kept per process."""
    mode = get_mode(precision_name)
    channels, size, _ = shape
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build_model(model, classes, channels, size, **options).to(mode.param_dtype))
    return measure_footprint((models[0], models[1]), torch.rand(channels, size, size), mode, optimizer)


def _largest_batch_norm_input(model: nn.Module, sample: Tensor, mode: PrecisionMode) -> int:
    """Elements of the largest input a BatchNorm of ``model`` sees, per sample."""
    sizes = [0]
    hooks = [m.register_forward_pre_hook(lambda _, inputs: sizes.append(inputs[0][0].numel()))
             for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(sample[None].to(mode.param_dtype))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return max(sizes)


def stack_size(footprint: SeedFootprint, batch_size: int, train_size: int, free_bytes: int,
               seeds: int) -> int:
    """How many of ``seeds`` to train at once within ``HEADROOM`` of ``free_bytes``, and
    with a stack's largest BatchNorm input under 2^31 elements: cuDNN's BatchNorm indexes
    with 32 bits, and under vmap it gets the whole stack as one tensor (PyTorch checks that
    limit on one seed's). At least 1 (a seed that does not fit is the caller's error)."""
    per_seed = footprint.seed_bytes(batch_size, train_size)
    # evaluation forwards eval_chunk(batch_size) >= batch_size images at once
    indexable = (2**31 - 1) // max(1, eval_chunk(batch_size) * footprint.batch_norm_elements)
    return max(1, min(seeds, indexable, int(free_bytes * HEADROOM // per_seed)))
