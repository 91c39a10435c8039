"""The plan's arithmetic: FLOPs counted exactly, runs priced from the throughput table."""


import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cnnconv.engine import datasets as data
from cnnconv.engine.device import device_name
from cnnconv.engine.models import build_model
from cnnconv.engine.spec import RunSpec
from cnnconv.harness.flops import count_flops, run_cost, step_flops
from cnnconv.harness.plan import Planner, estimate
from cnnconv.harness.store import RunStore
from cnnconv.harness.throughput import ThroughputTable


def test_resnet18_forward_is_the_published_count():
    # torchvision's ResNet-18 at 224x224, 1000 classes: 1.814 G multiply-adds (its model
    # card says 1.81 GFLOPS, counting a multiply-add once); FlopCounterMode counts two.
    flops = count_flops("resnet18", (), 1, (3, 224, 224), 1000, False)
    assert flops == pytest.approx(2 * 1.814e9, rel=1e-3)


@pytest.mark.parametrize("model,options", [("lenet5", ()), ("resnet9", (("width", 4),)),
                                           ("resnet18", (("cbam", "all"), ("width", 4)))])
def test_meta_tensors_count_what_the_cpu_computes(model, options):
    """The plan counts on meta tensors; a step executed on the CPU counts the same."""
    torch.manual_seed(0)
    network = build_model(model, 10, 3, 32, **dict(options))
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(network(images), labels).backward()
    assert count_flops(model, options, 8, (3, 32, 32), 10, True) == counter.get_total_flops()


def test_a_step_is_forward_and_backward_and_a_teacher_adds_its_forward():
    spec = RunSpec(model="resnet9", model_options={"width": 4}, iterations=10, batch_size=16)
    forward = count_flops("resnet9", (("width", 4),), 16, (3, 32, 32), 10, False)
    step = step_flops(spec, (3, 32, 32), 10)
    # backward: a gradient for weights and one for inputs (not for the image): ~2x forward
    assert 2.5 * forward < step < 3 * forward
    teacher = spec.replace(model_options={"width": 8})
    taught = step_flops(spec.replace(teacher=teacher), (3, 32, 32), 10)
    assert taught - step == count_flops("resnet9", (("width", 8),), 16, (3, 32, 32), 10, False)


def test_a_run_costs_its_steps_and_its_evaluations():
    tiny = data.synthetic(n_train=256, n_test=100)
    spec = RunSpec(model="lenet5", dataset="synthetic", epochs=2, batch_size=64, eval_at=(2,))
    cost = run_cost(spec, tiny)
    per_step = step_flops(spec, tiny.shape, 10)
    per_image = count_flops("lenet5", (), 1, tiny.shape, 10, False)
    assert cost.iterations == 8  # 2 epochs of 4 whole batches
    assert cost.flops == 8 * per_step + 2 * 100 * per_image  # evaluated at 2 and at 8


def test_stand_ins_name_the_stack_the_session_would_train_them_in(tmp_path):
    """A claim may compare runs of one stack size (P3-FP16's step rates); on stand-ins
    without a stack the plan failed it wherever one arm was stored, trained stacked."""
    planner = Planner(RunStore(tmp_path), None)
    plan = planner.claim("P-TEST", "test_p")
    specs = [RunSpec(model="lenet5", dataset="synthetic", iterations=4, batch_size=8, seed=seed)
             for seed in range(5)]
    assert [run.environment["stack"] for run in planner.fetch(plan, specs)] == ["5"] * 5
    in_twos = planner.fetch(plan, specs, stack=2)
    assert [run.environment["stack"] for run in in_twos] == ["2", "2", "2", "2", "1"]


def _row(**changes):
    row = {"device": device_name(torch.device("cpu")), "precision": "fp32", "model": "lenet5",
           "model_options": {}, "batch_size": 64, "seeds": 5, "seed_iterations_per_second": 100.0,
           "step_flops": 1e8}
    return {**row, **changes}


