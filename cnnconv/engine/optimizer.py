"""The optimizer and the loss scaler of a stack of seeds, on its stacked tensors.

Both work with torch's fused optimizer kernels and a tensor learning rate, so a training
step has no host synchronisation and can be captured in a CUDA graph. Dynamic loss
scaling (fp16) keeps one scale per seed, so an overflow in one seed skips that seed's step
only -- the rule of ``torch.amp.GradScaler`` applied seed by seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from cnnconv.engine.validation import check_choice

OPTIMIZERS = ("sgd", "nesterov", "adam")
# torch's CPU fused SGD kernel leaves the vectorised part of fp16/bf16 parameters
# unchanged (pytorch/pytorch#191763, fixed after 2.13 by #192545; how far off, in
# benchmarks/README.md). On the CPU those dtypes step fp32 copies through the same kernel
# and are stored back, rounded once -- the fixed kernel's arithmetic. CUDA's kernel is a
# different implementation.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


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
