import pytest
import torch

from cnnconv.engine.models import CBAM_PLACEMENTS, LADDER_STEPS, MODELS, ResNet, build_model, count_parameters

# torchvision's resnet18 module names, stage by stage (what its state dict is keyed by).
TORCHVISION_PREFIXES = ["conv1", "bn1", "fc"] + [
    f"layer{s}.{b}.{m}" for s in range(1, 5) for b in range(2) for m in ("conv1", "bn1", "conv2", "bn2")
] + [f"layer{s}.0.downsample.{i}" for s in range(2, 5) for i in range(2)]


def test_resnet18_has_the_parameter_count_source_p0_prints():
    assert count_parameters(build_model("resnet18")) == 11_181_642


def test_resnet18_state_dict_keys_follow_torchvision():
    keys = set(build_model("resnet18").state_dict())
    assert len(keys) == 122
    prefixes = {key.rsplit(".", 1)[0] for key in keys}
    assert prefixes == set(TORCHVISION_PREFIXES)
    assert "layer2.0.downsample.1.num_batches_tracked" in keys


def test_torchvision_weights_load_and_agree():
    torchvision = pytest.importorskip("torchvision", reason="torchvision is optional (GPU hosts)")
    theirs = torchvision.models.resnet18(num_classes=10).eval()
    ours = build_model("resnet18").eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("placement", CBAM_PLACEMENTS)
def test_cbam_placements_build_and_count(placement):
    model = build_model("resnet18", cbam=placement)
    blocks = [m for m in model.modules() if m.__class__.__name__ == "BasicBlock"]
    with_cbam = sum(block.cbam is not None for block in blocks)
    assert with_cbam == {"none": 0, "layer1": 2, "all": 8}[placement]
    # Channel MLP C->C/16->C with biases, plus a 7x7 conv over 2 maps and a 1-channel BN.
    expected = sum(2 * b.bn2.num_features * (b.bn2.num_features // 16)
                   + b.bn2.num_features // 16 + b.bn2.num_features + 98 + 2
                   for b in blocks if b.cbam is not None)
    assert count_parameters(model) == 11_181_642 + expected


def test_cbam_model_loads_a_plain_state_dict_where_the_keys_overlap():
    plain = build_model("resnet18").state_dict()
    model = build_model("resnet18", cbam="layer1")
    missing, unexpected = model.load_state_dict(plain, strict=False)
    assert not unexpected and all(".cbam." in key for key in missing)


@pytest.mark.parametrize("name,count", [("lenet5", 62_006), ("resnet9", 6_573_120)])
def test_reference_parameter_counts(name, count):
    assert count_parameters(build_model(name)) == count


@pytest.mark.parametrize("step", LADDER_STEPS)
def test_ladder_networks_classify_cifar_shaped_input(step):
    model = build_model("resnet9", step=step, residual_layers=(), width=8)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_takes_grey_28x28_input(name):
    model = build_model(name, in_channels=1, image_size=28, **({"width": 8} if name != "lenet5" else {}))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_width_and_stem_options():
    small = build_model("resnet18", width=8, stem="cifar")
    assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, torch.nn.Identity)
    assert small.fc.in_features == 64
    assert count_parameters(small) < 200_000


def test_zero_init_residual_makes_each_block_start_as_identity_branch():
    model = ResNet(width=8, zero_init_residual=True)
    assert all(float(m.bn2.weight.detach().abs().sum()) == 0 for m in model.modules() if hasattr(m, "bn2"))


@pytest.mark.parametrize("kwargs,message", [
    ({"name": "resnet50"}, "unknown model 'resnet50'; choose one of lenet5, resnet18, resnet9"),
    ({"name": "resnet18", "cbam": "layer2"},
     "unknown model option cbam 'layer2'; choose one of none, layer1, all"),
    ({"name": "resnet9", "step": "deeper"}, "unknown model option step 'deeper'; choose one of"),
    ({"name": "resnet18", "width": 0}, "model option width must be an integer >= 1, got 0"),
    ({"name": "resnet18", "stem": "cifar", "zero_init_residual": 1},
     "zero_init_residual must be true or false, got 1"),
    ({"name": "lenet5", "cbam": "all"}, "model 'lenet5' takes no option 'cbam'"),
])
def test_bad_names_list_the_valid_choices(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_model(**kwargs)
