"""Rules for how aten's convolutions and matrix products compute, applied in the dispatcher.

Two of the engine's rules change how a product is computed without touching the code that
calls it, and both must see the products as they actually run: after ``torch.func.vmap``
has folded a stack's seeds into one grouped convolution, and in the backward pass as well
as the forward one. Kernels registered on the products at the ``ADInplaceOrView``
dispatch key do: that key sits below vmap's batching and below autograd (so a backward
pass's ``convolution_backward`` and ``mm`` calls reach it too), and no other op pays for
them. ``product_rules`` registers them for the duration of a ``with`` block.

- ``round_operands`` (TF32 emulation): a function applied to both operands of every fp32
  product, forward and backward. A convolution's bias gradient is a sum of the incoming
  gradient, not a product: it is summed from the unrounded gradient.
- ``seeds`` (stacked convolutions on a CPU): a grouped convolution whose groups hold fewer
  than ``THIN`` input channels each, whose groups split into ``seeds`` equal parts (vmap's
  fold of ``seeds`` convolutions) and whose parts have at least ``SPLIT_MACS``
  multiply-adds each, is computed part by part, each as the plain convolution of one
  seed: bit for bit that seed's own product (a bias is vmap's add after the product; a
  seed alone hands it to its convolution, which may round it in differently). oneDNN's
  grouped kernel is slow for groups that thin, and as fast or faster from 4 channels per
  group; below ``SPLIT_MACS`` a seed's part is too small for the split to pay. Both
  thresholds come from the layer timings in benchmarks/README.md (engine 4), which
  ``pytest benchmarks -k stacked_convolution`` measures. The groups never mix.

The rules are process-wide while a block is active (a backward pass runs them whichever
thread it runs on), and blocks nest: an inner one changes the rules it names until it
exits. Tensors made under ``torch.inference_mode`` skip the ``ADInplaceOrView`` key, so
the rules refuse to run there rather than silently not apply.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

THIN = 4  # input channels per group below which a stacked convolution runs seed by seed
SPLIT_MACS = 2_000_000  # ... if a seed's part has at least this many multiply-adds

# aten product -> positions of its operands (bias and outputs excluded). Every matmul
# and convolution reaches one of these below autograd and vmap (linear becomes addmm or,
# under vmap, bmm; a convolution's backward is convolution_backward: the incoming
# gradient and both forward operands).
PRODUCT_OPERANDS = {
    "mm": (0, 1), "bmm": (0, 1), "addmm": (1, 2), "baddbmm": (1, 2), "addbmm": (1, 2),
    "mv": (0, 1), "addmv": (1, 2), "dot": (0, 1),
    "convolution": (0, 1), "convolution_backward": (0, 1, 2),
}
_BELOW = torch._C._after_ADInplaceOrView_keyset


@dataclass(frozen=True)
class _Rules:
    round_operands: Callable[[Tensor], Tensor] | None = None
    seeds: int = 1


_rules = _Rules()
_lock = threading.Lock()
_depth = 0
_library: torch.library.Library | None = None


@contextlib.contextmanager
def product_rules(*, round_operands: Callable[[Tensor], Tensor] | None = None,
                  seeds: int | None = None) -> Iterator[None]:
    """Apply the rules named (module docstring) to every product computed inside."""
    global _rules, _depth, _library
    if torch.is_inference_mode_enabled():
        raise RuntimeError("cnnconv's product rules (TF32 emulation, stacked convolutions) "
                           "cannot see products under torch.inference_mode; use "
                           "torch.no_grad() instead")
    changes = {k: v for k, v in (("round_operands", round_operands), ("seeds", seeds))
               if v is not None}
    with _lock:
        previous = _rules
        _rules = replace(_rules, **changes)
        if _depth == 0:
            _library = torch.library.Library("aten", "IMPL")
            for name in PRODUCT_OPERANDS:
                _library.impl(name, _KERNELS[name], "ADInplaceOrView", with_keyset=True)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _rules = previous
            _depth -= 1
            if _depth == 0 and _library is not None:
                _library._destroy()
                _library = None
                _kept.clear()


# A convolution's rounded operands, from its forward call to its backward one (which reads
# the same input and weight and would round them again): keyed by the original's address,
# version and layout -- same memory and version, same values -- and held with it, so that
# the address cannot be reused while the entry lives. The first backward to read an entry
# takes it; whatever is left when the rules end is dropped.
_kept: dict[tuple, tuple[Tensor, Tensor]] = {}


def _identity(t: Tensor) -> tuple:
    return t.data_ptr(), t._version, tuple(t.shape), t.stride(), t.dtype


def _rounded(args: tuple, name: str, keep: bool = False) -> list:
    """``args`` with the product's fp32 operands rounded, if a rounding rule is active;
    ``keep`` holds them for the backward call (``_kept``)."""
    args = list(args)
    rounding = _rules.round_operands
    positions = PRODUCT_OPERANDS[name]
    if rounding is None or any(args[i].dtype != torch.float32 for i in positions):
        return args
    for i in positions:
        original, found = args[i], _kept.pop(_identity(args[i]), None)
        args[i] = rounding(original) if found is None else found[1]
        if keep:
            _kept[_identity(original)] = (original, args[i])
    return args


def _product(name: str):
    op = getattr(torch.ops.aten, name).default

    def kernel(keyset, *args, **kwargs):
        if _rules.round_operands is not None:
            args = _rounded(args, name)
        return op.redispatch(keyset & _BELOW, *args, **kwargs)

    return kernel


def _seed_parts(x: Tensor, weight: Tensor, out_size: Sequence[int], transposed: bool,
                groups: int) -> int:
    """How many parts a convolution is computed in: ``seeds`` for a thin stacked one with
    enough work per seed, else 1."""
    seeds = _rules.seeds
    if seeds == 1 or transposed or groups % seeds or weight.shape[1] >= THIN:
        return 1
    macs = x.shape[0] * weight.shape[0] // seeds * math.prod(out_size) * math.prod(weight.shape[1:])
    return seeds if macs >= SPLIT_MACS else 1


def _parts(t: Tensor, parts: int, dim: int) -> list[Tensor]:
    """``t`` cut into ``parts`` along ``dim``, each contiguous: one seed's tensor, laid out
    as it is when that seed trains alone (so its convolution sums in the same order)."""
    return [part.contiguous() for part in t.chunk(parts, dim)]


_convolution_op = torch.ops.aten.convolution.default
_convolution_backward_op = torch.ops.aten.convolution_backward.default


def _plain(weight: Tensor) -> bool:
    """No rule touches a convolution with this weight (the common case, kept cheap: it is
    asked on every call)."""
    return _rules.round_operands is None and (_rules.seeds == 1 or weight.shape[1] >= THIN)


def _convolution(keyset, *args):
    if _plain(args[1]):
        return _convolution_op.redispatch(keyset & _BELOW, *args)
    needs_backward = torch.is_grad_enabled() and (args[0].requires_grad or args[1].requires_grad)
    x, weight, bias, stride, padding, dilation, transposed, output_padding, groups = \
        _rounded(args, "convolution", keep=needs_backward)
    below = keyset & _BELOW
    out_size = [(size + 2 * pad - dil * (k - 1) - 1) // step + 1 for size, k, step, pad, dil
                in zip(x.shape[2:], weight.shape[2:], stride, padding, dilation)]
    parts = _seed_parts(x, weight, out_size, transposed, groups)
    if parts == 1:
        return _convolution_op.redispatch(below, x, weight, bias, stride, padding, dilation,
                                          transposed, output_padding, groups)
    biases = [None] * parts if bias is None else _parts(bias, parts, 0)
    return torch.cat([
        _convolution_op.redispatch(below, xs, ws, bs, stride, padding, dilation, transposed,
                                   output_padding, groups // parts)
        for xs, ws, bs in zip(_parts(x, parts, 1), _parts(weight, parts, 0), biases)], 1)


def _convolution_backward(keyset, *args):
    if _plain(args[2]):
        return _convolution_backward_op.redispatch(keyset & _BELOW, *args)
    (grad, x, weight, bias_sizes, stride, padding, dilation, transposed, output_padding,
     groups, mask) = _rounded(args, "convolution_backward")
    below = keyset & _BELOW
    bias_grad = None
    if mask[2] and _rules.round_operands is not None:
        unrounded = args[0]
        bias_grad = unrounded.sum([d for d in range(unrounded.ndim) if d != 1])
        mask = [mask[0], mask[1], False]
    parts = _seed_parts(x, weight, grad.shape[2:], transposed, groups)
    if parts == 1:
        grads = _convolution_backward_op.redispatch(
            below, grad, x, weight, bias_sizes, stride, padding, dilation, transposed,
            output_padding, groups, mask)
    else:
        sizes = None if bias_sizes is None else [bias_sizes[0] // parts]
        each = [_convolution_backward_op.redispatch(
            below, gs, xs, ws, sizes, stride, padding, dilation, transposed, output_padding,
            groups // parts, mask)
            for gs, xs, ws in zip(_parts(grad, parts, 1), _parts(x, parts, 1),
                                  _parts(weight, parts, 0))]
        grads = tuple(torch.cat([g[i] for g in each], 1 if i == 0 else 0) if mask[i] else None
                      for i in range(3))
    return grads if bias_grad is None else (grads[0], grads[1], bias_grad)


_KERNELS = {name: _product(name) for name in PRODUCT_OPERANDS}
_KERNELS["convolution"] = _convolution
_KERNELS["convolution_backward"] = _convolution_backward
