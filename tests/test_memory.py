"""Memory planning: the measured per-seed footprint, the stack size it gives, and the
engine splitting a stack (and halving one that runs out anyway)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cnnconv.engine.train as train_mod
from cnnconv.engine import memory
from cnnconv.engine.models import build_model
from cnnconv.engine.precision import get_mode
from cnnconv.engine.spec import RunSpec
from cnnconv.engine.stacking import SeedStack
from cnnconv.engine.train import train_seeds

GB = 1e9


def footprint(model: str, precision: str, **options) -> memory.SeedFootprint:
    mode = get_mode(precision)
    models = tuple(build_model(model, **options).to(mode.param_dtype) for _ in range(2))
    return memory.measure_footprint(models, torch.rand(3, 32, 32), mode, "sgd")


def saved_bytes(stack: SeedStack, x: torch.Tensor) -> int:
    """Distinct non-weight storages autograd saves in one training step of ``stack``."""
    weights = {t.untyped_storage().data_ptr() for t in [*stack.parameters(), *stack.buffers.values()]}
    seen = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = stack(x)
        F.cross_entropy(out.flatten(0, 1), torch.zeros(out.shape[0] * out.shape[1],
                                                       dtype=torch.long)).backward()
    return sum(seen.values())


def test_the_footprint_predicts_a_larger_stack_and_batch():
    """Measured on 2 seeds at batches 2 and 4, extrapolated to 3 seeds at batch 24: within
    5% of what that step saves (a model that is not linear in the batch, or a count that
    missed the stack's own copies, would be off by far more)."""
    fp = footprint("resnet18", "fp32", width=8, cbam="all")
    stack = SeedStack([build_model("resnet18", width=8, cbam="all") for _ in range(3)]).train()
    actual = saved_bytes(stack, torch.randn(3, 24, 3, 32, 32))
    predicted = 3 * (fp.saved_fixed + 24 * fp.saved_per_sample)
    assert abs(predicted - actual) <= 0.05 * actual, (predicted, actual)
    assert fp.state == sum(p.numel() * 4 for p in build_model("resnet18", width=8, cbam="all")
                           .parameters()) * 3 + sum(b.numel() * b.element_size() for b in build_model(
                               "resnet18", width=8, cbam="all").buffers())


def test_amp_keeps_low_precision_weight_copies_per_seed():
    fp32, amp = footprint("resnet9", "fp32", width=8), footprint("resnet9", "amp_bf16", width=8)
    assert amp.saved_fixed > fp32.saved_fixed  # the bf16 weights the convolutions saved
    assert amp.saved_per_sample < fp32.saved_per_sample  # bf16 activations


def test_the_64_seed_resnet9_benchmark_splits_on_an_80gb_card():
    """benchmarks/test_throughput.py's largest case: 64 seeds of ResNet-9 at batch 512."""
    fp = footprint("resnet9", "amp_bf16")
    size = memory.stack_size(fp, 512, 50_000, free_bytes=int(80 * GB), seeds=64)
    assert 1 <= size < 64
    assert size * fp.seed_bytes(512, 50_000) <= memory.HEADROOM * 80 * GB


def test_p2_94s_25_seeds_fit_on_an_80gb_card_in_stacks():
    fp = footprint("resnet9", "fp32")
    size = memory.stack_size(fp, 512, 50_000, free_bytes=int(80 * GB), seeds=25)
    assert size * fp.seed_bytes(512, 50_000) <= memory.HEADROOM * 80 * GB
    assert memory.stack_size(fp, 512, 50_000, free_bytes=10**15, seeds=25) == 25


def _specs(seeds):
    return [RunSpec(model="resnet18", model_options={"width": 4}, dataset="synthetic",
                    precision="fp64", batch_size=16, iterations=4, seed=seed)
            for seed in range(seeds)]


def test_seeds_that_do_not_fit_train_in_smaller_stacks_with_the_same_results(tiny, monkeypatch):
    whole = train_seeds(_specs(5), dataset=tiny, vectorise=True)
    fp = memory.seed_footprint("resnet18", _specs(1)[0].model_options, "fp64", "sgd",
                               tiny.shape, len(tiny.classes))
    budget = int(2.5 * fp.seed_bytes(16, len(tiny.train)) / memory.HEADROOM)
    monkeypatch.setattr(train_mod, "free_memory", lambda device: budget)
    split = train_seeds(_specs(5), dataset=tiny, vectorise=True)
    assert [r.environment["stack"] for r in split] == ["2", "2", "2", "2", "1"]
    assert [r.spec.seed for r in split] == list(range(5))
    for a, b in zip(whole, split):
        assert np.array_equal(a.losses, b.losses)


def test_a_stack_that_runs_out_of_memory_is_halved(tiny, monkeypatch):
    original = train_mod._Training.run

    def run(self):
        if len(self.specs) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self)
    monkeypatch.setattr(train_mod._Training, "run", run)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.warns(UserWarning, match="out of memory.*retrying with 2"):
        runs = train_seeds(_specs(5), dataset=tiny, vectorise=True)
    assert [r.environment["stack"] for r in runs] == ["2", "2", "2", "2", "1"]


def test_one_seed_that_does_not_fit_says_what_to_change(tiny, monkeypatch):
    def run(self):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
    monkeypatch.setattr(train_mod._Training, "run", run)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.raises(RuntimeError, match=r"does not fit.*smaller batch_size"):
        train_seeds(_specs(1), dataset=tiny)


def test_processes_sharing_a_gpu_each_plan_within_their_share(monkeypatch):
    """Free memory on an 80 GB card with 70 GB free, this process holding 6 GB of which 4
    are in use: alone it may plan 72 GB; one of two sharers (xdist workers on one GPU)
    40 - 4 = 36, so two workers starting together cannot both plan the whole card."""
    import cnnconv.engine.device as device_mod
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(70 * GB), int(80 * GB)))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: int(6 * GB))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: int(4 * GB))
    monkeypatch.setattr(device_mod, "_processes_per_device", 1)
    cuda = torch.device("cuda", 0)
    assert device_mod.free_memory(cuda) == int(72 * GB)
    device_mod.share_device(2)
    assert device_mod.free_memory(cuda) == int(36 * GB)
    device_mod.share_device(40)  # holding more than its share: nothing more to plan
    assert device_mod.free_memory(cuda) == 0
    assert device_mod.free_memory(torch.device("cpu")) is None
    with pytest.raises(ValueError, match="processes must be >= 1"):
        device_mod.share_device(0)


def test_a_stack_stays_within_32_bit_indexing_of_its_largest_batch_norm_input():
    """ResNet-9's 128-channel 32x32 layer at batch 512 is 2^26 elements a seed: a stack of
    32 would hand cuDNN's BatchNorm a tensor beyond 32-bit indexing, however much memory
    a GPU has."""
    fp = footprint("resnet9", "amp_bf16")
    assert fp.batch_norm_elements == 128 * 32 * 32
    assert memory.stack_size(fp, 512, 50_000, free_bytes=10**15, seeds=64) == 31
    assert memory.stack_size(fp, 512, 50_000, free_bytes=10**15, seeds=25) == 25


def test_a_small_batch_plans_the_evaluation_chunk_it_evaluates_in():
    """At batch 2 (P4) a CUDA evaluation runs 500 images at once, not 2: the plan counts 500."""
    fp = footprint("resnet9", "fp32", width=4)
    assert memory.eval_chunk(2) == memory.CUDA_EVAL_CHUNK == 500 and memory.eval_chunk(512) == 512
    assert fp.seed_bytes(2, 0) - fp.step_bytes(2) == 500 * fp.eval_per_sample
