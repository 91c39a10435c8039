"""N seeds of one model as one computation: stacked weights, one optimizer, one loss scaler.

Claims need many seeds of small networks, and one small network leaves a GPU idle: its
step is launch-bound. ``SeedStack`` stacks the weights and buffers of N independently
initialised copies (``torch.func.stack_module_state``) and runs them with
``torch.func.vmap``, which turns every convolution into one grouped convolution and every
BatchNorm into one over N x C channels, each seed keeping its own running statistics.
The seeds never mix: the total loss is the sum of the per-seed losses, so each seed's
gradient is exactly its own.

The optimizer and the loss scaler work on the stacked tensors with elementwise ``_foreach``
ops and a tensor learning rate, so a training step has no host synchronisation and can
be captured in a CUDA graph. Dynamic loss scaling (fp16) keeps one scale per seed, so an
overflow in one seed skips that seed's step only -- the rule of ``torch.amp.GradScaler``
applied seed by seed.

Layers that draw random numbers in the forward pass (dropout) cannot be vectorised
without making a seed's masks depend on which seeds it was stacked with; ``vectorisable``
says whether a model has any, and such models train one seed at a time.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from cnnconv.choices import check_choice

OPTIMIZERS = ("sgd", "nesterov", "adam")


def vectorisable(model: nn.Module) -> bool:
    """Whether the forward pass is free of random draws (no active dropout)."""
    return not any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


class SeedStack:
    """N models of one architecture, stacked along a leading seed dimension.

    Calling it maps inputs of shape ``[N, B, ...]`` (one batch per seed) or ``[B, ...]``
    (the same batch for every seed, e.g. the test set) to outputs ``[N, B, classes]``.
    A stack of one calls the module directly, with no vmap in the way.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ValueError("a SeedStack needs at least one model")
        if len(models) > 1 and not vectorisable(models[0]):
            raise ValueError(
                "this model draws random numbers in its forward pass (dropout); stacking "
                "it would tie each seed's masks to its stack-mates. Train it one seed at a time"
            )
        self.n = len(models)
        self.params, self.buffers = stack_module_state(list(models))
        self.module = copy.deepcopy(models[0]).to("meta")  # structure only; weights live here
        self._vmapped = {
            True: vmap(self._forward_one, in_dims=(0, 0, 0)),
            False: vmap(self._forward_one, in_dims=(0, 0, None)),
        }

    def _forward_one(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.module, (params, buffers), (x,))

    def __call__(self, x: Tensor, per_seed: bool = True) -> Tensor:
        """Forward pass; ``per_seed`` says whether ``x`` has the leading seed dimension."""
        if self.n == 1:
            single = x[0] if per_seed else x
            params = {k: v[0] for k, v in self.params.items()}
            buffers = {k: v[0] for k, v in self.buffers.items()}
            return self._forward_one(params, buffers, single)[None]
        return self._vmapped[per_seed](self.params, self.buffers, x)

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


def seed_view(values: Tensor, like: Tensor) -> Tensor:
    """A per-seed vector ``[N]`` shaped to broadcast against a stacked tensor ``like``."""
    return values.view(-1, *([1] * (like.ndim - 1)))


class SeedOptimizer:
    """SGD (with momentum), Nesterov SGD or Adam over stacked parameters.

    The arithmetic is torch.optim's (L2 weight decay added to the gradient, SGD momentum
    ``buf = m * buf + g`` without dampening, Adam with bias correction) written with
    ``_foreach`` ops and a 0-d tensor learning rate, so a step is a fixed sequence of
    kernels that a CUDA graph can replay. ``step(..., apply=mask)`` applies the step
    only to the seeds whose mask is true (fp16 overflow skips); ``step_count`` counts
    each seed's applied steps.
    """

    def __init__(self, params: list[Tensor], decays: list[bool], optimizer: str, momentum: float,
                 weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        check_choice("optimizer", optimizer, OPTIMIZERS)
        self.params = params
        self.kind = optimizer
        self.momentum = momentum
        self.decay = [weight_decay if d else 0.0 for d in decays]
        self.betas, self.eps = betas, eps
        self.state = [torch.zeros_like(p) for p in params]
        self.second = [torch.zeros_like(p) for p in params] if optimizer == "adam" else []
        # float64: Adam's 1 - 0.999**t loses four digits in float32 at small t
        self.step_count = torch.zeros(params[0].shape[0], dtype=torch.float64,
                                      device=params[0].device)

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], lr: Tensor, apply: Tensor | None = None) -> None:
        grads = list(grads)
        if apply is not None:  # a skipped seed's gradients may be inf/NaN: never let them in
            grads = [g.nan_to_num(0.0, 0.0, 0.0) for g in grads]
        if any(self.decay):
            grads = torch._foreach_add(grads, torch._foreach_mul(self.params, self.decay))
        self.step_count += 1 if apply is None else apply
        if self.kind == "adam":
            new_state, new_second, update = self._adam(grads)
        else:
            new_state = torch._foreach_add(torch._foreach_mul(self.state, self.momentum), grads)
            new_second = []
            update = (torch._foreach_add(grads, new_state, alpha=self.momentum)
                      if self.kind == "nesterov" else new_state)
        new_params = torch._foreach_sub(self.params, torch._foreach_mul(update, lr))
        for old, new in ((self.params, new_params), (self.state, new_state),
                         (self.second, new_second)):
            if not old:
                continue
            if apply is None:
                torch._foreach_copy_(old, new)
            else:  # lerp with weight 0 or 1 keeps or replaces exactly
                torch._foreach_lerp_(old, new, [seed_view(apply.to(t.dtype), t) for t in old])

    def _adam(self, grads: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        beta1, beta2 = self.betas
        first = torch._foreach_lerp(self.state, grads, 1 - beta1)
        second = torch._foreach_add(torch._foreach_mul(self.second, beta2),
                                    torch._foreach_mul(torch._foreach_mul(grads, grads), 1 - beta2))
        correction1 = 1 - beta1 ** self.step_count
        root_correction2 = (1 - beta2 ** self.step_count).sqrt()
        denominators = torch._foreach_add(
            torch._foreach_div(torch._foreach_sqrt(second),
                               [seed_view(root_correction2, t).to(t.dtype) for t in second]), self.eps)
        update = torch._foreach_div(
            torch._foreach_div(first, [seed_view(correction1, t).to(t.dtype) for t in first]),
            denominators)
        return first, second, update


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
