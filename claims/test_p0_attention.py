"""Source P0, section 2.3: CBAM attention in ResNet-18 (Figs. 6-7), tf32, batch 64.

CBAM here is the module of Woo et al. (ECCV 2018) with reduction 16 on each residual
branch: in layer1's two blocks, or in all eight blocks.
"""

import pytest

from cnnconv import stats
from cnnconv.engine.models import build_model, count_parameters

SMALL_CHANGE = 0.03  # the source: "the optimisation of the loss is within 3%"

PAPER_COUNTS = {"none": 11_181_642, "layer1": 11_690_634, "all": 11_776_944}


def cbam_lowers_the_loss(arms, p0, alpha, windows):
    """CBAM in every block has a lower mean loss than the plain network in each window."""
    cbam, plain = arms(cbam_all=p0.cbam("all"), plain=p0.run())
    return p0.in_every_window(stats.less, cbam, plain, windows, alpha=alpha)


@pytest.mark.xfail_at_scale(
    "cpu", reason=(
        'measured (5 seeds, engine 3): CBAM in layer1 changes the loss by -3.0%, -1.6%, '
        '-0.9% (early, mid, late; ratio band -2.9% to +3%): late shown within the band, mid'
        ' undecided (about 11 seeds), early at the edge of the band'
    ),
)
@pytest.mark.xfail_at_scale(
    "long", reason=(
        'measured at the source\'s iteration counts (5 seeds, width 8, engine 3): CBAM in '
        'layer1 changes the loss by -0.9%, -1.4%, -1.9% (early, mid, late; band -2.9% to +3%)'
        ': early shown within the band, mid and late undecided (about 11 and 42 seeds)'
    ),
)
@pytest.mark.claim(
    "P0-ATT-1", source="P0",
    sentence="CBAM only in layer1 changes convergence by less than 3%.",
    paper="200-1500: 1.4221 vs 1.4503; 1500-3000: 1.0692 vs 1.0814; 3000-5000: < 2%",
)
def test_cbam_in_layer1_changes_little(arms, p0, alpha):
    cbam, plain = arms(cbam_layer1=p0.cbam("layer1", iterations=p0.equal_iterations),
                       plain=p0.run())
    return p0.in_every_window(stats.equivalent, cbam, plain, margin=SMALL_CHANGE, relative=True,
                              alpha=alpha)


@pytest.mark.claim(
    "P0-ATT-2", source="P0",
    sentence="CBAM adds few parameters.",
    paper="11,181,642 -> 11,690,634 (layer1), 11,776,944 (all; +5.3%)",
)
def test_cbam_adds_few_parameters():
    counts = {p: count_parameters(build_model("resnet18", cbam=p)) for p in PAPER_COUNTS}
    assert counts["none"] == PAPER_COUNTS["none"]
    # Standard CBAM (r = 16) adds far fewer parameters than the source prints: its
    # counts do not follow from the module it cites. We test the sentence with ours.
    increase = counts["all"] / counts["none"] - 1
    return stats.exact(
        increase, increase <= 0.053, effect_name="relative increase, CBAM in all blocks",
        label=(f"ours: none {counts['none']:,}, layer1 {counts['layer1']:,}, all "
               f"{counts['all']:,}; source: layer1 {PAPER_COUNTS['layer1']:,}, all "
               f"{PAPER_COUNTS['all']:,}"),
    )


@pytest.mark.xfail_at_scale(
    "cpu", reason=(
        'measured (5 seeds, engine 4): CBAM in every block raises the mid-window loss by '
        '+0.034 [-0.002, +0.070] (engine 3: +0.033 [+0.013, +0.052], refuted); at width 8 its'
        ' channel MLP has 1-4 hidden units (C/16)'
    ),
)
@pytest.mark.xfail_at_scale(
    "long", reason=(
        'measured at the source\'s iteration counts (5 seeds, width 8, engine 3): CBAM in every'
        ' block lowers the mid-window loss by -0.027 [-0.034, -0.021], but the early window by'
        ' only -0.005 [-0.024, +0.014], undecided (about 100 seeds would settle it)'
    ),
)
@pytest.mark.claim(
    "P0-ATT-3", source="P0",
    sentence="CBAM in every block lowers the loss in the early and middle phases.",
    paper="200-1500: 1.3974 vs 1.4461; 1500-3000: 1.0222 vs 1.0903",
)
def test_cbam_everywhere_lowers_early_and_mid_loss(arms, p0, alpha):
    return cbam_lowers_the_loss(arms, p0, alpha, {"early": p0.early, "mid": p0.mid})


@pytest.mark.xfail_at_scale(
    "cpu", reason=(
        'measured (5 seeds, engine 3): no gap to persist; CBAM everywhere is +0.023 '
        '[-0.022, +0.069] above the plain network over iterations 150-250 at width 8 (engine'
        ' 2: +0.041 [+0.015, +0.067], refuted)'
    ),
)
@pytest.mark.claim(
    "P0-ATT-4", source="P0",
    sentence="The gap CBAM in every block opens persists late in training.",
    paper="3000-5000: 0.7423 vs 0.8236; the gap holds over 5000-8000",
)
def test_cbam_gap_persists_late(arms, p0, alpha):
    return cbam_lowers_the_loss(arms, p0, alpha, {"late": p0.late, "later": p0.later})
