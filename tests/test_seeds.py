"""The multi-seed engine: stacked models, the optimizer and the loss scaler, and the claim
that a seed trained in a stack gives the run it gives alone.

Tolerance. Stacking changes no arithmetic rule, only the order in which a grouped
convolution sums what single convolutions sum, and where a bias is added (and so the
rounding). In fp64 that is invisible in the stored (float32) losses: the curves must be
equal. In the other modes
the stacked curves may differ from the single ones by at most ``TWIN_FACTOR`` times what
the farther of the run's two one-ulp twins moves them (``cnnconv.engine.twin``), over
the first ``EARLY_STEPS``; the same bound must see a stack that mixed its seeds. Width 4
because this CPU has no fast fp16 convolution (amp_fp16's case takes 2.5x as long at
width 8).
"""

import math

import numpy as np
import pytest
import torch

from cnnconv.engine.models import build_model
from cnnconv.engine.optimizer import SeedLossScaler, SeedOptimizer
from cnnconv.engine.precision import MODES
from cnnconv.engine.spec import RunSpec
from cnnconv.engine.stacking import SeedStack, vectorisable
from cnnconv.engine.train import initial_model, train, train_seeds
from cnnconv.engine.twin import EARLY_STEPS, TWIN_FACTOR, mean_gap, rounding_floor


def _specs(precision, seeds=3, **changes):
    base = dict(model="resnet18", model_options={"width": 4, "cbam": "all"}, dataset="synthetic",
                precision=precision, batch_size=32, iterations=30, lr=0.02, eval_at=(15,))
    base.update(changes)
    return [RunSpec(**base, seed=seed) for seed in range(seeds)]


@pytest.mark.parametrize("precision", list(MODES))
def test_a_stacked_seed_matches_its_single_run_within_rounding(precision, tiny, one_thread):
    specs = _specs(precision, iterations=2 * EARLY_STEPS, eval_at=(EARLY_STEPS,))
    single = [train(spec, dataset=tiny) for spec in specs]
    stacked = train_seeds(specs, dataset=tiny, vectorise=True)
    assert [r.spec for r in stacked] == specs
    assert all(r.environment["stack"] == "3" for r in stacked)
    assert all(r.eval_iterations == [EARLY_STEPS, 2 * EARLY_STEPS] for r in stacked)
    if precision == "fp64":
        assert mean_gap(single, stacked) == 0.0
        assert [r.test_accuracy for r in single] == [r.test_accuracy for r in stacked]
        return
    gap = mean_gap(single, stacked, EARLY_STEPS)
    floor = rounding_floor(single, precision, lambda ulps: [
        train(spec, dataset=tiny, nudge_ulps=ulps) for spec in specs], EARLY_STEPS)
    assert 0 < gap <= TWIN_FACTOR * floor, f"stack moved the curves by {gap:.3g}, rounding by {floor:.3g}"
    # The bug the bound is for: a stack that handed each seed another seed's run.
    swapped = mean_gap(single, single[1:] + single[:1], EARLY_STEPS)
    assert swapped > TWIN_FACTOR * floor, f"mixed seeds move the curves by only {swapped:.3g}"


def test_a_twin_moves_every_initial_weight_one_ulp_either_way(tiny):
    """Up and down by the gap to the next value that way: BatchNorm's weights start at 1.0,
    where the gap below is half the gap above (a down-step of the upward gap moves them
    two ulps; at -1.0 it rounds back to -1.0 and moves nothing)."""
    spec = _specs("fp32", seeds=1)[0]
    weights = [initial_model(spec, tiny, torch.device("cpu"), nudge).parameters()
               for nudge in (0, 1, -1, -2)]
    powers_of_two = 0
    for p, up, down, down2 in zip(*weights):
        assert torch.equal(up, torch.nextafter(p, torch.full_like(p, math.inf)))
        below = torch.nextafter(p, torch.full_like(p, -math.inf))
        assert torch.equal(down, below)
        assert torch.equal(down2, p + 2 * (below - p))
        powers_of_two += int((p == 1.0).sum())
    assert powers_of_two > 0


