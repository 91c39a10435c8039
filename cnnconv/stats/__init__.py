"""Per-run summaries and decisions across seeds, on scipy.stats: ``from cnnconv import stats``.

The unit of replication is the seed: summarise each run (a window mean, a slope, jitter,
a final accuracy), then compare the arms' per-seed summaries. Arms trained with the same
seeds share data order and, where they have the same parameters, initial weights, so
comparisons pair by seed by default.

Every decision returns a ``Decision`` (``decision``): a verdict -- supported, refuted or
inconclusive -- from a p-value for the claim and one against it, each wrong at the
claim's boundary at most alpha of the time, with the effect, its interval and n. The
modules, by the kind of claim:

- ``summaries``: ``window_mean``, ``slope``, ``jitter`` of one run; ``bootstrap_ci``
- ``directional``: ``greater``, ``less`` (t or rank tests)
- ``equivalence``: ``equivalent`` (TOST), ``within`` a band, ``std_within``
- ``multiple``: ``all_of``, ``holm``, ``ordered``, ``interior_maximum``, ``argmax_within``
- ``counts``: ``most_often``; ``trends``: ``trend`` (Kendall's tau)
- ``contrast``: the t estimate and sample checks they share; ``power_one_sided``,
  ``seeds_needed``
- ``sequential``: ``Design``, looks at growing seed counts with levels that keep each
  verdict wrong at most alpha of the time over all of them; ``SequentialDecision``
"""

from cnnconv.stats.contrast import power_one_sided, seeds_needed
from cnnconv.stats.counts import most_often
from cnnconv.stats.decision import (
    INCONCLUSIVE,
    MAX_SEEDS,
    NO_SPREAD,
    REFUTED,
    SUPPORTED,
    TARGET_POWER,
    Decision,
    PowerFunction,
    exact,
    smallest_n,
)
from cnnconv.stats.directional import greater, less
from cnnconv.stats.equivalence import equivalent, std_interval, std_within, within
from cnnconv.stats.multiple import all_of, argmax_within, holm, interior_maximum, ordered
from cnnconv.stats.sequential import Design, SequentialDecision
from cnnconv.stats.summaries import bootstrap_ci, jitter, slope, window_mean
from cnnconv.stats.trends import trend

__all__ = [
    "INCONCLUSIVE", "MAX_SEEDS", "NO_SPREAD", "REFUTED", "SUPPORTED", "TARGET_POWER",
    "Decision", "Design", "PowerFunction", "SequentialDecision",
    "all_of", "argmax_within", "bootstrap_ci", "equivalent",
    "exact", "greater", "holm", "interior_maximum", "jitter", "less", "most_often", "ordered",
    "power_one_sided", "seeds_needed", "slope", "smallest_n", "std_interval", "std_within",
    "trend", "window_mean", "within",
]
