"""P1-BS-3 as a benchmark: seconds per epoch of P1's LeNet-5 against the batch size.

The source (GTX 1050 Ti): batch 8 took 31 s per epoch and batch 16 took 16 s -- doubling a
small batch halves the epoch. One epoch of plain SGD over the training images (cpu: the
first 2,560, as P1's cpu scale uses 2,500; cuda: all 50,000), evaluation excluded;
seconds per epoch and the ratio to the next batch size go to ``extra_info``. The claim
test (claims/test_p1_lenet.py) decides the same ratio over seeds.

    pytest benchmarks -k epoch_time --benchmark-only --benchmark-json=benchmarks/results/NAME.json
"""

from __future__ import annotations

from itertools import pairwise

import pytest

from cnnconv.engine import datasets as data_mod
from cnnconv.engine.spec import RunSpec
from cnnconv.engine.train import train

BATCH_SIZES = (8, 16, 32, 64, 128, 256)
SUBSET = {"cpu": 2560, "cuda": None}
CODE_PATH_SUBSET = 512  # disabled (CI): an epoch this short checks the code path


@pytest.fixture(scope="module")
def cifar(cifar_dir) -> data_mod.Dataset:
    return data_mod.load_cifar10(cifar_dir)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_lenet_epoch_time_by_batch_size(benchmark, cifar, device):
    seconds = {}
    subset = CODE_PATH_SUBSET if benchmark.disabled else SUBSET[device]

    def measure():
        for batch in BATCH_SIZES:
            spec = RunSpec(model="lenet5", dataset="cifar10", train_subset=subset,
                           test_subset=100, precision="fp32", batch_size=batch, epochs=1,
                           lr=0.01, momentum=0.0, augment="none", device=device)
            run = train(spec, dataset=cifar)
            seconds[batch] = run.wall_time - run.eval_time

    benchmark.pedantic(measure, rounds=1, iterations=1)
    ratios = {f"{a}/{b}": seconds[a] / seconds[b] for a, b in pairwise(BATCH_SIZES)}
    benchmark.extra_info.update(device=device, seconds_per_epoch=seconds, ratios=ratios)
    assert all(s > 0 for s in seconds.values())