def test_stacked_seeds_are_independent(tiny):
    """Seed 1's run does not depend on which seeds share its stack."""
    a = train_seeds(_specs("fp64", seeds=2), dataset=tiny, vectorise=True)[1]
    b = train_seeds([s.replace(seed=seed) for s, seed in zip(_specs("fp64", seeds=2), (7, 1))],
                    dataset=tiny, vectorise=True)[1]
    assert a.environment["stack"] == b.environment["stack"] == "2"
    assert np.array_equal(a.losses, b.losses)


def test_dropout_masks_are_drawn_per_seed_so_lenet_stacks(tiny):
    """LeNet's dropout masks come from each seed's own generator, outside the step: a seed
    stacked with others computes (fp64: bit for bit) what it computes alone, and its
    masks do not depend on its stack-mates. Drawn under vmap, they would."""
    specs = _specs("fp64", seeds=3, model="lenet5", model_options={}, iterations=12, eval_at=())
    single = [train(spec, dataset=tiny) for spec in specs]
    stacked = train_seeds(specs, dataset=tiny, vectorise=True)
    assert [r.environment["stack"] for r in stacked] == ["3"] * 3
    for alone, together in zip(single, stacked):
        assert np.array_equal(alone.losses, together.losses)
    other = train_seeds([specs[2].replace(seed=9), specs[1]], dataset=tiny, vectorise=True)[1]
    assert np.array_equal(other.losses, single[1].losses)


def test_only_plain_dropout_can_be_stacked():
    assert vectorisable(build_model("lenet5")) and vectorisable(build_model("resnet9"))
    spatial = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Dropout2d(0.2))
    assert not vectorisable(spatial)
    with pytest.raises(ValueError, match=r"other than nn\.Dropout"):
        SeedStack([spatial, spatial])
    stack = SeedStack([build_model("lenet5"), build_model("lenet5")]).train()
    with pytest.raises(ValueError, match=r"pass the masks"):
        stack(torch.randn(2, 4, 3, 32, 32))


def test_specs_trained_together_may_differ_only_in_seed():
    with pytest.raises(ValueError, match="may differ only in seed"):
        train_seeds([_specs("fp32")[0], _specs("fp32", lr=0.1)[1]])
    with pytest.raises(ValueError, match="distinct seeds"):
        train_seeds([_specs("fp32")[0]] * 2)


def test_stack_forward_equals_each_model():
    torch.manual_seed(0)
    models = [build_model("resnet18", width=8, cbam="all").double().eval() for _ in range(3)]
    stack = SeedStack(models).eval()
    x = torch.randn(3, 4, 3, 32, 32, dtype=torch.float64)
    out = stack(x)
    for i, model in enumerate(models):
        torch.testing.assert_close(out[i], model(x[i]))
    shared = stack(x[0], per_seed=False)
    torch.testing.assert_close(shared[2], models[2](x[0]))
    copy = stack.unstack(1)
    torch.testing.assert_close(copy(x[0]), models[1](x[0]))


def test_no_bias_decay_marks_only_conv_and_linear_weights():
    stack = SeedStack([build_model("resnet18", width=8)] * 2)
    flags = dict(zip(stack.params, stack.is_weight()))
    assert flags["conv1.weight"] and flags["fc.weight"]
    assert not flags["fc.bias"] and not flags["bn1.weight"]


LR32 = float(torch.tensor(0.1, dtype=torch.float32))  # 0.1 as the engine's float32 lr holds it


