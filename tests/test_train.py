import numpy as np
import pytest
import torch

from cnnconv.engine.schedule import lr_multipliers, total_iterations
from cnnconv.engine.spec import RunSpec
from cnnconv.engine.train import train, train_seeds


def spec(**changes):
    base = dict(model="resnet18", model_options={"width": 8}, dataset="synthetic",
                precision="fp32", batch_size=32, iterations=30, lr=0.05, eval_at=(10,))
    base.update(changes)
    return RunSpec(**base)


def test_training_learns_the_synthetic_set(tiny):
    result = train(spec(iterations=60), dataset=tiny)
    assert result.losses.shape == (60,) and result.diverged_at is None
    assert result.losses[-10:].mean() < 0.5 * result.losses[:5].mean()
    assert result.eval_iterations == [10, 60]
    assert result.final_test_accuracy > 0.5
    assert result.samples_seen == 60 * 32 and result.epochs == pytest.approx(60 / 8)
    assert result.precision_state["mode"] == "fp32"
    assert {"torch", "device", "cnnconv"} <= set(result.environment)


def test_same_spec_same_seed_is_bitwise_identical_on_cpu(tiny, one_thread):
    for precision in ("fp32", "tf32", "bf16"):
        a = train(spec(precision=precision), dataset=tiny)
        b = train(spec(precision=precision), dataset=tiny)
        assert np.array_equal(a.losses, b.losses), precision
    c = train(spec(seed=1), dataset=tiny)
    assert not np.array_equal(a.losses, c.losses)


def test_a_diverging_run_is_a_result_not_a_crash(tiny):
    result = train(spec(model="lenet5", model_options={}, lr=1e4, momentum=0.0,
                        iterations=200), dataset=tiny)
    assert result.diverged_at is not None and result.diverged_at < 50  # stopped early
    assert np.isfinite(result.losses[: result.diverged_at]).all()
    assert not np.isfinite(result.losses[result.diverged_at:]).any()
    assert result.test_accuracy == []


@pytest.mark.parametrize("changes", [
    {"optimizer": "nesterov", "weight_decay": 5e-4, "decay_bias_and_bn": False},
    {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine", "warmup": 0.2},
    {"label_smoothing": 0.1, "mixup_alpha": 0.2, "schedule": "step"},
    {"schedule": "piecewise", "schedule_points": ((0, 0), (0.2, 1), (1, 0)), "augment": "none"},
    {"precision": "amp_bf16", "augment": "crop_flip_reflect_cutout"},
    {"precision": "amp_fp16", "optimizer": "nesterov"},
    {"model": "resnet9", "model_options": {"width": 8}, "epochs": 2, "iterations": None},
])
def test_every_option_trains(tiny, changes):
    result = train(spec(**changes), dataset=tiny)
    assert result.diverged_at is None and np.isfinite(result.losses).all()


def test_schedules():
    assert np.allclose(lr_multipliers(spec(schedule="constant"), 4), 1)
    step = lr_multipliers(spec(schedule="step", step_milestones=(0.5,), step_gamma=0.1), 4)
    assert np.allclose(step, [1, 1, 0.1, 0.1])
    cosine = lr_multipliers(spec(schedule="cosine"), 4)
    assert cosine[0] == 1 and np.all(np.diff(cosine) < 0)
    piece = lr_multipliers(spec(schedule="piecewise", schedule_points=((0, 0), (0.5, 1), (1, 0))), 4)
    assert np.allclose(piece, [0, 0.5, 1, 0.5])
    warm = lr_multipliers(spec(warmup=0.5), 4)
    assert np.allclose(warm, [0.5, 1, 1, 1])


def test_epochs_count_whole_batches():
    assert total_iterations(spec(iterations=None, epochs=2, batch_size=30), 100) == 6


@pytest.mark.parametrize("changes,message", [
    ({"model": "vgg"}, "unknown model 'vgg'; choose one of resnet18, lenet5, resnet9"),
    ({"precision": "fp8"}, "unknown precision 'fp8'; choose one of fp64"),
    ({"iterations": None}, "give exactly one of iterations and epochs"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"lr": -1.0}, "lr must be a finite number >= 0, got -1.0"),
    ({"lr": float("nan")}, "lr must be a finite number >= 0, got nan"),
    ({"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\), got 1.0"),
    ({"iterations": None, "epochs": float("inf")}, "epochs must be a finite number > 0, got inf"),
    ({"model_options": {"width": 0}}, "model option width must be an integer >= 1, got 0"),
    ({"model_options": {"width": 2.5}}, "model option width must be an integer >= 1, got 2.5"),
    ({"model_options": {"cbam": "every"}}, "unknown model option cbam 'every'; choose one of"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"model_options": {"depth": 3}}, "takes no option 'depth'"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"device": "cuda:x"}, "unknown device 'cuda:x'; use cpu, cuda or cuda:N"),
    ({"schedule": "piecewise"}, "needs at least two schedule_points"),
])
def test_bad_specs_say_what_is_valid(changes, message):
    with pytest.raises(ValueError, match=message):
        spec(**changes)


def test_spec_key_is_canonical():
    a = spec(model_options={"width": 8, "cbam": "all"})
    b = spec(model_options={"cbam": "all", "width": 8})
    assert a == b and a.key() == b.key() and hash(a) == hash(b)
    assert RunSpec.from_canonical(a.canonical()) == a
    assert a.key() != a.replace(seed=1).key()


def test_the_key_holds_the_device_type_not_its_index():
    """N GPUs share the arms they have in common; a CPU run and a GPU run stay apart."""
    on = {device: spec(device=device) for device in ("cuda", "cuda:0", "cuda:1", "cpu")}
    assert on["cuda"].key() == on["cuda:0"].key() == on["cuda:1"].key() != on["cpu"].key()
    assert on["cuda:1"].canonical()["device"] == "cuda"
    assert on["cuda:1"].device == "cuda:1"  # the spec still says where to train


def test_cuda_device_without_cuda_is_a_clear_error(tiny):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="CUDA is not available here; use cpu"):
        train(spec(device="cuda"), dataset=tiny)


def test_real_cifar10_short_run(cifar_dir):
    result = train(spec(dataset="cifar10", iterations=20, eval_at=()), data_dir=str(cifar_dir))
    assert np.isfinite(result.losses).all() and 0.05 < result.final_test_accuracy < 0.6


def test_distillation_uses_each_seeds_teacher(tiny):
    teacher = spec(model="resnet9", model_options={"width": 8}, iterations=20, eval_at=())
    asked = []

    def supply(teacher_specs):
        asked.extend(teacher_specs)
        return [run.weights for run in train_seeds(teacher_specs, dataset=tiny)]

    student = spec(model="resnet9", model_options={"width": 4}, iterations=20, eval_at=(),
                   teacher=teacher, distill_temperature=4.0)
    runs = train_seeds([student, student.replace(seed=1)], dataset=tiny, teacher_weights=supply)
    assert [t.seed for t in asked] == [0, 1] and all(t.keep_weights for t in asked)
    assert all(np.isfinite(r.losses).all() for r in runs)
    alone = train(student.replace(teacher=None), dataset=tiny)
    assert not np.array_equal(runs[0].losses, alone.losses)  # the soft targets count
    assert student.key() != student.replace(teacher=teacher.replace(lr=0.1)).key()
    with pytest.raises(ValueError, match="has no teacher"):
        alone.spec.teacher_spec()
