"""Source P2: cifar10-fast's ResNet-9 reaches 94% on CIFAR-10 in 24 epochs.

The source's own README: 35 of 50 runs reached 94%, median 94.08%. A single run proves
nothing, so the threshold claim is a one-sided one-sample t-test of the mean over at least
25 seeds at paper scale (the way speedrun records are accepted).
"""

import numpy as np
import pytest

from cnnconv import stats
from cnnconv.engine.models import LADDER_STEPS

PAPER_SEEDS = 25
# "About 0.15%" read as within a factor 1.5 either way: 25 seeds measure a std to about
# +-25% (90% chi-square interval), so the band can be shown to hold or to fail.
SPREAD, SPREAD_FACTOR = 0.0015, 1.5
CPU_NOTE = ("94% is a full-scale figure: the cpu scale trains a width-4 ResNet-9 on 2,560 "
            "images for 8 epochs")


def resnet9(arms, p2, scale):
    (arm,) = arms(seeds=PAPER_SEEDS if scale.is_paper else None, resnet9=p2.run(24))
    return arm


@pytest.mark.slow(seconds=60)
@pytest.mark.xfail_at_scale("cpu", reason=CPU_NOTE)
@pytest.mark.claim(
    "P2-94", source="P2",
    sentence="ResNet-9 reaches 94% test accuracy on CIFAR-10 in 24 epochs.",
    paper="mean 94.08% (median; 35 of 50 runs at >= 94%), 79 s on a V100",
)
def test_resnet9_reaches_94_percent(arms, p2, scale, alpha):
    accuracy = resnet9(arms, p2, scale).final_accuracy()
    return stats.greater(accuracy, 0.94, alpha=alpha, label="mean test accuracy > 94%")


@pytest.mark.slow(seconds=60)
@pytest.mark.xfail_at_scale("cpu", reason=(
    'measured (5 seeds): std of final accuracy 1.38% [0.90%, 3.3%] at cpu scale; a width-'
    '4 ResNet-9 tested on 2,000 images after 8 epochs on 2,560 varies ten times more than'
    ' the full recipe'))
@pytest.mark.claim(
    "P2-STD", source="P2",
    sentence="The run-to-run standard deviation of final test accuracy is about 0.15%.",
    paper="0.15% (cifar10-fast README)",
)
def test_run_to_run_spread_is_0_15_percent(arms, p2, scale, alpha):
    accuracy = resnet9(arms, p2, scale).final_accuracy()
    return stats.std_within(accuracy, SPREAD / SPREAD_FACTOR, SPREAD * SPREAD_FACTOR, alpha=alpha,
                            label="std of final accuracy")


@pytest.mark.slow(seconds=300)
@pytest.mark.xfail_at_scale("cpu", reason=(
    'measured (5 seeds, engine 3): the first two steps hold (+8.3 and +4.1 points), global '
    'max pool + 2x width gains nothing (-0.5 [-4.5, +3.4]) and the final step loses 5.6 '
    'points [1.5, 9.8] (not significant after Holm over the four) at width 4 on 2,560 images'))
@pytest.mark.claim(
    "P2-LADDER", source="P2",
    sentence="Each step of the 20-epoch ablation ladder improves test accuracy.",
    paper="55.9% -> 85.6% -> 89.7% -> 90.7% -> 91.1% (shortest path, 3x3 downsample, "
          "+ max pool, global max pool + 2x final width, BN weight 1 + classifier x0.125)",
)
def test_every_ladder_step_improves(arms, p2, alpha):
    rungs = arms(**{step: p2.rung(step) for step in LADDER_STEPS})
    return stats.ordered([arm.final_accuracy() for arm in rungs], decreasing=False,
                         labels=list(LADDER_STEPS), alpha=alpha)


@pytest.mark.slow(seconds=150)
@pytest.mark.claim(
    "P2-DEPTH", source="P2",
    sentence="Adding the two residual blocks (L1+L3) gains more than training the "
             "residual-free network two epochs longer (20 -> 22).",
    paper="L1+L3 at 20 epochs: 93.8%, against 91.1% for the ladder's last network",
)
def test_residual_blocks_beat_longer_training(arms, p2, alpha):
    deeper, longer, base = arms(l1_l3_20ep=p2.run(20), final_22ep=p2.rung("final", 22),
                                final_20ep=p2.rung("final", 20))
    base_accuracy = base.final_accuracy()
    depth_gain = deeper.final_accuracy() - base_accuracy
    time_gain = longer.final_accuracy() - base_accuracy
    return stats.greater(depth_gain, time_gain, alpha=alpha,
                         label="gain of residual blocks > gain of 2 more epochs")


TIME_ANCHOR_SECONDS = 79.0


@pytest.mark.claim(
    "P2-TIME", source="P2",
    sentence="ResNet-9 trains to 94% in 79 s on one V100 (341 -> 154 -> 79 s over the "
             "series); a newer GPU should need less.",
    paper="79 s on a V100 (the anchor)",
)
def test_time_to_94_percent_against_the_v100_anchor(arms, p2, scale, alpha):
    if not scale.is_paper:
        pytest.skip("P2-TIME is the wall clock of the full recipe on a GPU; the cpu scale "
                    "has no analogue")
    spec = p2.run(24)
    # One seed per computation: a stack's wall clock is not one run's.
    (arm,) = arms(stack=1, timed=spec.replace(eval_at=_epoch_ends(spec)))
    seconds = arm.per_seed(lambda run: _time_to(run, 0.94))
    reached = np.isfinite(seconds)
    parts = [stats.most_often(reached, share=0.5, alpha=alpha, label="runs that reach 94%")]
    if reached.sum() >= 2:
        parts.append(stats.less(seconds[reached], TIME_ANCHOR_SECONDS, alpha=alpha,
                                label=f"seconds to 94% (evaluation excluded) < "
                                      f"{TIME_ANCHOR_SECONDS:g}"))
    return stats.all_of(parts, label="time to 94% beats the V100 anchor", alpha=alpha)


def _epoch_ends(spec):
    per_epoch = 50_000 // spec.batch_size
    return tuple(per_epoch * e for e in range(1, round(spec.epochs) + 1))


def _time_to(run, threshold):
    """Training seconds until the first evaluation at or above ``threshold`` (inf if never)."""
    train_seconds = (run.wall_time - run.eval_time) / len(run.losses)
    for iteration, accuracy in zip(run.eval_iterations, run.test_accuracy):
        if accuracy >= threshold:
            return iteration * train_seconds
    return float("inf")
