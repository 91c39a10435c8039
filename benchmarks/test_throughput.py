"""Training throughput: cnnconv's engine, with 1..N seeds stacked, against the plain eager
loop P0's code would be. Seed-iterations per second (N seeds x steps / s) and, on CUDA,
peak memory per seed go to ``extra_info``.

The plain loop is the textbook PyTorch recipe: a map-style Dataset that normalises, pads,
crops and flips each image on the host, a DataLoader that shuffles and collates, a copy
of every batch to the device, and ``loss.item()`` each step for the running average.
cnnconv keeps the data on the device, augments whole batches there, and syncs once per
``CHECK_EVERY`` steps. Same model, batch, optimizer and precision; iterations per second
(evaluation excluded) go to ``extra_info``.

    pytest benchmarks -k throughput --benchmark-only --benchmark-json=benchmarks/results/NAME.json

With benchmarks enabled, every engine measurement is also a row of
``benchmarks/results/throughput.json``, the table ``--cnnconv-plan`` prices runs with
(on a GPU, ``./dev gpu``'s bench step writes that device's rows);
``test_protocol_throughput`` measures the cpu-scale claims' own configurations for it.
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cnnconv.engine import datasets as data_mod
from cnnconv.engine.device import device_name
from cnnconv.engine.models import build_model
from cnnconv.engine.precision import get_mode, precision
from cnnconv.engine.spec import RunSpec
from cnnconv.engine.train import train_seeds
from cnnconv.harness.flops import step_flops
from cnnconv.harness.throughput import ThroughputTable

STEPS = {"cpu": 40, "cuda": 300}
# The table `pytest claims --cnnconv-plan` prices runs with (its default, from this checkout).
TABLE = Path(__file__).resolve().parent / "results" / "throughput.json"


class HostAugmentedCifar(Dataset):
    """Per-sample normalise + pad-4 crop + flip on the host, as torchvision transforms do."""

    def __init__(self, split: data_mod.Split, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.images, self.labels = split.images, split.labels
        self.mean, self.std = mean[:, None, None], std[:, None, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = (self.images[index].float() / 255 - self.mean) / self.std
        padded = F.pad(image, (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2,)).tolist()
        image = padded[:, dy:dy + 32, dx:dx + 32]
        if torch.rand(()) < 0.5:
            image = image.flip(2)
        return image, self.labels[index]


def plain_loop_speed(dataset: data_mod.Dataset, model: str, model_options: dict,
                     batch_size: int, steps: int, device: str, mode: str) -> float:
    """Iterations per second of the textbook loop (after a few warm-up steps)."""
    torch.manual_seed(0)
    dtype = get_mode(mode).param_dtype
    network = build_model(model, **model_options).to(device, dtype)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(HostAugmentedCifar(dataset.train, *dataset.mean_std),
                        batch_size=batch_size, shuffle=True, drop_last=True)
    warmup, running, step = 3, 0.0, 0
    with precision(mode, device):
        while step < warmup + steps:  # as many epochs as the steps need
            for x, y in loader:
                if step == warmup:
                    started = time.perf_counter()
                x, y = x.to(device, dtype), y.to(device)
                loss = F.cross_entropy(network(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                running += loss.item()  # the per-step host sync of every tutorial loop
                step += 1
                if step == warmup + steps:
                    break
    return steps / (time.perf_counter() - started)


def engine_speed(dataset: data_mod.Dataset, model: str, model_options: dict, batch_size: int,
                 steps: int, device: str, mode: str, seeds: int) -> tuple[float, float | None]:
    """Seed-iterations per second of cnnconv training ``seeds`` seeds as one computation,
    and the peak CUDA memory per seed (None on the CPU)."""
    spec = RunSpec(model=model, model_options=model_options, dataset="cifar10", precision=mode,
                   batch_size=batch_size, iterations=steps, device=device, test_subset=1000)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runs = train_seeds([spec.replace(seed=s) for s in range(seeds)], dataset=dataset)
    # the memory plan may have split the seeds into smaller stacks: the peak is one stack's
    stack = max(int(r.environment["stack"]) for r in runs)
    memory = torch.cuda.max_memory_allocated() / stack if device == "cuda" else None
    return seed_iterations_per_second(runs, steps), memory


def seed_iterations_per_second(runs: list, steps: int) -> float:
    """Seed-iterations per second of ``runs`` however the engine grouped them: the runs of
    a stack share one wall clock (evaluation excluded), seed-by-seed runs each have their own."""
    busy = sum((r.wall_time - r.eval_time) / int(r.environment["stack"]) for r in runs)
    return len(runs) * steps / busy


@pytest.fixture(scope="module")
def cifar(cifar_dir) -> data_mod.Dataset:
    return data_mod.load_cifar10(cifar_dir)


# (model, options, batch, precision): P0's ResNet-18 at batch 64 in tf32 and bf16, and
# P2's ResNet-9 at batch 512. The CPU runs only the cpu scale's width-8 ResNet-18.
CASES = {
    "resnet18-b64-tf32": ("resnet18", {}, 64, "tf32"),
    "resnet18-b64-bf16": ("resnet18", {}, 64, "bf16"),
    "resnet9-b512-bf16": ("resnet9", {}, 512, "amp_bf16"),
    "resnet18w8-b64-tf32": ("resnet18", {"width": 8}, 64, "tf32"),
}
GPU_SEEDS = (1, 4, 16, 64)
CPU_SEEDS = (1, 4)


def _params():
    for case in CASES:
        cpu = case == "resnet18w8-b64-tf32"
        for seeds in ("plain", *(CPU_SEEDS if cpu else GPU_SEEDS)):
            marks = [] if cpu else [pytest.mark.gpu]
            yield pytest.param("cpu" if cpu else "cuda", case, seeds, marks=marks,
                               id=f"{'cpu' if cpu else 'cuda'}-{case}-{seeds}")


@pytest.mark.parametrize("device,case,seeds", list(_params()))
def test_training_throughput(benchmark, cifar, device, case, seeds):
    """Seed-iterations per second: the plain eager loop, then cnnconv with N seeds
    (disabled, as in CI: 4 steps check the code path)."""
    model, options, batch, mode = CASES[case]
    steps = 4 if benchmark.disabled else STEPS[device]
    result = {}

    def measure():
        if seeds == "plain":
            result["speed"] = plain_loop_speed(cifar, model, options, batch, steps, device, mode)
        else:
            result["speed"], result["memory"] = engine_speed(
                cifar, model, options, batch, steps, device, mode, seeds)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(case=case, device=device, seeds=seeds, steps=steps,
                                seed_iterations_per_second=result["speed"],
                                memory_per_seed_bytes=result.get("memory"))
    if seeds != "plain" and not benchmark.disabled:
        record_throughput(cifar, model, options, batch, mode, device, seeds, result["speed"])
    assert result["speed"] > 0


def record_throughput(dataset: data_mod.Dataset, model: str, options: dict, batch: int,
                      mode: str, device: str, seeds: int, speed: float) -> None:
    """Add a measured rate to the table ``--cnnconv-plan`` prices runs with."""
    spec = RunSpec(model=model, model_options=options, precision=mode, batch_size=batch,
                   iterations=1)
    flops = step_flops(spec, dataset.shape, len(dataset.classes))
    ThroughputTable.load(TABLE).record({
        "device": device_name(torch.device(device)), "precision": mode, "model": model,
        "model_options": options, "batch_size": batch, "seeds": seeds,
        "seed_iterations_per_second": round(speed, 2), "step_flops": flops,
        "flops_per_second": round(speed * flops), "torch": torch.__version__,
        "measured": datetime.date.today().isoformat()})


# The configurations the cpu-scale claims train (model, options, precision, batch), each
# over the cpu scale's 5 seeds as the engine trains them (stacked, or seed by seed for
# fp64 and LeNet-5). With benchmarks enabled each writes its row of the throughput table
# that `pytest claims --cnnconv-plan` prices runs with; disabled (CI), 2 steps of 2 seeds
# check the code path.
PROTOCOL_CASES = {
    "p0-resnet18w8-b64-tf32": ("resnet18", {"width": 8}, 64, "tf32"),
    "p0-resnet18w8-b16-tf32": ("resnet18", {"width": 8}, 16, "tf32"),
    "p0-resnet18w8-b64-bf16": ("resnet18", {"width": 8}, 64, "bf16"),
    "p0-resnet18w8-b64-fp64": ("resnet18", {"width": 8}, 64, "fp64"),
    "p0-resnet18w8cbam-b64-tf32": ("resnet18", {"width": 8, "cbam": "all"}, 64, "tf32"),
    "p1-lenet5-b8-fp32": ("lenet5", {}, 8, "fp32"),
    "p1-lenet5-b128-fp32": ("lenet5", {}, 128, "fp32"),
    "p3-resnet9w4-b128-fp32": ("resnet9", {"width": 4}, 128, "fp32"),
    "p3-resnet9w4-b512-fp32": ("resnet9", {"width": 4}, 512, "fp32"),
    "p3-resnet9w4-b128-amp_fp16": ("resnet9", {"width": 4}, 128, "amp_fp16"),
    "p4-resnet9w4-b2-fp32": ("resnet9", {"width": 4}, 2, "fp32"),
}
PROTOCOL_SEEDS = 5
PROTOCOL_STEPS = 40


@pytest.mark.parametrize("case", sorted(PROTOCOL_CASES))
def test_protocol_throughput(benchmark, cifar, case):
    """Seed-iterations per second of a cpu-scale claim's configuration, for the plan."""
    model, options, batch, mode = PROTOCOL_CASES[case]
    seeds, steps = (2, 2) if benchmark.disabled else (PROTOCOL_SEEDS, PROTOCOL_STEPS)
    spec = RunSpec(model=model, model_options=options, dataset="cifar10", precision=mode,
                   batch_size=batch, iterations=steps, test_subset=batch)
    result = {}

    def measure():
        runs = train_seeds([spec.replace(seed=s) for s in range(seeds)], dataset=cifar)
        result["speed"] = seed_iterations_per_second(runs, steps)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(case=case, seeds=seeds, seed_iterations_per_second=result["speed"])
    if not benchmark.disabled:
        record_throughput(cifar, model, options, batch, mode, "cpu", seeds, result["speed"])
    assert result["speed"] > 0


