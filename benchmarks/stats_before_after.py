"""Issue #11's audit, before and after: wrong verdicts at a claim's boundary, and the
power at the n ``seeds_needed`` names, for cnnconv.stats as of de31993 and as now.

    python benchmarks/stats_before_after.py      # from the checkout, about a minute

Same draws for both versions; 2,000 per case (the 99.9% binomial band around 5% is
3.5-6.6%). tests/test_stats.py asserts the "now" side for every decision.
"""
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cnnconv import stats as new  # noqa: E402

BEFORE = "de31993"
source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:cnnconv/stats.py"],
                        check=True, capture_output=True, text=True).stdout
path = Path(tempfile.mkdtemp()) / "old_stats.py"
path.write_text(source)
spec = importlib.util.spec_from_file_location("old_stats", path)
old = importlib.util.module_from_spec(spec)
sys.modules["old_stats"] = old
spec.loader.exec_module(old)
DRAWS = 2000


def paired(rng, n, shift, sd=0.02):
    base = rng.normal(1.0, 0.05, n)
    return base + shift + rng.normal(0, sd, n), base + rng.normal(0, sd, n)


def levels(rng, shifts, n=8):
    base = rng.normal(1.0, 0.05, n)
    return [base + shift + rng.normal(0, 0.02, n) for shift in shifts]


def spread(module, sample, value):
    """The std claim: before, "the 90% CI contains the value"; now, within a factor 1.5."""
    if module is old:
        return old.std_contains(sample, value)
    return new.std_within(sample, 0.0015 / 1.5, 0.0015 * 1.5)


CASES = {
    "all_of, 3 true parts at their boundary":
        lambda m, r: m.all_of([m.greater(*paired(r, 8, 0.0)) for _ in range(3)]),
    "ordered, 3 equal groups": lambda m, r: m.ordered(levels(r, [0, 0, 0])),
    "interior_maximum, 3 equal levels": lambda m, r: m.interior_maximum(levels(r, [0, 0, 0])),
    "std 0.15%, n = 5": lambda m, r: spread(m, r.normal(0, 0.0015, 5), 0.0015),
    "std 0.225% (band end), n = 25": lambda m, r: spread(m, r.normal(0, 0.00225, 25), 0.00225),
}


def exact(mean, sd, n, seed=0):
    z = np.random.default_rng(seed).normal(size=n)
    return mean + sd * (z - z.mean()) / z.std(ddof=1)


def power_at_seeds_needed(module, truth, draw):
    n = truth(module).seeds_needed
    rng = np.random.default_rng(1)
    return n, np.mean([draw(module, rng, n).supported for _ in range(1000)])


POWER = {
    "TOST paired, diff 0, sd 0.02, margin 0.02": (
        lambda m: m.equivalent(exact(0, 0.02, 8), np.zeros(8), margin=0.02),
        lambda m, r, n: m.equivalent(r.normal(0, 0.02, n), np.zeros(n), margin=0.02)),
    "TOST Welch, diff 0, sd 0.02, margin 0.02": (
        lambda m: m.equivalent(exact(1, 0.02, 8), exact(1, 0.02, 8, 1), margin=0.02, paired=False),
        lambda m, r, n: m.equivalent(r.normal(1, 0.02, n), r.normal(1, 0.02, n), margin=0.02,
                                     paired=False)),
}

print(f"{'wrong verdicts at the boundary':<42} {'before: sup':>11} {'ref':>6} {'now: sup':>9} {'ref':>6}")
for name, decide in CASES.items():
    row = []
    for module in (old, new):
        rng = np.random.default_rng(0)
        verdicts = [decide(module, rng).verdict for _ in range(DRAWS)]
        row += [verdicts.count("supported") / DRAWS, verdicts.count("refuted") / DRAWS]
    print(f"{name:<42} {row[0]:11.1%} {row[1]:6.1%} {row[2]:9.1%} {row[3]:6.1%}")
print(f"{'power at seeds_needed':<42} {'before: n':>11} {'power':>6} {'now: n':>9} {'power':>6}")
for name, (truth, draw) in POWER.items():
    (n_old, p_old), (n_new, p_new) = (power_at_seeds_needed(m, truth, draw) for m in (old, new))
    print(f"{name:<42} {n_old:11d} {p_old:6.0%} {n_new:9d} {p_new:6.0%}")
