"""The scales a claim runs at (``SCALES``).

Plain data, importable without torch: the pytest plugin reads them when it parametrizes
the claims, before any claim runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """Where and how big: ``cpu`` (minutes on 2 cores), ``long`` (P0 at the source's
    iteration counts, P4 at a size its large batches can fit, on a CPU: hours) or
    ``paper`` (the source's protocol, on a GPU).

    ``sources`` and ``datasets`` name what a scale covers (empty: everything); a claim
    outside them is skipped at that scale.
    """

    name: str
    device: str
    seeds: int
    sources: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()

    @property
    def is_paper(self) -> bool:
        return self.name == "paper"

    def covers(self, source: str | None, dataset: str | None) -> bool:
        """Does this scale test a claim of ``source`` on ``dataset`` (None: unparametrized)?"""
        return ((not self.sources or source in self.sources)
                and (not self.datasets or dataset is None or dataset in self.datasets))


SCALES = {
    "cpu": Scale("cpu", "cpu", 5),
    "long": Scale("long", "cpu", 5, sources=("P0", "P4"), datasets=("cifar10",)),
    "paper": Scale("paper", "cuda", 8),
}
