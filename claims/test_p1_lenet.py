"""Source P1: batch size and learning rate for LeNet-5 with plain SGD (Charts 1 and 2).

The metric is training accuracy (how well the network fits the training images), read
over the last epoch ("after equal epochs") or over an early epoch ("early convergence").
"""

import pytest

from cnnconv import stats


def batch_sweep(arms, p1):
    specs = {f"bs{b}": p1.run(batch_size=b, lr=0.01) for b in p1.batch_sizes}
    return arms(**specs)


def lr_sweep(arms, p1):
    specs = {f"lr{lr:g}": p1.run(lr=lr) for lr in p1.learning_rates}
    return arms(**specs)


def accuracy_in_epoch(arm, p1, epoch):
    return arm.train_accuracy(*p1.epoch_window(arm.spec, epoch))


def accuracy_peaks_inside_the_batch_sweep(arms, p1, epoch, alpha):
    """Training accuracy in ``epoch`` is highest at an interior batch size."""
    sweep = batch_sweep(arms, p1)
    return stats.interior_maximum([accuracy_in_epoch(a, p1, epoch) for a in sweep],
                                  labels=[a.label for a in sweep], alpha=alpha)


@pytest.mark.xfail_at_scale(
    "cpu", reason=(
        'measured (5 seeds, engine 3): after 8 epochs on 2,500 images accuracy falls '
        'with batch size; batch 8 beats every larger batch (bs16 - bs8 = -0.068 [-0.074, '
        "-0.063]); with few epochs the number of updates dominates, the source's 500 "
        'epochs are needed for the peak'
    ),
)
@pytest.mark.claim(
    "P1-BS-1", source="P1",
    sentence="With lr 0.01 fixed, training accuracy after equal epochs first rises, then "
             "falls with batch size (8..256); about 64 is best.",
    paper="Chart 1, after 500 epochs: an interior maximum near batch 64",
)
def test_accuracy_is_an_inverted_u_in_batch_size(arms, p1, alpha):
    return accuracy_peaks_inside_the_batch_sweep(arms, p1, p1.epochs, alpha)


@pytest.mark.xfail_at_scale(
    "cpu", reason=(
        'measured (5 seeds, engine 3): in epoch 2 batch 8 is ahead of batch 16 by 0.034 '
        '[0.015, 0.054]; no interior peak at this scale'
    ),
)
@pytest.mark.claim(
    "P1-BS-2", source="P1",
    sentence="Early convergence speed also first rises, then falls with batch size.",
    paper="Chart 1: the early part of the curves orders the same way",
)
def test_early_convergence_is_an_inverted_u_in_batch_size(arms, p1, alpha):
    return accuracy_peaks_inside_the_batch_sweep(arms, p1, max(1, p1.epochs // 4), alpha)


@pytest.mark.xfail_at_scale(
    "cpu", strict=False, reason=(
        'measured (5 seeds, 2-core CPU, one seed per computation): epoch-time ratio bs8/bs16 '
        '= 1.78 [1.35, 2.20] (engine 4, the batch sweep\'s runs); three fresh runs of engine '
        '3 gave 1.95 [1.69, 2.21], 1.39 [1.08, 1.69], 1.35 [1.09, 1.61]; on a CPU the cost of '
        'a step grows with its batch, so doubling the batch mostly saves less than half, and '
        'the ratio moves with the load of the machine (not strict: a wall-clock verdict on a '
        'shared CPU)'
    ),
)
@pytest.mark.claim(
    "P1-BS-3", source="P1",
    sentence="At small batch sizes, doubling the batch halves the epoch time.",
    paper="batch 8: 31 s/epoch, batch 16: 16 s/epoch (GTX 1050 Ti), ratio 1.94",
)
def test_doubling_a_small_batch_halves_epoch_time(arms, p1, alpha):
    # One seed per computation: a stack's wall clock is not one run's. On a CPU the engine
    # trains LeNet-5 one seed at a time anyway, so the batch sweep's runs serve; on CUDA,
    # where the sweep stacks its seeds, an extra evaluation at iteration 1 (its time is
    # left out) gives these runs keys of their own.
    own = {} if p1.scale.device == "cpu" else {"eval_at": (1,)}
    small, double = arms(stack=1, bs8=p1.run(batch_size=8, **own),
                         bs16=p1.run(batch_size=16, **own))
    # (a run only planned, under --cnnconv-plan, records no environment)
    stacks = {run.environment.get("stack", "1") for arm in (small, double) for run in arm.runs}
    assert stacks == {"1"}, f"timed runs were trained in stacks of {stacks}, not alone"
    seconds = [arm.per_seed(lambda run: run.wall_time - run.eval_time) for arm in (small, double)]
    # Timings come from when each run was trained (on the machine that trained it).
    return stats.within(seconds[0] / seconds[1], 1.6, 2.4, alpha=alpha,
                        label="epoch-time ratio bs8 / bs16 in [1.6, 2.4]")


@pytest.mark.claim(
    "P1-LR-1", source="P1",
    sentence="With batch 128, training accuracy after equal epochs first rises, then falls "
             "with the learning rate (1e-5..0.5).",
    paper="Chart 2: an interior maximum over ten learning rates",
)
def test_accuracy_is_an_inverted_u_in_learning_rate(arms, p1, alpha):
    sweep = lr_sweep(arms, p1)
    # A diverged run fits nothing: it counts with accuracy 0 rather than being left out.
    last = [a.train_accuracy(*p1.epoch_window(a.spec, p1.epochs), diverged=0.0) for a in sweep]
    return stats.interior_maximum(last, labels=[a.label for a in sweep], alpha=alpha)


@pytest.mark.xfail_at_scale(
    "cpu", reason=(
        'measured (5 seeds, engine 3): at 8 epochs on 2,500 images 3 of 5 runs at lr 0.5 '
        'fail to converge (engine 2, with other dropout masks: 2 of 5); the proportion 0.6 '
        '[0.25, 1] is not shown above one half at n=5'
    ),
)
@pytest.mark.claim(
    "P1-LR-2", source="P1",
    sentence="Too large a learning rate (0.5) does not converge at all.",
    paper="Chart 2: lr 0.5 stays at chance",
)
def test_learning_rate_half_does_not_converge(arms, p1, alpha):
    (big,) = arms(lr0_5=p1.run(lr=0.5))
    window = p1.epoch_window(big.spec, p1.epochs)
    failed = [run.diverged_at is not None or run.train_accuracy(*window) < 0.15
              for run in big.runs]
    return stats.most_often(failed, share=0.5, alpha=alpha,
                            label="runs that diverge or stay below 15% training accuracy")
