"""Training speed: cnnconv's engine against the plain eager loop P0's code would be.

The plain loop is the textbook PyTorch recipe: a map-style Dataset that normalises, pads,
crops and flips each image on the host, a DataLoader that shuffles and collates, a copy
of every batch to the device, and ``loss.item()`` each step for the running average.
cnnconv keeps the data on the device, augments whole batches there, and syncs once per
``CHECK_EVERY`` steps. Same model, batch, optimizer and precision; iterations per second
(evaluation excluded) go to ``extra_info``.

    pytest benchmarks -k engine --benchmark-only --benchmark-json=benchmarks/results/NAME.json
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cnnconv import data as data_mod
from cnnconv.models import build_model
from cnnconv.precision import precision
from cnnconv.train import RunSpec, train

STEPS = {"cpu": 30, "cuda": 300}


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


def plain_loop_speed(dataset: data_mod.Dataset, model_options: dict, batch_size: int,
                     steps: int, device: str, mode: str) -> float:
    """Iterations per second of the textbook loop (after a few warm-up steps)."""
    torch.manual_seed(0)
    model = build_model("resnet18", **model_options).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(HostAugmentedCifar(dataset.train, *dataset.mean_std),
                        batch_size=batch_size, shuffle=True, drop_last=True)
    warmup, running = 3, 0.0
    with precision(mode, device):
        for step, (x, y) in enumerate(loader):
            if step == warmup:
                started = time.perf_counter()
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()  # the per-step host sync of every tutorial loop
            if step == warmup + steps - 1:
                break
    return steps / (time.perf_counter() - started)


def engine_speed(dataset: data_mod.Dataset, model_options: dict, batch_size: int, steps: int,
                 device: str, mode: str) -> float:
    spec = RunSpec(model="resnet18", model_options=model_options, dataset="cifar10",
                   precision=mode, batch_size=batch_size, iterations=steps, device=device)
    return train(spec, dataset=dataset).iterations_per_second


DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


@pytest.fixture(scope="module")
def cifar(cifar_dir) -> data_mod.Dataset:
    return data_mod.load_cifar10(cifar_dir)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("width", [64, 8], ids=["width64", "width8"])
@pytest.mark.parametrize("loop", ["plain", "cnnconv"])
def test_engine_speed_p0_resnet18_batch64(benchmark, cifar, device, width, loop):
    """P0's ResNet-18 (torchvision layout; width 64 as in P0, 8 as at cpu scale), batch 64,
    tf32 (emulated on CPU)."""
    steps = STEPS[device] * (64 // width if device == "cpu" else 1)
    measure = plain_loop_speed if loop == "plain" else engine_speed
    speeds = []
    options = {"width": width}
    benchmark.pedantic(lambda: speeds.append(measure(cifar, options, 64, steps, device, "tf32")),
                       rounds=1 if device == "cpu" else 3, iterations=1)
    benchmark.extra_info.update(loop=loop, device=device, width=width, steps=steps,
                                iterations_per_second=max(speeds))
    assert max(speeds) > 0
