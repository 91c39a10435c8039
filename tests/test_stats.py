"""Decisions must be able to fail, and must fail at the rate they claim.

The calibration tests draw synthetic per-seed summaries: an A/A comparison (two identical
arms) must raise false alarms at about alpha, and a known effect must be detected with
about the power the harness promises.
"""

import numpy as np
import pytest
from scipy import stats as sps

from cnnconv import stats

ALPHA = 0.05
TRIALS = 2000


def _binomial_band(p: float, trials: int) -> tuple[float, float]:
    low, high = sps.binom.interval(0.999, trials, p)
    return low / trials, high / trials


@pytest.mark.parametrize("paired,decide", [
    (True, lambda a, b: stats.greater(a, b)),
    (True, lambda a, b: stats.less(a, b)),
    (False, lambda a, b: stats.greater(a, b, paired=False)),
])
def test_aa_false_alarm_rate_is_alpha(paired, decide):
    rng = np.random.default_rng(1)
    alarms = 0
    for _ in range(TRIALS):
        # Two arms from one distribution: paired by seed (a shared per-seed component,
        # as common random numbers give) or independent.
        base = rng.normal(1.0, 0.05, 8) if paired else 1.0
        a = base + rng.normal(0, 0.02, 8)
        b = base + rng.normal(0, 0.02, 8)
        alarms += decide(a, b).supported
    low, high = _binomial_band(ALPHA, TRIALS)
    assert low <= alarms / TRIALS <= high


def test_tost_false_equivalence_rate_at_the_margin_is_at_most_alpha():
    rng = np.random.default_rng(2)
    hits = sum(stats.equivalent(rng.normal(0.1, 0.1, 10), 0.0, margin=0.1).supported
               for _ in range(TRIALS))
    assert hits / TRIALS <= _binomial_band(ALPHA, TRIALS)[1]


def test_known_effect_is_detected_with_the_stated_power():
    """An lr ten times too small leaves the loss higher; at the n seeds_needed names for
    the effect size, the one-sided test detects it in about 80% of experiments."""
    effect, sd = 0.05, 0.1
    n = stats.seeds_needed(effect / sd)
    assert n == 27
    rng = np.random.default_rng(3)
    detected = sum(stats.greater(rng.normal(effect, sd, n), 0.0).supported for _ in range(TRIALS))
    low, high = _binomial_band(stats.TARGET_POWER, TRIALS)
    assert low <= detected / TRIALS <= high + 0.02
    assert stats.power_one_sided(effect / sd, n) >= 0.8 > stats.power_one_sided(effect / sd, n - 1)


def test_directional_decisions_support_refute_and_stay_inconclusive():
    rng = np.random.default_rng(4)
    base = rng.normal(1.0, 0.1, 10)
    higher = base + 0.2 + rng.normal(0, 0.01, 10)
    assert stats.greater(higher, base).verdict == "supported"
    assert stats.greater(base, higher).verdict == "refuted"  # must reject the wrong way
    noisy = base + rng.normal(0, 0.1, 10)
    undecided = stats.greater(noisy[:3], base[:3] + 0.01)
    assert undecided.verdict in ("inconclusive", "refuted")
    tiny = stats.greater(base + 0.01 + rng.normal(0, 0.05, 10), base)
    assert tiny.verdict == "inconclusive" and tiny.seeds_needed and tiny.seeds_needed > 10
    assert "seeds would settle it" in tiny.text


def test_rank_methods_agree_in_direction():
    rng = np.random.default_rng(5)
    a = rng.normal(0, 1, 12)
    b = a - 1 + rng.normal(0, 0.1, 12)
    assert stats.greater(a, b, method="rank").supported
    assert stats.greater(a, b, method="rank", paired=False).supported
    assert stats.greater(b, a, method="rank").verdict == "refuted"


def test_equivalence_supports_refutes_and_reports_the_margin():
    rng = np.random.default_rng(6)
    a = rng.normal(1.0, 0.01, 10)
    assert stats.equivalent(a, a + rng.normal(0, 0.002, 10), margin=0.02).supported
    far = stats.equivalent(a, a + 0.1, margin=0.02)
    assert far.verdict == "refuted"
    rel = stats.equivalent(a, a * 1.01, margin=0.03, relative=True)
    assert rel.supported and "±0.03" in rel.effect_name


def test_within_a_band():
    rng = np.random.default_rng(7)
    assert stats.within(rng.normal(1.0, 0.02, 8), 0.9, 1.1).supported
    assert stats.within(rng.normal(1.5, 0.02, 8), 0.9, 1.1).verdict == "refuted"


