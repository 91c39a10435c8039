import struct
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnconv.engine.precision as precision_mod
from cnnconv.engine.models import build_model
from cnnconv.engine.precision import MODES, get_mode, precision, round_to_tf32


def _bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def _float(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


def reference_tf32(value: float) -> int:
    """Nearest TF32 value by exact rational arithmetic, ties to the even mantissa."""
    bits = _bits(value)
    if (bits >> 23) & 0xFF == 0xFF:
        return bits
    down = bits & ~0x1FFF  # toward zero: the TF32 neighbour of smaller magnitude
    up = down + 0x2000     # the next one away from zero (may be infinity)
    exact = Fraction(value)
    d_down = abs(exact - Fraction(_float(down)))
    up_value = _float(up)
    if abs(up_value) == float("inf"):
        # Rounding up overflows: infinity stands where 2**128 would be.
        up_exact = Fraction(2**128) * (1 if value > 0 else -1)
    else:
        up_exact = Fraction(up_value)
    d_up = abs(exact - up_exact)
    if d_down < d_up:
        return down
    if d_up < d_down:
        return up
    return down if (down >> 13) & 1 == 0 else up


float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=3000, deadline=None)
@given(st.lists(float32s, min_size=1, max_size=64))
def test_round_to_tf32_matches_exact_nearest_even_bit_for_bit(values):
    got = round_to_tf32(torch.tensor(values, dtype=torch.float32)).view(torch.int32).tolist()
    assert [g & 0xFFFFFFFF for g in got] == [reference_tf32(v) for v in values]


@given(st.integers(0, 2**32 - 1))
def test_round_to_tf32_over_all_bit_patterns(bits):
    value = _float(bits)
    # built from the bits: a Python float would quiet a signalling NaN on the way in
    signed = torch.tensor([bits - (bits >> 31 << 32)], dtype=torch.int32)
    got = round_to_tf32(signed.view(torch.float32)).view(torch.int32).item() & 0xFFFFFFFF
    if (bits >> 23) & 0xFF == 0xFF:
        assert got == bits  # infinities and NaNs pass through with every bit
    else:
        assert got == reference_tf32(value)
        assert got & 0x1FFF == 0  # a TF32 number: the 13 low bits are clear


def test_ties_go_to_even_and_overflow_goes_to_infinity():
    one = 1.0
    tie_down = _float(_bits(one) + 0x1000)          # halfway between 1 and its TF32 successor
    tie_up = _float(_bits(one) + 0x2000 + 0x1000)   # halfway from an odd mantissa
    largest = _float(0x7F7FFFFF)
    out = round_to_tf32(torch.tensor([tie_down, tie_up, largest, -largest]))
    assert out.tolist() == [1.0, _float(_bits(one) + 0x4000), float("inf"), float("-inf")]


def test_round_to_tf32_refuses_other_dtypes():
    with pytest.raises(TypeError, match="float32"):
        round_to_tf32(torch.ones(2, dtype=torch.float64))


def test_context_sets_and_restores_flags():
    before = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    with precision("fp32", "cpu") as state:
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert state["conv_fp32_precision"] == "ieee" and not state["tf32_emulated"]
    with precision("tf32", "cpu") as state:
        assert state["matmul_fp32_precision"] == "tf32" and state["tf32_emulated"]
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == before


def test_flags_are_restored_after_an_exception():
    before = torch.backends.cudnn.conv.fp32_precision
    with pytest.raises(RuntimeError), precision("fp32", "cpu"):
        raise RuntimeError("boom")
    assert torch.backends.cudnn.conv.fp32_precision == before


def test_unknown_precision_lists_choices():
    with pytest.raises(ValueError, match="unknown precision 'fp8'; choose one of fp64, fp32, tf32"):
        get_mode("fp8")


