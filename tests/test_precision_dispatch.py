"""What each precision mode computes, seen at the dispatch level.

``doctor.OperandRecorder``, a ``TorchDispatchMode`` below autograd and vmap, records the
operands of every convolution, matmul, BatchNorm and loss op of a whole one-step run
(forward, backward, evaluation) of ResNet-18 with CBAM in every block, for every mode,
one seed and a stack of three; ``doctor.violations`` holds them against the mode's
definition (precision.py's docstring). The bug this guards against was real: under
``torch.func.vmap`` CPU autocast cast nothing, so every stacked "amp" run computed in
fp32 (and a single-seed one ran BatchNorm on bf16 input); the tests, which checked that
runs ran, could not see it. On the old engine these tests fail for amp_bf16 and amp_fp16
with a stack of 3 (196 fp32 operands) and of 1 (112 bf16/fp16 BatchNorm operands). The
negative controls show the checks see such a bug: an fp32 run breaks the amp and tf32
rules.
"""

import pytest
import torch

from cnnconv.engine.precision import MODES
from cnnconv.tools.doctor import record_operands, violations


@pytest.mark.parametrize("seeds", [1, 3])
@pytest.mark.parametrize("precision", list(MODES))
def test_every_operand_has_the_dtype_its_mode_names(precision, seeds):
    calls = record_operands(precision, seeds, "cpu")
    # forward and backward of every kind were seen (vmap turns linears into bmm)
    assert calls["convolution"] and calls["convolution_backward"]
    assert calls["norm"] and calls["loss"]
    assert calls["mm"] or calls["bmm"] or calls["addmm"]
    bad = violations(precision, calls)
    assert not bad, f"{len(bad)} operands break {precision}: {sorted(set(bad))[:5]}"


@pytest.mark.parametrize("rule", ["amp_bf16", "amp_fp16", "tf32"])
def test_an_fp32_run_breaks_the_amp_and_tf32_rules(rule):
    """Were a stacked amp or tf32 run silently fp32, the check above would fail."""
    bad = violations(rule, record_operands("fp32", 3, "cpu"))
    assert any(v.startswith(("convolution", "bmm", "mm")) for v in bad)


def test_on_cuda_tf32_operands_are_plain_fp32():
    """The tensor cores round inside the product: on CUDA a tf32 operand is fp32 storage
    (doctor.check_products measures the rounding), and a bf16 one is still wrong."""
    x = torch.randn(4, 4)
    assert violations("tf32", {"mm": [(x, x)]}, device="cuda") == []
    assert violations("tf32", {"mm": [(x, x)]}, device="cpu")  # not TF32-representable
    assert violations("tf32", {"mm": [(x.bfloat16(), x)]}, device="cuda")


def test_a_bf16_batch_norm_breaks_the_amp_rule():
    """The single-seed half of the old bug: autocast left BatchNorm's input in bf16."""
    bad = violations("amp_bf16", record_operands("bf16", 1, "cpu"))
    assert any(v.startswith("norm: bfloat16") for v in bad)
