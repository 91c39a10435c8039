"""Source P0, section 2.2: batch size (Figs. 3-5), at TF32 without CBAM.

Arms: batch 16, 32 and 64. Runs are as long as equal compute needs (batch 16 sees as many
samples in 4x the iterations of batch 64); the equal-iteration claims read the first part
of the same runs, which is exact because the learning rate is constant.
"""

import pytest

from cnnconv import stats

SLOW_SECONDS = 250  # the Fashion-MNIST arms at cpu scale, 2 cores

# Generalisation, which the source did not try: the same claims on Fashion-MNIST too
# (Debian's dataset-fashion-mnist; 1x28x28, the same ResNet-18 with one input channel).
pytestmark = pytest.mark.parametrize("dataset", [
    "cifar10", pytest.param("fashion-mnist", marks=pytest.mark.slow(seconds=SLOW_SECONDS)),
])

SAME_LOSS = 0.03  # "about the same": within 3% of the mean (see test_p0_precision.py)


def batch_arms(arms, p0):
    """Batch 64, 32, 16, each long enough for equal compute with batch 64's equal_iterations."""
    steps = p0.equal_iterations
    return arms(
        b64=p0.run(),
        b32=p0.run(batch_size=32, iterations=2 * steps),
        b16=p0.run(batch_size=16, iterations=4 * steps),
    )


@pytest.mark.xfail_at_scale(
    "cpu", dataset="cifar10", reason=(
        'measured (5 seeds, engine 4): over the first 50 iterations batch 16 sits +5.6% '
        "[+4.1%, +7.1%] above batch 64 (engine 3: +6.5%), outside the 3% band; at the cpu "
        "scale's 1/20 windows the first window is still the steep start of training, where "
        'batch noise shows'
    ),
)
@pytest.mark.xfail_at_scale("long", reason=(
    'measured at the source\'s iteration counts (5 seeds, width 8, engine 3): over the first'
    ' 1000 iterations batch 16 sits +13.8% [+13.1%, +14.4%] above batch 64, batch 32 +6.5% '
    '[+5.5%, +7.6%]: far outside the 3% band, as at cpu scale'))
@pytest.mark.xfail_at_scale("cpu", dataset="fashion-mnist", reason=(
    'measured on Fashion-MNIST (5 seeds, engine 3): over the first 50 iterations batch 16 '
    'sits +16% [+15%, +17%] above batch 64, far outside the 3% band'))
@pytest.mark.claim(
    "P0-BS-1", source="P0",
    sentence="In the first 1000 iterations, batch sizes 16, 32 and 64 give about the same loss.",
    paper="Fig. 3: the three curves overlap over iterations 0-1000",
)
def test_first_iterations_alike_across_batch_sizes(arms, p0, alpha):
    b64, b32, b16 = batch_arms(arms, p0)
    first = {arm.label: arm.window_mean(*p0.first) for arm in (b64, b32, b16)}
    return stats.all_of([
        stats.equivalent(first[a], first[b], margin=SAME_LOSS, relative=True, alpha=alpha,
                         label=f"{a} ~ {b}")
        for a, b in (("b16", "b32"), ("b32", "b64"), ("b16", "b64"))
    ])


@pytest.mark.claim(
    "P0-BS-2", source="P0",
    sentence="At equal iterations (5000), a smaller batch gives a higher loss.",
    paper="Fig. 4: at 5000 iterations the loss orders 16 > 32 > 64",
)
def test_smaller_batch_higher_loss_at_equal_iterations(arms, p0, alpha):
    b64, b32, b16 = batch_arms(arms, p0)
    w = p0.final_window(p0.equal_iterations)
    return stats.ordered([b16.window_mean(*w), b32.window_mean(*w), b64.window_mean(*w)],
                         labels=["b16", "b32", "b64"], alpha=alpha)


def final_windows(p0):
    steps = p0.equal_iterations
    return {"b64": p0.final_window(steps), "b32": p0.final_window(2 * steps),
            "b16": p0.final_window(4 * steps)}


@pytest.mark.xfail_at_scale("cpu", dataset="fashion-mnist", reason=(
    'measured on Fashion-MNIST (5 seeds, engine 3): at equal compute batch 32 ends within '
    '+1.6% of batch 64 (shown), batch 16 +3.7% [+1.3%, +6.2%] above batch 32, inside the 6%'
    ' band but not shown to be (about 10 seeds would settle it)'))
@pytest.mark.claim(
    "P0-BS-3", source="P0",
    sentence="At equal compute (equal samples seen), all batch sizes end near loss 1.0.",
    paper="Fig. 5: all three end near loss 1.0",
)
def test_equal_compute_ends_alike(arms, p0, alpha, scale):
    b64, b32, b16 = batch_arms(arms, p0)
    ends = {arm.label: arm.window_mean(*final_windows(p0)[arm.label]) for arm in (b64, b32, b16)}
    parts = [
        stats.equivalent(ends["b16"], ends["b32"], margin=SAME_LOSS * 2, relative=True,
                         alpha=alpha, label="b16 ~ b32"),
        stats.equivalent(ends["b32"], ends["b64"], margin=SAME_LOSS * 2, relative=True,
                         alpha=alpha, label="b32 ~ b64"),
    ]
    if scale.is_paper:
        # The level 1.0 belongs to the source's full-size protocol only.
        parts += [stats.within(ends[b], 0.85, 1.15, alpha=alpha, label=f"{b} in [0.85, 1.15]")
                  for b in ("b16", "b32", "b64")]
    return stats.all_of(parts)


@pytest.mark.claim(
    "P0-BS-4", source="P0",
    sentence="A smaller batch makes the loss jitter more.",
    paper="Fig. 5: the batch-16 curve is the noisiest, batch 64 the smoothest",
)
def test_smaller_batch_jitters_more(arms, p0, alpha):
    b64, b32, b16 = batch_arms(arms, p0)
    # Jitter over the whole run past the first tenth, each run at equal compute.
    def whole(arm, iterations):
        return arm.jitter(iterations // 10, iterations)
    steps = p0.equal_iterations
    return stats.ordered([whole(b16, 4 * steps), whole(b32, 2 * steps), whole(b64, steps)],
                         labels=["b16", "b32", "b64"], alpha=alpha)
