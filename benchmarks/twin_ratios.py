"""How far stacking moves a seed's curve, in units of what rounding moves it.

tests/test_seeds.py holds a stack of seeds to ``TWIN_FACTOR`` times the rounding floor
(``cnnconv.engine.twin``) over the first ``EARLY_STEPS``, and checks that the bound
would see mixed seeds. This prints, per precision mode and per stack of three seeds, in the
test's configuration (ResNet-18 width 4 with CBAM, batch 32 of 256 synthetic images,
lr 0.02, one thread) but trained 30 steps, the gaps in units of a yardstick:

- ``old``: the stack over all 30 steps against the twin nudged up only (the bound until
  2026-12-07);
- ``stack``: the stack over the first ``EARLY_STEPS`` (8) against the farther of the twins
  nudged up and down (``rounding_floor``: the bound now);
- ``mixed`` and ``mixed@30``: each seed's single run against its neighbour's, over the
  first ``EARLY_STEPS`` and over all 30 steps, against the floor over the same steps:
  what a stack that mixed its seeds would show;
- with ``--lr-factor F``, ``lr xF``: runs whose learning rate is F times the spec's, over
  the first ``EARLY_STEPS``: a wrong step size of that much.

    python benchmarks/twin_ratios.py --seeds 9 fp32
    python benchmarks/twin_ratios.py --lr-factor 1.01 fp32 tf32 amp_bf16
"""

from __future__ import annotations

import argparse

import torch

from cnnconv.engine.datasets import Dataset, synthetic
from cnnconv.engine.precision import MODES
from cnnconv.engine.spec import RunSpec
from cnnconv.engine.train import train, train_seeds
from cnnconv.engine.twin import EARLY_STEPS, mean_gap, rounding_floor, twin_ulps

STACK = 3


def ratios(data: Dataset, precision: str, first_seed: int,
           lr_factor: float | None = None) -> dict[str, float]:
    """The ratios (module docstring) of one stack of ``STACK`` seeds."""
    specs = [RunSpec(model="resnet18", model_options={"width": 4, "cbam": "all"},
                     dataset="synthetic", precision=precision, batch_size=32, iterations=30,
                     lr=0.02, eval_at=(15,), seed=seed)
             for seed in range(first_seed, first_seed + STACK)]
    single = [train(spec, dataset=data) for spec in specs]
    stacked = train_seeds(specs, dataset=data, vectorise=True)
    mixed = single[1:] + single[:1]
    trained: dict[int, list] = {}

    def twins(ulps: int) -> list:
        if ulps not in trained:
            trained[ulps] = [train(spec, dataset=data, nudge_ulps=ulps) for spec in specs]
        return trained[ulps]

    early = rounding_floor(single, precision, twins, EARLY_STEPS)
    found = {"old": mean_gap(single, stacked) / mean_gap(single, twins(twin_ulps(precision))),
             "stack": mean_gap(single, stacked, EARLY_STEPS) / early,
             "mixed": mean_gap(single, mixed, EARLY_STEPS) / early,
             "mixed@30": mean_gap(single, mixed) / rounding_floor(single, precision, twins)}
    if lr_factor is not None:
        off = [train(spec.replace(lr=spec.lr * lr_factor), dataset=data) for spec in specs]
        found[f"lr x{lr_factor:g}"] = mean_gap(single, off, EARLY_STEPS) / early
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="*", default=[m for m in MODES if m != "fp64"])
    parser.add_argument("--seeds", type=int, default=STACK, help="a multiple of 3 (default 3)")
    parser.add_argument("--lr-factor", type=float, help="also train runs at lr times this")
    args = parser.parse_args()
    if args.seeds < STACK or args.seeds % STACK:
        parser.error(f"--seeds must be a positive multiple of {STACK}, not {args.seeds}")
    torch.set_num_threads(1)
    data = synthetic(n_train=256, n_test=128)
    header = None
    for mode in args.modes:
        for first in range(0, args.seeds, STACK):
            found = ratios(data, mode, first, args.lr_factor)
            if header is None:
                header = f"{'mode':<9} {'seeds':<6}" + "".join(f" {k:>9}" for k in found)
                print(header)
            print(f"{mode:<9} {f'{first}-{first + STACK - 1}':<6}"
                  + "".join(f" {v:>9.3g}" for v in found.values()), flush=True)


if __name__ == "__main__":
    main()
