"""Numeric precision modes, and TF32 emulated on the CPU.

A mode fixes three things: the dtype of weights, inputs and optimizer state; whether the
forward pass runs under autocast (and with which dtype); and the backend flags that decide
whether fp32 GEMMs and convolutions may use TF32 tensor cores. ``precision(mode, device)``
sets the flags, restores the previous ones on exit, and yields the effective state for a
run's metadata.

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
        """fp16 autocast needs dynamic loss scaling to keep small gradients from flushing."""
        return self.autocast_dtype == torch.float16

    def autocast(self, device_type: str) -> contextlib.AbstractContextManager[None]:
        """Autocast context for the forward pass (a no-op for the non-autocast modes)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=self.autocast_dtype)


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
            "float32 weights, bfloat16 autocast",
        ),
        PrecisionMode(
            "amp_fp16", torch.float32, torch.float16, False,
            "float32 weights, float16 autocast with dynamic loss scaling",
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


def _normalise_padding(padding: object, weight: Tensor, dilation: object) -> object:
    if padding == "valid":
        return 0
    if padding == "same":
        dil = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
        sizes = weight.shape[2:]
        if any((d * (k - 1)) % 2 for d, k in zip(dil, sizes)):
            raise NotImplementedError("TF32 emulation supports padding='same' for odd kernels only")
        return tuple(d * (k - 1) // 2 for d, k in zip(dil, sizes))
    return padding


def _pair(value: object) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)  # type: ignore[list-item]


class _TF32Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):  # type: ignore[override]
        xr, wr = round_to_tf32(x), round_to_tf32(weight)
        ctx.save_for_backward(xr, wr)
        ctx.conf = (_pair(stride), _pair(padding), _pair(dilation), groups, bias is not None)
        return F.conv2d(xr, wr, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        xr, wr = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.conf
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            round_to_tf32(grad_out), xr, wr, None, stride, padding, dilation,
            False, [0, 0], groups, [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False],
        )
        grad_b = grad_out.sum((0, 2, 3)) if has_bias else None
        return grad_x, grad_w, grad_b, None, None, None, None


class _TF32Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        xr, wr = round_to_tf32(x), round_to_tf32(weight)
        ctx.save_for_backward(xr, wr)
        ctx.has_bias = bias is not None
        return F.linear(xr, wr, bias)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        xr, wr = ctx.saved_tensors
        gr = round_to_tf32(grad_out)
        grad_x = gr @ wr
        grad_w = gr.reshape(-1, gr.shape[-1]).T @ xr.reshape(-1, xr.shape[-1])
        grad_b = grad_out.reshape(-1, grad_out.shape[-1]).sum(0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b


class EmulatedTF32(TorchFunctionMode):
    """Route float32 ``conv2d`` and ``linear`` calls through TF32-rounded autograd functions."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func is F.conv2d and _all_float32(args, kwargs):
            call = _bind(args, kwargs, ("input", "weight", "bias", "stride", "padding",
                                        "dilation", "groups"), (None, 1, 0, 1, 1))
            call[4] = _normalise_padding(call[4], call[1], call[5])
            return _TF32Conv2d.apply(*call)
        if func is F.linear and _all_float32(args, kwargs):
            return _TF32Linear.apply(*_bind(args, kwargs, ("input", "weight", "bias"), (None,)))
        return func(*args, **kwargs)


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
    """Set the backend flags for ``mode`` on ``device``; yield the effective state.

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
    try:
        with EmulatedTF32() if emulate else contextlib.nullcontext():
            yield state
    finally:
        _write_flags(previous)
