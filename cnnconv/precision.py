"""Numeric precision modes, and TF32 emulated on the CPU.

A mode fixes three things: the dtype of weights, inputs and optimizer state; for the
mixed modes, the dtype the products compute in; and the backend flags that decide whether
fp32 GEMMs and convolutions may use TF32 tensor cores. ``precision(mode, device)`` sets
the flags, enters the mode's arithmetic (``MixedPrecision`` for amp, ``EmulatedTF32`` for
tf32 on a CPU), restores everything on exit, and yields the effective state for a run's
metadata.

What each mode computes (tests/test_precision_dispatch.py checks it at the dispatch level,
forward and backward, one seed and stacked):

- ``fp64``, ``fp32``, ``bf16``: every operation in that dtype (weights, activations,
  BatchNorm and its statistics, the loss, optimizer state); ``fp32`` with TF32 off.
- ``tf32``: fp32 storage; both operands of every convolution and matmul are TF32 numbers
  (on CUDA by the tensor cores, on a CPU by ``EmulatedTF32``), products accumulate in fp32.
- ``amp_bf16``, ``amp_fp16``: fp32 weights and optimizer; every convolution and matmul
  takes its operands in the low dtype and returns it; BatchNorm computes in fp32 (its
  input cast up, its statistics and affine parameters fp32, its output cast back down);
  the loss in fp32. That is torch.autocast's rule for these ops, written out as a
  ``TorchFunctionMode``: autocast itself does not reach into ``torch.func.vmap`` on a CPU
  (a stacked run silently computed in fp32), and under vmap a BatchNorm given low-precision
  input with fp32 statistics raises. The explicit rule holds everywhere.

Only PyTorch's ``fp32_precision`` API is used, never the legacy ``allow_tf32`` setters:
mixing the two raises when the flags are read. Note that PyTorch leaves cuDNN
convolutions on TF32 by default (``torch.backends.cudnn.conv.fp32_precision == "tf32"``),
so "fp32" means something only once that flag is set to ``"ieee"``.

TF32 rounding rule (CPU emulation). A TF32 number is an fp32 number whose 13 low mantissa
bits are zero (1 sign, 8 exponent, 10 mantissa bits). ``round_to_tf32`` rounds an fp32
value to the nearest TF32 value, ties to even (the IEEE 754 default and the rule PyTorch
uses for fp32 -> bfloat16); values beyond the largest TF32 number round to infinity, and
infinities and NaNs pass through unchanged. CUTLASS's default converter rounds ties away
from zero instead; the two rules differ only on exact ties (1 in 8192 uniformly drawn
mantissas). Under emulation both operands of every conv2d and linear are rounded, in the
forward pass and in both backward products (the incoming gradient and the saved operand),
with products accumulated in fp32 -- the arithmetic of an Ampere or Hopper tensor core.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from cnnconv.choices import check_choice


@dataclass(frozen=True)
class PrecisionMode:
    """One precision mode: storage dtype, autocast dtype and TF32 permission."""

    name: str
    param_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    tf32: bool
    description: str

    @property
    def loss_scaling(self) -> bool:
        """fp16 products need dynamic loss scaling to keep small gradients from flushing."""
        return self.autocast_dtype == torch.float16


MODES: dict[str, PrecisionMode] = {
    mode.name: mode
    for mode in (
        PrecisionMode("fp64", torch.float64, None, False, "everything in float64"),
        PrecisionMode("fp32", torch.float32, None, False, "float32, strict IEEE: TF32 off"),
        PrecisionMode(
            "tf32", torch.float32, None, True,
            "float32 storage, TF32 conv/matmul (emulated bit-exactly on CPU)",
        ),
        PrecisionMode(
            "bf16", torch.bfloat16, None, False,
            "pure bfloat16: weights, activations, inputs and optimizer state",
        ),
        PrecisionMode(
            "amp_bf16", torch.float32, torch.bfloat16, False,
            "float32 weights, bfloat16 convolutions and matmuls, fp32 BatchNorm and loss",
        ),
        PrecisionMode(
            "amp_fp16", torch.float32, torch.float16, False,
            "float32 weights, float16 convolutions and matmuls, fp32 BatchNorm and loss, "
            "dynamic loss scaling",
        ),
    )
}


def get_mode(name: str) -> PrecisionMode:
    """Look a mode up by name; an unknown name raises with the valid choices."""
    check_choice("precision", name, MODES)
    return MODES[name]


_TF32_DROPPED_BITS = 13
_TF32_HALF_MINUS_ONE = (1 << (_TF32_DROPPED_BITS - 1)) - 1
_EXPONENT = 0x7F800000


def round_to_tf32(x: Tensor) -> Tensor:
    """Round a float32 tensor to TF32 (nearest, ties to even); see the module docstring.

    Integer arithmetic on the bit pattern: add half an ulp of TF32 minus one, plus the
    lowest kept bit (so ties go to even), then clear the 13 dropped bits. A carry out of
    the mantissa correctly bumps the exponent (and the largest values round to infinity).
    Infinities and NaNs (exponent all ones) get no increment and keep all their bits.
    Written as in-place integer ops: this runs on every conv and linear operand.
    """
    if x.dtype != torch.float32:
        raise TypeError(f"round_to_tf32 takes float32, got {x.dtype}")
    bits = x.contiguous().view(torch.int32)
    finite = (bits & _EXPONENT) != _EXPONENT
    out = bits >> _TF32_DROPPED_BITS
    out.bitwise_and_(1).add_(_TF32_HALF_MINUS_ONE).mul_(finite).add_(bits)
    keep = finite.to(torch.int32).mul_(-((1 << _TF32_DROPPED_BITS) - 1)).sub_(1)
    return out.bitwise_and_(keep).view(torch.float32)


class _RoundOperand(torch.autograd.Function):
    """Forward: round to TF32. Backward: pass the gradient through unchanged.

    The product that consumes the rounded operand computes its gradient with respect to
    the rounded value, which is what a tensor core's backward returns for the original.
    """

    @staticmethod
    def forward(x: Tensor) -> Tensor:  # type: ignore[override]
        return round_to_tf32(x)

    @staticmethod
    def vmap(info, in_dims, x):  # type: ignore[override]
        return _RoundOperand.apply(x), in_dims[0]  # elementwise: the batch dim stays put

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        pass

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


class _RoundGradient(torch.autograd.Function):
    """Forward: identity. Backward: round the incoming gradient to TF32.

    Placed on a product's output, it makes both backward products (grad x weight and
    grad x input) read a TF32 gradient, as on the hardware.
    """

    @staticmethod
    def forward(y: Tensor) -> Tensor:  # type: ignore[override]
        return y.view_as(y)

    @staticmethod
    def vmap(info, in_dims, y):  # type: ignore[override]
        return _RoundGradient.apply(y), in_dims[0]

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        pass

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return round_to_tf32(grad)


def _tf32_product(product, x: Tensor, weight: Tensor, bias: Tensor | None, *args: object) -> Tensor:
    """``product(x, weight, bias, *args)`` with TF32 operands in forward and backward.

    The bias takes part in the forward call (so the result is bit-identical to the fp32
    op on rounded operands) but not in the gradient rounding: adding ``bias - bias`` (an
    exact zero) routes the bias gradient around it, unrounded, as the hardware's bias
    reduction is an fp32 sum.
    """
    detached = None if bias is None else bias.detach()
    out = _RoundGradient.apply(product(_RoundOperand.apply(x), _RoundOperand.apply(weight),
                                       detached, *args))
    if bias is None:  # (inside vmap, requires_grad is not visible: always route the bias)
        return out
    shape = (-1,) + (1,) * (out.ndim - 2) if product is F.conv2d else (-1,)
    return out + (bias - detached).view(shape)


class EmulatedTF32(TorchFunctionMode):
    """Route float32 ``conv2d`` and ``linear`` calls through TF32-rounded operands.

    Built from elementwise autograd functions with their own (trivial) vmap rules, so the
    emulation also works, at full speed, inside ``torch.func.vmap`` (the multi-seed engine).
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func is F.conv2d and _all_float32(args, kwargs):
            call = _bind(args, kwargs, ("input", "weight", "bias", "stride", "padding",
                                        "dilation", "groups"), (None, 1, 0, 1, 1))
            return _tf32_product(F.conv2d, *call)
        if func is F.linear and _all_float32(args, kwargs):
            return _tf32_product(F.linear, *_bind(args, kwargs, ("input", "weight", "bias"), (None,)))
        return func(*args, **kwargs)