@pytest.mark.parametrize("kind,torch_optimizer", [
    ("sgd", lambda p: torch.optim.SGD(p, lr=LR32, momentum=0.9, weight_decay=1e-2)),
    ("nesterov", lambda p: torch.optim.SGD(p, lr=LR32, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("adam", lambda p: torch.optim.Adam(p, lr=LR32, weight_decay=1e-2)),
])
def test_seed_optimizer_matches_torch_optim(kind, torch_optimizer):
    """Same arithmetic as torch.optim (in fp64, where the order of operations is invisible),
    with the engine's float32 learning rate tensor (the fused CUDA kernels take no other)."""
    torch.manual_seed(0)
    stacked = [torch.randn(3, 5, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)]
    reference = [[t[i].clone() for t in stacked] for i in range(3)]
    references = [torch_optimizer(params) for params in reference]
    optimizer = SeedOptimizer(stacked, [True, True], kind, 0.9, 1e-2)
    for _ in range(5):
        grads = [torch.randn_like(t) for t in stacked]
        optimizer.step(grads, torch.tensor(0.1, dtype=torch.float32))
        for i, (params, ref) in enumerate(zip(reference, references)):
            for p, g in zip(params, grads):
                p.grad = g[i].clone()
            ref.step()
    for i, params in enumerate(reference):
        for p, t in zip(params, stacked):
            torch.testing.assert_close(t[i], p, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_a_skipped_seed_keeps_weights_and_state_exactly(kind):
    torch.manual_seed(0)
    stacked = [torch.randn(2, 6)]
    optimizer = SeedOptimizer(stacked, [False], kind, 0.9, 0.0)
    optimizer.step([torch.randn(2, 6)], torch.tensor(0.1))
    before = stacked[0].clone(), optimizer.state[0].clone()
    grads = torch.randn(2, 6)
    grads[1, 0] = float("inf")  # seed 1 overflowed
    optimizer.step([grads], torch.tensor(0.1), apply=torch.tensor([True, False]))
    assert torch.equal(stacked[0][1], before[0][1]) and torch.equal(optimizer.state[0][1], before[1][1])
    assert not torch.equal(stacked[0][0], before[0][0]) and torch.isfinite(stacked[0]).all()
    assert optimizer.step_count.tolist() == [2, 1]


def test_loss_scaler_follows_grad_scaler_seed_by_seed():
    scaler = SeedLossScaler(2, torch.device("cpu"), init_scale=8.0, growth_interval=2)
    reference = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=2)
    weight = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([weight], lr=0.0)
    for overflow in (False, True, False, False, True):
        grad = torch.tensor([[float("inf") if overflow else 1.0], [1.0]])
        unscaled, finite = scaler.unscale([grad * scaler.scale[:, None]])
        scaler.update(finite)
        reference.scale(weight.sum())  # (GradScaler insists on scaling a loss first)
        weight.grad = grad[0] * reference.get_scale()
        reference.step(optimizer)
        reference.update()
        assert finite.tolist() == [not overflow, True]
        assert scaler.scale[0].item() == reference.get_scale()
        assert unscaled[0][1].item() == 1.0
    assert scaler.scale[1].item() == 8.0 * 2 * 2  # the clean seed grew every 2 steps


@pytest.mark.parametrize("kind,kernel", [("sgd", "_fused_sgd_"), ("nesterov", "_fused_sgd_"),
                                         ("adam", "_fused_adam_")])
def test_the_optimizer_touches_the_weights_only_in_one_fused_kernel_per_group(kind, kernel):
    """One read and one write of each weight, gradient and state: the old ``_foreach``
    step computed out of place and copied back (about 14 passes over the weights). Besides
    the fused kernel, only views (``select``) and the per-seed step counter may run."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    params = [torch.randn(3, 5, 4), torch.randn(3, 4)]
    optimizer = SeedOptimizer(params, [True, False], kind, 0.9, 1e-2)
    grads = [torch.randn_like(p) for p in params]
    lr = torch.tensor(0.1)
    for apply, calls in ((None, 2), (torch.tensor([True, False, True]), 2 * 3)):
        recorder = Ops()
        with recorder:
            optimizer.step(grads, lr, apply=apply)
        bookkeeping = {"lift_fresh", "select", "add_", "bitwise_not", "_to_copy"}  # counters, masks
        assert [op for op in recorder.ops if op not in bookkeeping] == [kernel] * calls


@pytest.mark.parametrize("kind", ["sgd", "nesterov"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_every_parameter_dtype_steps_like_the_textbook_update(kind, dtype, monkeypatch):
    """Pure bf16 (P0-PREC-2) trains bf16 weights with this optimizer. torch's CPU fused SGD
    kernel leaves most of an fp16/bf16 tensor unchanged (pytorch/pytorch#191763); without
    the workaround in optimizer.py this is ~100 epsilons off (and bf16 runs barely train)."""
    from cnnconv.engine import optimizer
    from cnnconv.tools import doctor

    assert doctor.optimizer_gap(kind, dtype, "cpu") <= 4
    if dtype in (torch.bfloat16, torch.float16):
        monkeypatch.setattr(optimizer, "_LOW_PRECISION", ())
        assert doctor.optimizer_gap(kind, dtype, "cpu") > 50
