"""Source P0, section 2.1: how numeric precision changes convergence (Fig. 2).

Arms: fp64, tf32 and pure bf16, batch 64, no CBAM. On a CPU, tf32 is emulated bit-exactly
(cnnconv.engine.precision); fp64 and bf16 are native.
"""

import pytest

from cnnconv import stats

SLOW_SECONDS = 150  # the Fashion-MNIST arms at cpu scale, 2 cores

# Generalisation, which the source did not try: the same claims on Fashion-MNIST too
# (Debian's dataset-fashion-mnist; 1x28x28, the same ResNet-18 with one input channel).
pytestmark = pytest.mark.parametrize("dataset", [
    "cifar10", pytest.param("fashion-mnist", marks=pytest.mark.slow(seconds=SLOW_SECONDS)),
])

# "About the same" is taken as within 3% of the window mean: the threshold the source
# itself uses to call the effect of CBAM in layer1 small (P0-ATT-1).
SAME_RATE = 0.03


@pytest.mark.xfail_at_scale("cpu", dataset="fashion-mnist", reason=(
    'measured on Fashion-MNIST (5 seeds, engine 3): fp64 / tf32 window means -3.0%, -3.7%,'
    ' -2.1% (ratio band -2.9% to +3%): fp64 ahead early and mid, TOST undecided at n=5 '
    '(late window: about 15 seeds would settle it)'))
@pytest.mark.claim(
    "P0-PREC-1", source="P0",
    sentence="TF32 and FP64 converge at about the same rate.",
    paper="the fp64 and tf32 loss curves overlap (Fig. 2); no numbers given",
)
def test_tf32_and_fp64_converge_at_about_the_same_rate(arms, p0, alpha):
    fp64, tf32 = arms(fp64=p0.run(precision="fp64", iterations=p0.equal_iterations),
                      tf32=p0.run())
    return p0.in_every_window(stats.equivalent, fp64, tf32, margin=SAME_RATE, relative=True,
                              alpha=alpha)


@pytest.mark.xfail_at_scale(
    "cpu", dataset="cifar10", reason=(
        'measured (5 seeds, CIFAR-10 JPEG, engine 3): by iteration 250 pure bf16 still '
        'descends (late slope -0.90 [-1.29, -0.51] loss per 1000 it, tf32 -1.11) and sits '
        'no higher than tf32 mid-run (-0.001 [-0.030, +0.028]); the plateau P0 reports '
        'sets in after ~3000 iterations, past the cpu-scale run'
    ),
)
@pytest.mark.xfail_at_scale("long", reason=(
    'measured at the source\'s iteration counts (5 seeds, width 8, engine 3): bf16 sits above '
    'tf32 mid-run (+0.016 [+0.000, +0.033]) and late (+0.021 [+0.005, +0.038]), but does not'
    ' plateau: over 3000-5000 it still descends by -0.048 [-0.052, -0.045] per 1000 it, about'
    ' tf32\'s -0.052'))
@pytest.mark.xfail_at_scale("cpu", dataset="fashion-mnist", reason=(
    'measured on Fashion-MNIST (5 seeds, engine 3): bf16 sits no higher than tf32 (-0.021 '
    '[-0.074, +0.031] mid-run) and still descends at iteration 250 (-0.53 [-1.29, +0.23] '
    'per 1000 it); as on CIFAR-10, the plateau is past the cpu-scale run'))
@pytest.mark.claim(
    "P0-PREC-2", source="P0",
    sentence="BF16 converges more slowly and plateaus: after about 3000 iterations it makes "
             "almost no further progress, staying above TF32.",
    paper="Fig. 2: the bf16 curve flattens after ~3000 iterations, above tf32",
)
def test_bf16_converges_more_slowly_and_plateaus(arms, p0, alpha):
    bf16, tf32 = arms(bf16=p0.run(precision="bf16", iterations=p0.equal_iterations),
                      tf32=p0.run())
    start, stop = p0.late
    # "Almost no further progress": over the late window bf16's fitted loss drops by less
    # than 0.05 (an equivalence to a zero slope), while tf32's slope is negative.
    flat = 0.05 * 1000 / (stop - start)
    return stats.all_of([
        stats.greater(bf16.window_mean(*p0.mid), tf32.window_mean(*p0.mid), alpha=alpha,
                      label="bf16 above tf32, mid"),
        stats.greater(bf16.window_mean(*p0.late), tf32.window_mean(*p0.late), alpha=alpha,
                      label="bf16 above tf32, late"),
        stats.equivalent(bf16.slope(start, stop), 0.0, margin=flat, alpha=alpha,
                         label="bf16 slope ~ 0, late"),
        stats.less(tf32.slope(start, stop), 0.0, alpha=alpha, label="tf32 slope < 0, late"),
    ])


@pytest.mark.xfail_at_scale("long", reason=(
    'measured at the source\'s iteration counts (5 seeds, width 8, engine 3): jitter fp64 - '
    'tf32 = +0.0004 [-0.0016, +0.0024], p=0.66: no difference over 5000 iterations either'))
@pytest.mark.xfail_at_scale("cpu", dataset="fashion-mnist", reason=(
    'measured on Fashion-MNIST (5 seeds, engine 3): jitter fp64 - tf32 = -0.0015 [-0.0099, '
    '+0.0069], no difference at this scale'))
@pytest.mark.xfail_at_scale("cpu", dataset="cifar10", strict=False, reason=(
    'decided sequentially, inconclusive at 16 seeds: jitter fp64 - tf32 = -0.0003 [-0.0035, '
    '+0.0030] (96% repeated CI), p=0.43 (AVX2 CPU, engine 4). At one look of 5 seeds (as CI '
    'runs it) rounding decides it: p=0.044 on an AVX-512 CPU (supported), 0.106 on an AVX2 '
    'one (same engine and seeds), 0.58 under engine 3; not strict for that look'))
@pytest.mark.claim(
    "P0-PREC-3", source="P0",
    sentence="FP64 is slightly more stable than TF32.",
    paper="Fig. 2: the fp64 curve jitters a little less; no numbers given",
)
def test_fp64_jitters_less_than_tf32(arms, p0, alpha):
    fp64, tf32 = arms(fp64=p0.run(precision="fp64", iterations=p0.equal_iterations),
                      tf32=p0.run())
    start = p0.early[0]
    stop = p0.late[1]
    return stats.less(fp64.jitter(start, stop), tf32.jitter(start, stop), alpha=alpha,
                      label="jitter fp64 < tf32")
