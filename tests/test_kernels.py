"""The product rules of ``cnnconv.engine.kernels``: what a stacked thin convolution computes, seed
by seed, forward and backward; which convolutions are split; TF32 rounding on top; and
that nothing stays registered after a block exits.

The split is meant to change speed, not arithmetic: each part is the plain convolution of
one seed, so a seed's first-layer products and gradients are bit for bit its own
convolution's. oneDNN's grouped kernel sums in another order, so without the rule the
same outputs differ in the last bits: the bitwise checks below see a missing split.

A stacked bias is not part of the product: vmap adds it after the convolution, as an
add. The references below do the same. A model alone hands its bias to the convolution,
which need not equal the convolution plus the bias: on an AVX2 CPU they differ by up to
1e-5 at these shapes (on an AVX-512 one these checks passed with the bias inside), so a
reference with the bias inside passes on one CPU and fails on another.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap
from torch.utils._python_dispatch import TorchDispatchMode

from cnnconv.engine import kernels
from cnnconv.engine.kernels import SPLIT_MACS, THIN, product_rules
from cnnconv.engine.models import build_model
from cnnconv.engine.precision import round_to_tf32

SEEDS = 3


class Convolutions(TorchDispatchMode):
    """The ``groups`` of every convolution and convolution backward reaching the kernels."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[str, list[int]] = {"convolution": [], "convolution_backward": []}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.groups:
            self.groups[name].append(args[8] if name == "convolution" else args[9])
        return func(*args, **(kwargs or {}))


def _stacked_first_layer(channels=3, bias=True):
    torch.manual_seed(0)
    x = torch.randn(SEEDS, 32, channels, 24, 24, requires_grad=True)
    w = torch.randn(SEEDS, 8, channels, 5, 5, requires_grad=True)
    b = torch.randn(SEEDS, 8, requires_grad=True) if bias else None
    return x, w, b


def _vmapped(x, w, b, **rules):
    """Forward and backward of the stacked convolution under vmap, with ``rules``."""
    conv = vmap(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1))
    recorder = Convolutions()
    with product_rules(**rules), recorder:
        out = conv(x, w, b)
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad(out, [x, w, b], grad)
    return out, grads, grad, recorder.groups


def test_a_thin_stacked_convolution_is_each_seeds_own_convolution(one_thread):
    x, w, b = _stacked_first_layer()
    assert 32 * 8 * 11 * 11 * 3 * 5 * 5 >= SPLIT_MACS  # a seed's multiply-adds
    out, grads, grad, groups = _vmapped(x, w, b, seeds=SEEDS)
    assert groups == {"convolution": [1] * SEEDS, "convolution_backward": [1] * SEEDS}
    for seed in range(SEEDS):
        xs, ws, bs = (t[seed].detach().requires_grad_() for t in (x, w, b))
        alone = F.conv2d(xs, ws, None, stride=2, padding=1) + bs[:, None, None]
        expected = torch.autograd.grad(alone, [xs, ws, bs], grad[seed])
        assert torch.equal(out[seed], alone)
        assert torch.equal(grads[0][seed], expected[0]) and torch.equal(grads[1][seed], expected[1])
        # vmap adds a stacked bias outside the convolution: its gradient is summed elsewhere
        torch.testing.assert_close(grads[2][seed], expected[2], rtol=1e-4, atol=1e-4)


def test_without_the_rule_the_grouped_kernel_rounds_differently(one_thread):
    """The negative control: the bitwise check above would fail without the split."""
    x, w, b = _stacked_first_layer()
    out, grads, _, groups = _vmapped(x, w, b, seeds=1)
    assert groups == {"convolution": [SEEDS], "convolution_backward": [SEEDS]}
    split, split_grads, _, _ = _vmapped(x, w, b, seeds=SEEDS)
    torch.testing.assert_close(out, split, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grads[1], split_grads[1], rtol=1e-5, atol=1e-3)
    assert not torch.equal(out, split) or not torch.equal(grads[1], split_grads[1])