def test_a_run_is_priced_by_its_own_row_or_scaled_from_the_nearest(tmp_path):
    tiny = data.synthetic(n_train=256, n_test=100)
    cost = run_cost(RunSpec(model="lenet5", dataset="synthetic", iterations=50, batch_size=64,
                             precision="fp32"), tiny)
    table = ThroughputTable([_row(step_flops=cost.step_flops)], tmp_path / "t.json")
    exact = estimate([cost], table)
    assert exact.seconds == pytest.approx(cost.flops / (100.0 * cost.step_flops))
    assert exact.text() == "1 s" and "lenet5() fp32 bs64 x5 seeds" in exact.basis[0]
    other = run_cost(RunSpec(model="lenet5", dataset="synthetic", iterations=50, batch_size=32,
                             precision="fp32"), tiny)
    scaled = estimate([other], table)
    assert scaled.seconds == pytest.approx(other.flops / (100.0 * cost.step_flops))
    assert scaled.text().startswith("~") and scaled.basis[0].startswith("scaled by FLOPs from")
    nothing = estimate([run_cost(RunSpec(model="lenet5", dataset="synthetic", iterations=5,
                                         precision="bf16"), tiny)], table)
    assert nothing.unpriced == 1 and nothing.text() == "no figure"
    assert "no measured throughput for" in nothing.basis[0] and "--benchmark-enable" in nothing.basis[0]


def test_recording_a_row_replaces_its_configuration_and_saves(tmp_path):
    table = ThroughputTable.load(tmp_path / "throughput.json")
    assert table.rows == []
    table.record(_row())
    table.record(_row(seed_iterations_per_second=120.0))
    table.record(_row(batch_size=8))
    again = ThroughputTable.load(tmp_path / "throughput.json")
    rates = [(r["batch_size"], r["seed_iterations_per_second"]) for r in again.rows]
    assert rates == [(64, 120.0), (8, 100.0)]


def test_gpu_runs_are_not_priced_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    tiny = data.synthetic(n_train=256, n_test=100)
    cost = run_cost(RunSpec(model="lenet5", dataset="synthetic", iterations=5, device="cuda"), tiny)
    found = estimate([cost], ThroughputTable([_row()]))
    assert (found.seconds, found.unpriced, found.text()) == (0.0, 1, "no figure")
    assert "no CUDA device here" in found.basis[0]


def test_a_row_is_its_configuration_only_at_the_same_input_and_the_nearest_stack(tmp_path):
    cifar_like, small = data.synthetic(n_train=256, n_test=10), data.synthetic(n_train=256, n_test=10,
                                                                            image_size=28)
    spec = RunSpec(model="lenet5", dataset="synthetic", iterations=50, batch_size=64, precision="fp32")
    cost = run_cost(spec, cifar_like, stack=1)
    table = ThroughputTable([_row(step_flops=cost.step_flops, seeds=5),
                             _row(step_flops=cost.step_flops, seeds=1, seed_iterations_per_second=40.0)])
    alone = estimate([cost], table)  # one seed per computation: the 1-seed row
    assert alone.seconds == pytest.approx(cost.flops / (40.0 * cost.step_flops))
    stacked = estimate([run_cost(spec, cifar_like, stack=5)], table)
    assert stacked.seconds == pytest.approx(cost.flops / (100.0 * cost.step_flops))
    smaller = estimate([run_cost(spec, small, stack=5)], table)  # 28x28: not this row's step
    assert smaller.text().startswith("~")


def test_runs_of_a_device_without_figures_are_counted_apart(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    tiny = data.synthetic(n_train=256, n_test=10)
    spec = RunSpec(model="lenet5", dataset="synthetic", iterations=50, batch_size=64, precision="fp32")
    cost = run_cost(spec, tiny)
    both = estimate([cost, run_cost(spec.replace(device="cuda"), tiny)],
                    ThroughputTable([_row(step_flops=cost.step_flops)]))
    assert both.unpriced == 1 and both.text().endswith(" + 1 unpriced")
