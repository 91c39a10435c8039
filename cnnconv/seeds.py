"""N seeds of one model as one computation: stacked weights, one optimizer, one loss scaler.

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

The optimizer and the loss scaler work on the stacked tensors with torch's fused
optimizer kernels and a tensor learning rate, so a training step has no host
synchronisation and can be captured in a CUDA graph. Dynamic loss scaling (fp16) keeps one
scale per seed, so an overflow in one seed skips that seed's step only -- the rule of
``torch.amp.GradScaler`` applied seed by seed.
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

from cnnconv.choices import check_choice

OPTIMIZERS = ("sgd", "nesterov", "adam")
# torch's CPU fused SGD kernel leaves the vectorised part of fp16/bf16 parameters
# unchanged (pytorch/pytorch#191763, fixed after 2.13 by #192545): measured here, a bf16
# tensor of 1,000 weights moved 1/150 of what it should in 50 steps. On the CPU those
# dtypes step fp32 copies through the same kernel and are stored back, rounded once --
# the fixed kernel's arithmetic. CUDA's kernel is a different implementation.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


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


def seed_view(values: Tensor, like: Tensor) -> Tensor:
    """A per-seed vector ``[N]`` shaped to broadcast against a stacked tensor ``like``."""
    return values.view(-1, *([1] * (like.ndim - 1)))


class SeedOptimizer:
    """SGD (with momentum), Nesterov SGD or Adam over stacked parameters.

    The arithmetic is torch.optim's fused implementation (``SGD(fused=True)``,
    ``Adam(fused=True)``: L2 weight decay added to the gradient, SGD momentum
    ``buf = m * buf + g`` without dampening, Adam with bias correction), one kernel that
    reads each parameter, gradient and state once and writes parameter and state once --
    the least memory traffic an optimizer step can have. The learning rate is a 0-d
    tensor, so the step has no host synchronisation and a CUDA graph can replay it.
    ``step(..., apply=mask)`` applies the step only to the seeds whose mask is true (fp16
    overflow skips): then each seed's slice is stepped by its own call, skipped through
    the kernel's ``found_inf``, which leaves parameters and state untouched.
    ``step_count`` counts each seed's applied steps.
    """

    def __init__(self, params: list[Tensor], decays: list[bool], optimizer: str, momentum: float,
                 weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        check_choice("optimizer", optimizer, OPTIMIZERS)
        self.params = params
        self.kind = optimizer
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.betas, self.eps = betas, eps
        # the fused kernels take one weight decay: one group with it, one without
        decayed = [d and weight_decay > 0 for d in decays]
        self.groups = [(flag, [i for i, d in enumerate(decayed) if d == flag]) for flag in (True, False)
                       if flag in decayed]
        has_state = optimizer == "adam" or momentum > 0
        self.state = [torch.zeros_like(p) for p in params] if has_state else []
        self.second = [torch.zeros_like(p) for p in params] if optimizer == "adam" else []
        self.step_count = torch.zeros(params[0].shape[0], dtype=torch.float32,
                                      device=params[0].device)

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], lr: Tensor, apply: Tensor | None = None) -> None:
        grads = [g.contiguous() for g in grads]  # the fused kernels want the params' strides
        if apply is None:
            self.step_count += 1
            for decay, indices in self.groups:
                self._fused(indices, grads, lr, decay, seed=None, skip=None)
            return
        self.step_count += apply
        skip = (~apply).float()
        for seed in range(len(apply)):
            for decay, indices in self.groups:
                self._fused(indices, grads, lr, decay, seed, skip[seed])

    def _fused(self, indices: list[int], grads: list[Tensor], lr: Tensor, decay: bool,
               seed: int | None, skip: Tensor | None) -> None:
        def pick(tensors: list[Tensor]) -> list[Tensor]:
            return [tensors[i] if seed is None else tensors[i][seed] for i in indices]

        weight_decay = self.weight_decay if decay else 0.0
        if self.kind == "adam":
            steps = self.step_count[0 if seed is None else seed]
            torch._fused_adam_(
                pick(self.params), pick(grads), pick(self.state), pick(self.second), [],
                [steps] * len(indices), lr=lr, beta1=self.betas[0], beta2=self.betas[1],
                weight_decay=weight_decay, eps=self.eps, amsgrad=False, maximize=False,
                found_inf=skip)
        else:
            stored = pick(self.params), pick(self.state) if self.state else [], pick(grads)
            low_on_cpu = stored[0][0].device.type == "cpu" and stored[0][0].dtype in _LOW_PRECISION
            # see _LOW_PRECISION: there, step fp32 copies and store them rounded once
            params, bufs, grads_ = ([t.float() for t in ts] for ts in stored) if low_on_cpu else stored
            torch._fused_sgd_(
                params, grads_, bufs, weight_decay=weight_decay,
                momentum=self.momentum, lr=lr, dampening=0.0, nesterov=self.kind == "nesterov",
                maximize=False, is_first_step=False, found_inf=skip)
            if low_on_cpu:
                torch._foreach_copy_([*stored[0], *stored[1]], [*params, *bufs])


class SeedLossScaler:
    """Dynamic loss scaling with one scale per seed, by ``torch.amp.GradScaler``'s rule.

    Start at 2**16; a step whose gradients hold an inf or NaN is skipped and halves that
    seed's scale; 2000 clean steps in a row double it.
    """

    def __init__(self, seeds: int, device: torch.device, init_scale: float = 2.0**16,
                 growth_interval: int = 2000) -> None:
        self.scale = torch.full((seeds,), init_scale, device=device)
        self.clean_steps = torch.zeros(seeds, dtype=torch.int64, device=device)
        self.growth_interval = growth_interval

    def scale_loss(self, per_seed_loss: Tensor) -> Tensor:
        return (per_seed_loss.float() * self.scale).sum()

    def unscale(self, grads: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
        """Gradients divided by each seed's scale, and which seeds may step (all finite)."""
        inverse = self.scale.reciprocal()
        unscaled = torch._foreach_mul(list(grads), [seed_view(inverse, g).to(g.dtype) for g in grads])
        finite = torch.stack([g.isfinite().flatten(1).all(1) for g in unscaled]).all(0)
        return unscaled, finite

    def update(self, finite: Tensor) -> None:
        grown = self.clean_steps + 1 == self.growth_interval
        factor = torch.where(finite, torch.where(grown, 2.0, 1.0), 0.5)
        self.scale.mul_(factor)
        self.clean_steps.copy_(torch.where(finite & ~grown, self.clean_steps + 1, 0))