def test_only_thin_stacked_convolutions_are_split():
    x, w, b = _stacked_first_layer(channels=THIN)
    assert _vmapped(x, w, b, seeds=SEEDS)[3]["convolution"] == [SEEDS]
    x, w, b = _stacked_first_layer()
    assert _vmapped(x, w, b, seeds=2)[3]["convolution"] == [SEEDS]  # 3 groups, not 2 parts
    x, w, b = _stacked_first_layer()
    x = x[:, :4].detach().requires_grad_()
    assert _vmapped(x, w, b, seeds=SEEDS)[3]["convolution"] == [SEEDS]  # batch 4: too little work
    recorder = Convolutions()
    with product_rules(seeds=2), recorder:  # a transposed convolution keeps its groups
        F.conv_transpose2d(torch.randn(1, 4, 5, 5), torch.randn(4, 3, 3, 3), groups=2)
    assert recorder.groups["convolution"] == [2]


def test_split_and_tf32_rounding_combine(one_thread):
    """Each seed's part takes TF32 operands: its plain convolution on rounded operands;
    the bias gradient is the unrounded sum."""
    x, w, b = _stacked_first_layer()
    out, grads, grad, _ = _vmapped(x, w, b, seeds=SEEDS, round_operands=round_to_tf32)
    for seed in range(SEEDS):
        xr, wr = round_to_tf32(x[seed].detach()), round_to_tf32(w[seed].detach())
        own = F.conv2d(xr, wr, None, stride=2, padding=1) + b[seed, :, None, None]
        assert torch.equal(out[seed], own)
        gr = round_to_tf32(grad[seed])
        want = torch.nn.grad.conv2d_weight(xr, wr.shape, gr, stride=2, padding=1)
        torch.testing.assert_close(grads[1][seed], want, rtol=1e-6, atol=1e-6)
        assert torch.equal(grads[2][seed], grad[seed].sum((0, 2, 3)))


def test_a_stacked_resnets_first_layer_runs_seed_by_seed(one_thread):
    """In a whole stacked network only the 3-channel input layer is split, and every
    seed's output matches its own model's."""
    torch.manual_seed(0)
    models = [build_model("resnet18", width=8).eval() for _ in range(SEEDS)]
    params, buffers = stack_module_state(models)
    skeleton = build_model("resnet18", width=8).to("meta").eval()
    x = torch.randn(SEEDS, 8, 3, 32, 32)  # batch 8: 2.4M multiply-adds a seed in conv1
    recorder = Convolutions()
    with torch.no_grad(), product_rules(seeds=SEEDS), recorder:
        out = vmap(lambda p, b, x: functional_call(skeleton, (p, b), (x,)))(params, buffers, x)
    assert recorder.groups["convolution"][:SEEDS] == [1] * SEEDS
    assert set(recorder.groups["convolution"][SEEDS:]) == {SEEDS}
    for seed, model in enumerate(models):
        torch.testing.assert_close(out[seed], model(x[seed]), rtol=1e-4, atol=1e-5)


def test_rules_nest_restore_and_unregister():
    x = torch.randn(2, 4, requires_grad=True)
    inexact = torch.full((4, 4), 1 + 2**-20)  # not a TF32 number
    with product_rules(round_operands=round_to_tf32):
        with product_rules(seeds=2):
            assert torch.equal(x @ inexact, x @ torch.ones(4, 4))  # still rounding
        assert torch.equal(x @ inexact, x @ torch.ones(4, 4))
    assert not torch.equal(x @ inexact, x @ torch.ones(4, 4))  # unregistered
    with torch.inference_mode(), pytest.raises(RuntimeError, match=r"torch\.no_grad"):
        with product_rules(seeds=2):
            pass


def test_a_convolutions_backward_reuses_its_forward_roundings():
    """The backward reads the input and weight the forward rounded: they are rounded once
    (held from forward to backward, then released), the incoming gradient once."""
    rounded = []

    def counting(t):
        rounded.append(tuple(t.shape))
        return round_to_tf32(t)

    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    with product_rules(round_operands=counting):
        y = F.conv2d(x, w)
        assert rounded == [(2, 3, 8, 8), (4, 3, 3, 3)] and len(kernels._kept) == 2
        y.backward(torch.ones_like(y))
        assert rounded[2:] == [(2, 4, 6, 6)] and not kernels._kept
        with torch.no_grad():
            F.conv2d(x, w)
        assert not kernels._kept  # nothing to hold for: no backward will come
        F.conv2d(x, w)  # a forward whose backward never runs ...
    assert not kernels._kept  # ... is released when the rules end
    expected = torch.nn.grad.conv2d_weight(round_to_tf32(x.detach()), w.shape,
                                           torch.ones(2, 4, 6, 6))
    torch.testing.assert_close(w.grad, expected, rtol=1e-6, atol=1e-5)
