"""Source P4 (Masters & Luschi, 2018): revisiting small-batch training.

With the learning rate per example held fixed (eta = m * eta~, for a mean loss), the paper
sweeps the batch size m from 2 to 256 over a grid of eta~ and finds the best test accuracy
at small m (2 to 32), a range of stable eta~ that shrinks as m grows, and that BatchNorm
over very small batches hurts.
"""

import numpy as np
import pytest

from cnnconv import stats

SWEEP_SECONDS = 600


def sweep(arms, p4):
    """Every (m, eta~) arm, keyed by (m, eta~)."""
    specs = {(m, lr): p4.run(m, lr) for m in p4.batch_sizes for lr in p4.per_example_lrs}
    found = arms(**{f"m{m}_lr2^{np.log2(lr):.0f}": spec for (m, lr), spec in specs.items()})
    return dict(zip(specs, found))


def stable(arm, p4):
    """Per seed: finished without diverging, with the last tenth's loss below the bar."""
    out = []
    for run in arm.runs:
        tail = run.losses[-max(1, len(run.losses) // 10):]
        out.append(run.diverged_at is None and float(np.mean(tail)) < p4.stable_loss)
    return np.array(out)


def best_lr(grid, p4, m):
    """The eta~ with the best mean test accuracy at m (a diverged run counts as 0)."""
    return max(p4.per_example_lrs, key=lambda lr: grid[(m, lr)].final_accuracy(diverged=0.0).mean())


def best_accuracy(grid, p4, m):
    """Per seed, the accuracy at m of the eta~ with the best mean."""
    return grid[(m, best_lr(grid, p4, m))].final_accuracy(diverged=0.0)


@pytest.mark.slow(seconds=SWEEP_SECONDS)
@pytest.mark.xfail_at_scale("cpu", reason=(
    'measured (5 seeds): best accuracies of m = 32 and 64 differ by +1.2 [-0.8, +3.1] poi'
    'nts; the best small batch is not yet shown to beat every large one (about 20 seeds w'
    'ould settle it)'))
@pytest.mark.xfail_at_scale("long", reason=(
    'measured at long (5,120 images, 8 epochs, 5 seeds, engine 3): '
    'the best accuracy is at m = 4 (52.3%), ahead of m = 128 and 256, but only +6.6 '
    '[-0.3, +13.5] points over m = 64 (about 15 seeds would settle it)'))
@pytest.mark.claim(
    "P4-SMALL", source="P4",
    sentence="With a constant per-example learning rate, the best test accuracy is reached "
             "at batch sizes m between 2 and 32.",
    paper="CIFAR-10 ResNets: best results for m = 2..32 (Figures 4-6)",
)
def test_best_accuracy_at_a_small_batch(arms, p4, alpha):
    grid = sweep(arms, p4)
    groups = [best_accuracy(grid, p4, m) for m in p4.batch_sizes]
    return stats.argmax_within(groups, p4.batch_sizes, 2, 32, alpha=alpha,
                               label="batch size of the best accuracy")


@pytest.mark.slow(seconds=SWEEP_SECONDS)
@pytest.mark.xfail_at_scale("cpu", reason=(
    'measured (5 seeds): no run at cpu scale gets its last-tenth loss below 2.0 (2 epochs'
    ' on 1,024 images; accuracy at most 24%), so every count is 0: the cpu scale is too s'
    'hort to tell a stable learning rate from a slow one'))
@pytest.mark.xfail_at_scale("long", reason=(
    'measured at long (5,120 images, 8 epochs, 5 seeds, engine 3): '
    'stable eta~ per m 4, 5, 5, 5, 5, 4, 4, 3 (m = 2..256): Kendall tau -0.48 '
    '[-0.79, +0.02], p=0.089; five eta~ levels are too coarse to settle it'))
@pytest.mark.claim(
    "P4-RANGE", source="P4",
    sentence="The range of learning rates that train stably shrinks as the batch grows.",
    paper="the stable eta~ range narrows with m (Figures 4-6)",
)
def test_stable_learning_rates_shrink_with_batch_size(arms, p4, alpha):
    grid = sweep(arms, p4)
    counts = [int(sum(stable(grid[(m, lr)], p4).mean() > 0.5 for lr in p4.per_example_lrs))
              for m in p4.batch_sizes]
    return stats.trend(np.log2(p4.batch_sizes), counts, decreasing=True, alpha=alpha,
                       label=f"stable eta~ per m: {dict(zip(p4.batch_sizes, counts))}")


@pytest.mark.slow(seconds=SWEEP_SECONDS)
@pytest.mark.xfail_at_scale("cpu", reason=(
    'measured (5 seeds): best accuracy at m = 8 is +0.9 [-1.6, +3.5] points over m = 2, u'
    'ndecided (about 54 seeds would settle it)'))
@pytest.mark.xfail_at_scale("long", reason=(
    'measured at long (5,120 images, 8 epochs, 5 seeds, engine 3): '
    'best accuracy at m = 8 is +3.2 [-0.4, +6.9] points over m = 2, p=0.065 (about 11'
    ' seeds would settle it)'))
@pytest.mark.claim(
    "P4-BN", source="P4",
    sentence="BatchNorm over very small batches hurts: m = 2 trains worse than a moderate m = 8.",
    paper="with BN the best m is 4..8; m = 2 is worse (Section 4.3)",
)
def test_tiny_batchnorm_batches_hurt(arms, p4, alpha):
    grid = sweep(arms, p4)
    return stats.greater(best_accuracy(grid, p4, 8), best_accuracy(grid, p4, 2), alpha=alpha,
                         label="best accuracy at m = 8 > at m = 2")


@pytest.mark.slow(seconds=SWEEP_SECONDS)
@pytest.mark.xfail_at_scale("cpu", reason=(
    'measured (5 seeds): small batches beat m = 256 with warmup by 10.9 [8.3, 13.5] point'
    's, but warmup at twice the best eta~ does not beat no warmup at m = 256 (-2.4 [-4.8,'
    ' +0.05])'))
@pytest.mark.xfail_at_scale("long", reason=(
    'measured at long (5,120 images, 8 epochs, 5 seeds, engine 3): '
    'small batches beat m = 256 with warmup by 22.2 [15.9, 28.5] points, but warmup at '
    'twice the best eta~ is 8.1 [2.4, 13.7] points below no warmup at m = 256'))
@pytest.mark.claim(
    "P4-WARMUP", source="P4",
    sentence="Warmup helps a large batch, but does not bring it up to the small-batch "
             "accuracy.",
    paper="gradual warmup improves m = 256..4096 without reaching the small-m results",
)
def test_warmup_helps_large_batches_but_not_enough(arms, p4, alpha):
    grid = sweep(arms, p4)
    large = max(p4.batch_sizes)
    best = best_lr(grid, p4, large)
    # Warmup lets the large batch try twice the best eta~ it reached without it.
    warm, cold = arms(warmup=p4.run(large, 2 * best, warmup=0.2),
                      no_warmup=grid[(large, best)].spec)
    accuracy = [arm.final_accuracy(diverged=0.0) for arm in (warm, cold)]
    small = max((best_accuracy(grid, p4, m) for m in p4.batch_sizes if m <= 32),
                key=lambda row: row.mean())
    return stats.all_of([
        stats.greater(accuracy[0], accuracy[1], alpha=alpha,
                      label=f"m = {large}: warmup at 2x eta~ > no warmup at the best eta~"),
        stats.greater(small, accuracy[0], alpha=alpha,
                      label="best small batch > large batch with warmup"),
    ], alpha=alpha)
