"""The GPU self-check as tests (marked gpu; skipped without CUDA): what ``cnnconv doctor``
checks, as the GPU workflow's first job. Each would fail on a GPU that computed something
other than cnnconv says: a mode in the wrong precision, a replayed graph that drifts from
the eager step or reuses a draw, stacked seeds that interact, memory beyond the plan."""

import pytest
import torch

from cnnconv.tools import doctor

pytestmark = pytest.mark.gpu


def _assert_passed(rows):
    failed = [f"{r.name}: {r.value} (expected {r.expected})" for r in rows if r.passed is False]
    assert not failed, "; ".join(failed)


def test_a_run_records_its_device_index_and_versions(tiny):
    from cnnconv.engine.spec import RunSpec
    from cnnconv.engine.train import train

    run = train(RunSpec(model="lenet5", dataset="synthetic", precision="fp32", batch_size=32,
                        iterations=5, device="cuda:0"), dataset=tiny)
    assert run.environment["device_index"] == "0"
    assert {"cuda", "cudnn", "driver"} <= set(run.environment)
    assert run.spec.key() == run.spec.replace(device="cuda").key()


def test_every_mode_computes_its_products_in_the_precision_it_names():
    _assert_passed(doctor.check_products("cuda"))


def test_every_operand_has_its_modes_dtype_on_cuda():
    _assert_passed(doctor.check_dtypes("cuda"))


def test_a_captured_step_replays_like_the_eager_step():
    _assert_passed(doctor.check_cuda_graph("cuda"))


def test_a_run_on_the_second_gpu_captures_there():
    if torch.cuda.device_count() < 2:
        pytest.skip("one CUDA device here; cuda:1 needs two")
    _assert_passed(doctor.check_cuda_graph("cuda:1"))


def test_stacked_seeds_match_their_single_runs():
    _assert_passed([doctor.check_stack("cuda")])


def test_memory_per_seed_is_within_the_estimate():
    _assert_passed([doctor.check_memory("cuda")])
