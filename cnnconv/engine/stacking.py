"""N seeds of one model as one computation: stacked weights and buffers, drawn dropout.

Claims need many seeds of small networks, and one small network leaves a GPU idle: its
step is launch-bound. ``SeedStack`` stacks the weights and buffers of N independently
initialised copies (``torch.func.stack_module_state``) and runs them with
``torch.func.vmap``, which turns every convolution into one grouped convolution and every
BatchNorm into one over N x C channels, each seed keeping its own running statistics.
The seeds never mix: the total loss is the sum of the per-seed losses, so each seed's
gradient is exactly its own.

Dropout draws random numbers in the forward pass, and under vmap those draws would tie a
seed's masks to its stack-mates. So the masks are drawn outside, by the data loader, from
each seed's own generator, and handed to the forward pass (``DrawnDropout``): a seed's
masks are the same whichever seeds it is stacked with, and the step stays free of random
draws, so a CUDA graph can replay it. ``dropout_shapes`` says what to draw.

The optimizer and the loss scaler of a stack are in ``optimizer``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.overrides import TorchFunctionMode


def vectorisable(model: nn.Module) -> bool:
    """Whether N copies can run as one stack: every random layer is a plain ``nn.Dropout``,
    whose masks ``DrawnDropout`` supplies (other dropout kinds are not supported)."""
    return all(type(m) is nn.Dropout for m in model.modules()
               if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0)


def has_dropout(model: nn.Module) -> bool:
    """Whether ``model`` drops anything out (an ``nn.Dropout`` with p > 0)."""
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())


class DrawnDropout(TorchFunctionMode):
    """Dropout with masks drawn beforehand: the i-th ``F.dropout`` call in training mode
    multiplies by ``masks[i]`` (True keeps) scaled by ``1 / (1 - p)``, as dropout does."""

    def __init__(self, masks: Sequence[Tensor]) -> None:
        super().__init__()
        self.masks = list(masks)
        self.used = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func is not F.dropout:
            return func(*args, **kwargs)
        x, p, training = _dropout_call(args, kwargs)
        if not training or p == 0:
            return x
        if self.used == len(self.masks):
            raise RuntimeError(f"the forward pass called dropout more than the {len(self.masks)} "
                               "times dropout_shapes recorded; its masks must be drawn per call")
        mask = self.masks[self.used]
        self.used += 1
        return x * (mask.to(x.dtype) * (1 / (1 - p)))


class _RecordDropout(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[float, tuple[int, ...]]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func is F.dropout:
            x, p, _ = _dropout_call(args, kwargs)
            if p > 0:
                self.calls.append((float(p), tuple(x.shape[1:])))
        return func(*args, **kwargs)


def _dropout_call(args: tuple, kwargs: dict) -> tuple[Tensor, float, bool]:
    """``(input, p, training)`` of an ``F.dropout`` call, with F.dropout's defaults."""
    named = dict(zip(("input", "p", "training", "inplace"), args), **kwargs)
    return named["input"], named.get("p", 0.5), named.get("training", True)


def dropout_shapes(model: nn.Module, sample: Tensor) -> list[tuple[float, tuple[int, ...]]]:
    """``(p, per-sample shape)`` of each dropout call of the forward pass, in call order:
    what the loader draws masks for. Found by one forward of ``sample`` (one input, no
    batch dimension) in eval mode, so no statistic of the model changes."""
    if not has_dropout(model):
        return []
    was_training = model.training
    recorder = _RecordDropout()
    try:
        with torch.no_grad(), recorder:
            model.eval()(sample[None])
    finally:
        model.train(was_training)
    return recorder.calls


class SeedStack:
    """N models of one architecture, stacked along a leading seed dimension.

    Calling it maps inputs of shape ``[N, B, ...]`` (one batch per seed) or ``[B, ...]``
    (the same batch for every seed, e.g. the test set) to outputs ``[N, B, classes]``.
    In training mode, a model with dropout takes its masks: one ``[N, B, ...]`` tensor per
    dropout call (``dropout_shapes``). A stack of one calls the module directly, with no
    vmap in the way.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ValueError("a SeedStack needs at least one model")
        if not vectorisable(models[0]):
            raise ValueError(
                "this model draws random numbers in its forward pass with a layer other than "
                "nn.Dropout; only nn.Dropout's masks can be drawn outside the step, so "
                "replace the layer or train without cnnconv's engine"
            )
        self.n = len(models)
        self.params, self.buffers = stack_module_state(list(models))
        self.module = copy.deepcopy(models[0]).to("meta")  # structure only; weights live here
        self.has_dropout = has_dropout(models[0])
        self._vmapped: dict[tuple[bool, bool], object] = {}

    def __call__(self, x: Tensor, per_seed: bool = True,
                 dropout: Sequence[Tensor] | None = None) -> Tensor:
        """Forward pass; ``per_seed`` says whether ``x`` has the leading seed dimension,
        ``dropout`` gives the masks of a model with dropout in training mode."""
        if self.has_dropout and self.module.training and dropout is None:
            raise ValueError("this model has dropout: in training mode pass the masks the "
                             "loader drew for it (DeviceLoader(dropout=dropout_shapes(...)))")
        masks = list(dropout) if dropout is not None and self.module.training else None
        if self.n == 1:
            single = x[0] if per_seed else x
            params = {k: v[0] for k, v in self.params.items()}
            buffers = {k: v[0] for k, v in self.buffers.items()}
            one_masks = None if masks is None else [m[0] for m in masks]
            return _forward_one(self.module, params, buffers, single, one_masks)[None]
        key = (per_seed, masks is not None)
        if key not in self._vmapped:
            in_dims = (0, 0, 0 if per_seed else None) + ((0,) if masks is not None else ())
            # a partial of the module, not a bound method: no reference cycle through self,
            # so a finished stack's device memory is freed as soon as it is dropped
            self._vmapped[key] = vmap(functools.partial(_forward_one, self.module), in_dims=in_dims)
        args = (self.params, self.buffers, x) + ((masks,) if masks is not None else ())
        return self._vmapped[key](*args)  # type: ignore[operator]

    def train(self, mode: bool = True) -> SeedStack:
        self.module.train(mode)
        return self

    def eval(self) -> SeedStack:
        return self.train(False)

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def is_weight(self) -> list[bool]:
        """Per stacked parameter: a conv or linear weight (rank > 1 in one model)?"""
        return [p.ndim - 1 > 1 for p in self.params.values()]

    def unstack(self, index: int) -> nn.Module:
        """Seed ``index`` as an ordinary module (for checkpoints and inspection)."""
        model = copy.deepcopy(self.module).to_empty(device=next(iter(self.params.values())).device)
        state = {k: v[index].detach().clone() for k, v in {**self.params, **self.buffers}.items()}
        model.load_state_dict(state)
        return model


def _forward_one(module: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor],
                 x: Tensor, masks: list[Tensor] | None = None) -> Tensor:
    with DrawnDropout(masks) if masks is not None else contextlib.nullcontext():
        return functional_call(module, (params, buffers), (x,))