def test_holm_matches_the_textbook_example():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_all_of_needs_every_part_after_correction():
    supported = stats.exact(1, True)
    weak = stats.Decision("supported", 0.03, 0.1, (0, 0.2), 8, 0.05, "t")
    combined = stats.all_of([supported, weak, weak])
    assert combined.verdict == "inconclusive"  # 0.03 * 2 > 0.05 after Holm
    assert stats.all_of([supported, stats.exact(0, False)]).verdict == "refuted"


def test_ordered_and_interior_maximum():
    rng = np.random.default_rng(8)
    base = rng.normal(0, 0.05, 10)
    levels = [base + shift + rng.normal(0, 0.01, 10) for shift in (0.0, 0.3, 0.5, 0.2)]
    assert stats.ordered(levels[:3], decreasing=False).supported
    assert stats.ordered(levels[:3]).verdict == "refuted"
    peak = stats.interior_maximum(levels, labels=["8", "32", "64", "256"])
    assert peak.supported and peak.label == "peak at 64"
    monotone = [base + shift + rng.normal(0, 0.01, 10) for shift in (0.0, 0.1, 0.2, 0.3)]
    assert stats.interior_maximum(monotone).verdict == "refuted"


def test_std_containment():
    rng = np.random.default_rng(9)
    assert stats.std_contains(rng.normal(94, 0.15, 25), 0.15).supported
    assert stats.std_contains(rng.normal(94, 0.5, 25), 0.15).verdict == "refuted"


def test_per_run_summaries():
    steps = np.arange(1000)
    curve = 2.0 - 0.001 * steps
    assert stats.window_mean(curve, 0, 10) == pytest.approx(1.9955)
    value, (low, high) = stats.slope(curve, 100, 200)
    assert value == pytest.approx(-1.0) and low <= value <= high
    rng = np.random.default_rng(10)
    noisy = curve + rng.normal(0, 0.1, 1000)
    assert stats.jitter(noisy, 100, 900) == pytest.approx(0.1, rel=0.1)
    assert stats.jitter(curve, 100, 900) < 1e-9  # a straight line has no jitter
    with pytest.raises(ValueError, match="outside the curve"):
        stats.window_mean(curve, 900, 1100)


def test_bad_samples_are_refused():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.greater([1.0], [2.0])
    with pytest.raises(ValueError, match="non-finite"):
        stats.greater([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="equal length"):
        stats.greater([1.0, 2.0], [1.0, 2.0, 3.0])


def test_bootstrap_ci_covers_the_mean():
    rng = np.random.default_rng(11)
    sample = rng.normal(5, 1, 40)
    low, high = stats.bootstrap_ci(sample, lambda x, axis=-1: x.mean(axis))
    assert low < 5 < high


def test_trend_detects_a_falling_count_and_rejects_a_rising_one():
    levels = np.log2([2, 4, 8, 16, 32, 64, 128, 256])
    falling = stats.trend(levels, [5, 5, 4, 4, 3, 2, 1, 1])
    assert falling.supported and falling.effect < -0.8
    rising = stats.trend(levels, [1, 1, 2, 3, 4, 4, 5, 5])
    assert rising.verdict == "refuted"
    flat = stats.trend(levels, [3, 3, 3, 3, 3, 3, 3, 3])
    assert flat.verdict == "inconclusive"
    with pytest.raises(ValueError, match="at least 5"):
        stats.trend([1, 2], [2, 1])


def test_argmax_within_locates_the_best_level_and_can_reject():
    rng = np.random.default_rng(0)
    levels = [2, 4, 8, 16, 32, 64, 128, 256]
    peak_at_8 = [0.8 - 0.02 * abs(i - 2) + rng.normal(0, 0.003, 8) for i in range(8)]
    inside = stats.argmax_within(peak_at_8, levels, 2, 32)
    assert inside.supported and "8 > 64" in inside.effect_name
    peak_at_128 = [0.8 - 0.02 * abs(i - 6) + rng.normal(0, 0.003, 8) for i in range(8)]
    assert stats.argmax_within(peak_at_128, levels, 2, 32).verdict == "refuted"
    alarms = sum(stats.argmax_within([0.8 + rng.normal(0, 0.05, 4) for _ in range(8)],
                                     levels, 2, 32).supported for _ in range(200))
    assert alarms <= 20  # equal levels: "supported" at most about alpha of the time
