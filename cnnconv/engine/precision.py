"""Numeric precision modes, and TF32 emulated on the CPU.

A mode fixes three things: the dtype of weights, inputs and optimizer state; for the
mixed modes, the dtype the products compute in; and the backend flags that decide whether
fp32 GEMMs and convolutions may use TF32 tensor cores. ``precision(mode, device)`` sets
the flags, enters the mode's arithmetic (``MixedPrecision`` for amp; for tf32 on a CPU,
``round_to_tf32`` on every product's operands, by ``kernels.product_rules``), restores
everything on exit, and yields the effective state for a run's metadata.

What each mode computes (tests/test_precision_dispatch.py checks it at the dispatch level,
forward and backward, one seed and stacked):

- ``fp64``, ``fp32``, ``bf16``: every operation in that dtype (weights, activations,
  BatchNorm and its statistics, the loss, optimizer state); ``fp32`` with TF32 off.
- ``tf32``: fp32 storage; both operands of every convolution and matmul are TF32 numbers
  (on CUDA by the tensor cores, on a CPU by rounding them), products accumulate in fp32.
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
mantissas). Under emulation both operands of every fp32 convolution and matmul computed
inside the context are rounded, in the forward pass and in both backward products (the
incoming gradient and the saved operand), with products accumulated in fp32 -- the
arithmetic of an Ampere or Hopper tensor core; a bias gradient is an unrounded sum. Run
the backward pass inside the context: outside it is plain fp32, as on CUDA once the flags
are restored.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from cnnconv.engine.kernels import product_rules
from cnnconv.engine.validation import check_choice


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
_TF32_KEPT = ~((1 << _TF32_DROPPED_BITS) - 1)


def round_to_tf32(x: Tensor) -> Tensor:
    """Round a float32 tensor to TF32 (nearest, ties to even); see the module docstring.

    Integer arithmetic on the bit pattern: add half an ulp of TF32 minus one, plus the
    lowest kept bit (so ties go to even), then clear the 13 dropped bits. A carry out of
    the mantissa correctly bumps the exponent (and the largest values round to infinity);
    an infinity's mantissa is zero, so it comes out unchanged. A NaN's payload could carry
    into its sign: a tensor holding a NaN (its sum is NaN; a sum is one fast pass, where
    an elementwise NaN test and select cost more than the rounding) has its NaNs put back
    as they were. Five integer kernels and a sum: this runs on every operand of every
    product, forward and backward. The result keeps ``x``'s memory layout.
    """
    if x.dtype != torch.float32:
        raise TypeError(f"round_to_tf32 takes float32, got {x.dtype}")
    bits = x.view(torch.int32)
    rounded = (bits >> _TF32_DROPPED_BITS).bitwise_and_(1).add_(bits)
    rounded = rounded.add_(_TF32_HALF_MINUS_ONE).bitwise_and_(_TF32_KEPT)
    if x.device.type != "cpu" or math.isnan(x.sum()):  # (on a device the test would sync)
        rounded = torch.where(x.isnan(), bits, rounded)  # as integers: a float copy quiets NaNs
    return rounded.view(torch.float32)


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
        arithmetic = product_rules(round_operands=round_to_tf32)
    elif mode.autocast_dtype is not None:
        arithmetic = MixedPrecision(mode.autocast_dtype)
    try:
        with arithmetic:
            yield state
    finally:
        _write_flags(previous)