def test_emulated_conv_and_linear_equal_fp32_ops_on_rounded_operands():
    """Forward and both backward products take TF32 operands; the bias gradient is the
    unrounded sum. A backward pass outside the context is plain fp32, as on CUDA once
    ``precision`` has restored the flags."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    grad = torch.randn(2, 4, 5, 5)
    with precision("tf32", "cpu"):
        y = F.conv2d(x, w, b, stride=2, padding=1)
        z = F.linear(y.flatten(1), torch.randn(5, 100))
        y.backward(grad, retain_graph=True)
    xr, wr, gr = round_to_tf32(x.detach()), round_to_tf32(w.detach()), round_to_tf32(grad)
    torch.testing.assert_close(y, F.conv2d(xr, wr, b, stride=2, padding=1), rtol=0, atol=0)
    expected_gx = torch.nn.grad.conv2d_input(x.shape, wr, gr, stride=2, padding=1)
    expected_gw = torch.nn.grad.conv2d_weight(xr, w.shape, gr, stride=2, padding=1)
    torch.testing.assert_close(x.grad, expected_gx, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(w.grad, expected_gw, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(b.grad, grad.sum((0, 2, 3)))
    assert z.shape == (2, 5)
    x.grad = None
    y.backward(grad)
    plain = torch.nn.grad.conv2d_input(x.shape, w.detach(), grad, stride=2, padding=1)
    torch.testing.assert_close(x.grad, plain, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(plain, expected_gx, rtol=1e-6, atol=1e-6)


def test_emulation_refuses_inference_mode():
    """Inference tensors skip the dispatch key the rounding sits on: refuse, don't
    silently compute fp32."""
    with torch.inference_mode(), pytest.raises(RuntimeError, match=r"torch\.no_grad"):
        with precision("tf32", "cpu"):
            pass


def test_emulation_without_rounding_is_plain_fp32(monkeypatch):
    """The product kernels are exact; only the rounding makes TF32 differ."""
    torch.manual_seed(0)
    model = build_model("resnet18", width=8)
    x = torch.randn(4, 3, 32, 32)
    model(x).square().mean().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    monkeypatch.setattr(precision_mod, "round_to_tf32", lambda t: t)
    with precision("tf32", "cpu"):
        model(x).square().mean().backward()
    for a, b in zip(plain, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_tf32_emulation_changes_results_by_tf32_sized_amounts():
    torch.manual_seed(0)
    a, b = torch.randn(64, 256), torch.randn(256, 64)
    exact = a.double() @ b.double()
    with precision("tf32", "cpu"):
        emulated = F.linear(a, b.T)
    error = ((emulated.double() - exact).norm() / exact.norm()).item()
    assert 1e-5 < error < 2e-3  # fp32 would give ~1e-7; TF32's unit roundoff is ~5e-4


@pytest.mark.parametrize("name", list(MODES))
def test_every_mode_runs_a_training_step(name):
    mode = get_mode(name)
    model = build_model("lenet5").to(mode.param_dtype)
    x = torch.randn(8, 3, 32, 32, dtype=mode.param_dtype)
    with precision(mode, "cpu"):
        loss = F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long))
    loss.backward()
    assert torch.isfinite(loss)
    assert next(model.parameters()).grad.dtype == mode.param_dtype


def test_cudnn_autotuning_is_on_for_cuda_runs_only_and_restored():
    """``fast_kernels`` sets ``cudnn.benchmark`` directly: ``cudnn.flags()`` would also
    write the legacy ``allow_tf32`` setter, and mixing it with ``fp32_precision`` makes
    reading the flags raise."""
    from cnnconv.engine.device import fast_kernels

    before = torch.backends.cudnn.benchmark
    with fast_kernels(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark == before
    with precision("fp32", "cuda") as state, fast_kernels(torch.device("cuda", 1)):
        assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cudnn.conv.fp32_precision == state["conv_fp32_precision"] == "ieee"
    assert torch.backends.cudnn.benchmark == before
