"""The scales a claim runs at (``SCALES``).

Plain data, importable without torch: the pytest plugin reads them when it parametrizes
the claims, before any claim runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Scale:
    """Where and how big: ``cpu`` (minutes on 2 cores), ``long`` (P0 at the source's
    iteration counts, P4 at a size its large batches can fit, on a CPU: hours) or
    ``paper`` (the source's protocol, on a GPU).

    ``looks`` are the seeds per arm at which a claim is decided (``stats.Design``): the
    cheap scales start at 5, paper scale (longer runs, GPU time) at 8; each later look
    adds about half as many again, up to the cap. ``sources`` and ``datasets`` name what
    a scale covers (empty: everything); a claim outside them is skipped at that scale.
    """

    name: str
    device: str
    looks: tuple[int, ...]
    sources: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()

    @property
    def is_paper(self) -> bool:
        return self.name == "paper"

    @property
    def seeds(self) -> int:
        """Seeds per arm at the first look."""
        return self.looks[0]

    def with_seeds(self, fixed: int | None = None, cap: int | None = None) -> Scale:
        """``--cnnconv-seeds`` (one look at ``fixed`` seeds) and ``--cnnconv-max-seeds``
        (the looks below ``cap``, then ``cap`` itself: a cap past the last look adds one)."""
        if fixed:
            return replace(self, looks=(min(fixed, cap or fixed),))
        if cap:
            return replace(self, looks=(*(n for n in self.looks if n < cap), cap))
        return self

    def covers(self, source: str | None, dataset: str | None) -> bool:
        """Does this scale test a claim of ``source`` on ``dataset`` (None: unparametrized)?"""
        return ((not self.sources or source in self.sources)
                and (not self.datasets or dataset is None or dataset in self.datasets))


SCALES = {
    "cpu": Scale("cpu", "cpu", (5, 8, 12, 16)),
    "long": Scale("long", "cpu", (5, 8, 12, 16), sources=("P0", "P4"), datasets=("cifar10",)),
    "paper": Scale("paper", "cuda", (8, 12, 16, 24)),
}