# The products autocast runs in its low dtype, among the ops our networks call.
_PRODUCTS = frozenset({F.conv1d, F.conv2d, F.conv3d, F.linear, torch.matmul, torch.mm, torch.bmm,
                       Tensor.matmul, Tensor.__matmul__, Tensor.mm, Tensor.bmm})
# Losses and normalisers of a distribution, which autocast runs in fp32.
_FP32_OPS = frozenset({F.cross_entropy, F.nll_loss, F.log_softmax, F.softmax, F.kl_div})


class MixedPrecision(TorchFunctionMode):
    """The amp modes' rule (module docstring): products in ``dtype``, BatchNorm and losses
    in fp32.

    A function mode sees each call before vmap batches it, so the rule is the same for a
    stack of one seed and of many, on any device. Casts run every step (nothing cached),
    as a CUDA graph replay must recompute them from the updated weights.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func in _PRODUCTS:
            return func(*_cast(args, self.dtype), **_cast(kwargs, self.dtype))
        if func is F.batch_norm:
            # fp32 statistics need fp32 input under vmap; hand the caller its own dtype back
            x = args[0]
            return func(x.float(), *args[1:], **kwargs).to(x.dtype)
        if func in _FP32_OPS:
            return func(*_cast(args, torch.float32), **_cast(kwargs, torch.float32))
        return func(*args, **kwargs)


def _cast(values, dtype: torch.dtype):
    """``values`` (a tuple or dict) with every floating-point tensor cast to ``dtype``."""
    def one(value):
        return value.to(dtype) if isinstance(value, Tensor) and value.is_floating_point() else value
    if isinstance(values, dict):
        return {k: one(v) for k, v in values.items()}
    return tuple(one(v) for v in values)


def _all_float32(args: tuple, kwargs: dict) -> bool:
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
    return all(t.dtype == torch.float32 for t in tensors)


def _bind(args: tuple, kwargs: dict, names: tuple[str, ...], defaults: tuple) -> list:
    """Positional argument list for ``names``, filling omitted trailing ones with defaults."""
    required = len(names) - len(defaults)
    values = list(args) + [None] * (len(names) - len(args))
    for index, name in enumerate(names):
        if name in kwargs:
            values[index] = kwargs[name]
        elif index >= len(args) and index >= required:
            values[index] = defaults[index - required]
    return values


def _read_flags() -> dict[str, str]:
    return {
        "matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
        "conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision,
    }


def _write_flags(flags: dict[str, str]) -> None:
    torch.backends.cuda.matmul.fp32_precision = flags["matmul_fp32_precision"]
    torch.backends.cudnn.conv.fp32_precision = flags["conv_fp32_precision"]


@contextlib.contextmanager
def precision(mode: PrecisionMode | str, device: torch.device | str) -> Iterator[dict]:
    """Set the backend flags for ``mode`` on ``device`` and enter its arithmetic; yield
    the effective state.

    The yielded dict is what a run records: the mode, dtypes, the flags as read back after
    setting them, and whether TF32 is emulated (CPU) or done by the hardware (CUDA).
    """
    mode = get_mode(mode) if isinstance(mode, str) else mode
    device = torch.device(device)
    previous = _read_flags()
    value = "tf32" if mode.tf32 else "ieee"
    _write_flags({"matmul_fp32_precision": value, "conv_fp32_precision": value})
    emulate = mode.tf32 and device.type != "cuda"
    state = {
        "mode": mode.name,
        "param_dtype": str(mode.param_dtype).removeprefix("torch."),
        "autocast_dtype": str(mode.autocast_dtype).removeprefix("torch.")
        if mode.autocast_dtype else None,
        "loss_scaling": mode.loss_scaling,
        "tf32_emulated": emulate,
        **_read_flags(),
    }
    arithmetic: contextlib.AbstractContextManager = contextlib.nullcontext()
    if emulate:
        arithmetic = EmulatedTF32()
    elif mode.autocast_dtype is not None:
        arithmetic = MixedPrecision(mode.autocast_dtype)
    try:
        with arithmetic:
            yield state
    finally:
        _write_flags(previous)
