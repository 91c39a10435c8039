"""The sequential designs the scales use, in numbers (a script).

For each schedule of looks: the normal boundaries' nominal levels (Pocock-type spending),
the error over all looks when they are used as p-value levels at each look's degrees of
freedom (paired t, simulated), the calibration factor and the levels the claims are
decided at; then, for a few true effects, the design's chance of each verdict and the
seeds per arm it trains on average, against one look at the first look's seeds and at
the cap. Then, for the cpu looks: the power of the cap an undecided verdict names
(``SequentialDecision.seeds_needed``), and the error of raising the cap after looking
(a second design, run only where the first left the claim undecided)::

    python benchmarks/sequential_design.py [--draws 65536]
"""

from __future__ import annotations

import argparse

import numpy as np

from cnnconv.harness.scales import SCALES
from cnnconv.stats import Design, seeds_needed
from cnnconv.stats.sequential import (
    normal_levels,
    operating_characteristics,
    paired_t_p_values,
    smallest_p_over_level,
)

EFFECTS = (0.0, 0.5, 0.8, 1.2)
NAMED_CAP_EFFECTS = (0.5, 0.3)
RAISED_CAPS = (24, 42)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2**16)
    args = parser.parse_args()
    for name in ("cpu", "paper"):
        looks = SCALES[name].looks
        design = Design(looks)
        normal = normal_levels(looks, design.alpha, design.spending)
        uncalibrated = np.mean(smallest_p_over_level(looks, normal, np.random.default_rng(1), 2**18) < 1)
        print(f"{name}: looks {'/'.join(map(str, looks))}, alpha {design.alpha}, {design.spending}")
        print(f"  normal levels     {' '.join(f'{x:.4f}' for x in normal)}  "
              f"(error over all looks at the t's df: {uncalibrated:.4f}, 2**18 draws)")
        print(f"  calibrated levels {' '.join(f'{x:.4f}' for x in design.levels)}  "
              f"(factor {design.levels[0] / normal[0]:.4f})")
        print(f"  {'d':>4} {'supported':>9} {'refuted':>8} {'undecided':>9} {'mean seeds':>10} "
              f"{f'fixed {looks[0]}':>9} {f'fixed {looks[-1]}':>9}")
        for effect in EFFECTS:
            oc = operating_characteristics(design, effect, args.draws)
            first, cap = (operating_characteristics(Design((n,)), effect, args.draws).supported
                          for n in (looks[0], looks[-1]))
            print(f"  {effect:>4} {oc.supported:>9.3f} {oc.refuted:>8.4f} {oc.undecided:>9.3f} "
                  f"{oc.expected_seeds:>10.1f} {first:>9.3f} {cap:>9.3f}")
    cpu = Design(SCALES["cpu"].looks)
    for effect in NAMED_CAP_EFFECTS:
        cap = seeds_needed(effect, alpha=cpu.levels[-1])
        power = operating_characteristics(Design((*cpu.looks, cap)), effect, args.draws).supported
        print(f"cpu, undecided at {cpu.cap} with d = {effect}: the verdict names a cap of {cap}; "
              f"capped there, the design supports it {power:.3f} of the time")
    for cap in RAISED_CAPS:
        print(f"cpu, cap raised to {cap} after an undecided verdict: wrong 'supported' "
              f"{raised_cap_error(cpu, cap, 2 * args.draws):.4f} (either design alone: {cpu.alpha})")


def raised_cap_error(first: Design, cap: int, draws: int) -> float:
    """Paired t-tests at the boundary: the first design's looks, then, only where they left
    the claim undecided, a design with ``cap`` as its last look, at that look's level."""
    second = Design((*first.looks, cap))
    p = paired_t_p_values(second.looks, np.random.default_rng(1), draws)
    first_wrong = (p[:, :-1] < np.asarray(first.levels)).any(axis=1)
    return float(np.mean(first_wrong | (p[:, -1] < second.levels[-1])))


if __name__ == "__main__":
    main()