def test_the_plain_loop_times_every_step_it_reports(monkeypatch):
    """Over more steps than an epoch has, the plain loop goes on into the next epoch (it
    stopped at the epoch's end and still divided by all the steps it was asked for)."""
    calls = []
    cross_entropy = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: calls.append(1) or cross_entropy(*a, **k))
    tiny = data_mod.synthetic(n_train=256, n_test=64)  # 4 batches of 64 an epoch
    plain_loop_speed(tiny, "lenet5", {}, 64, 10, "cpu", "fp32")
    assert len(calls) == 3 + 10  # warm-up and timed steps


def test_engine_speed_counts_every_stack_when_the_memory_plan_splits_the_seeds(monkeypatch):
    """4 seeds trained as 2 stacks of 2, each 10 s for 100 steps: 400 seed-iterations in
    20 s, not 4 x the first run's 10 steps a second."""
    def runs(specs, dataset):
        return [SimpleNamespace(wall_time=10.0, eval_time=0.0, environment={"stack": "2"},
                                iterations_per_second=10.0) for _ in specs]
    monkeypatch.setattr(sys.modules[__name__], "train_seeds", runs)
    speed, memory = engine_speed(None, "lenet5", {}, 64, 100, "cpu", "fp32", 4)
    assert speed == 400 / 20 and memory is None
