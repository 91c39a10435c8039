"""The networks the claims are about, in a registry by name.

``resnet18`` follows torchvision's ``resnet.py`` layout and naming exactly (``conv1``,
``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc`` ...), so a torchvision
state dict loads into it unchanged and the 10-class model has the 11,181,642 parameters
source P0 prints. Options that the sources vary -- the stem, CBAM placement, a width
multiplier for CPU-scale runs, zero-gamma init -- are constructor arguments, so one
class serves every arm of a claim.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnconv.engine.validation import check_choice, check_number

CBAM_PLACEMENTS = ("none", "layer1", "all")
STEMS = ("imagenet", "cifar")


class ChannelGate(nn.Module):
    """CBAM channel attention: a shared two-layer MLP over average- and max-pooled features.

    Follows Woo et al. (ECCV 2018): ``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))``, the MLP
    being ``C -> C/r -> C`` with biases, as in the authors' reference implementation.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(x.mean(dim=(2, 3)))
        peak = self.mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(avg + peak)[:, :, None, None]


class SpatialGate(nn.Module):
    """CBAM spatial attention: a 7x7 conv (then BN) over the channel-wise mean and max maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Sequential):
    """Convolutional Block Attention Module: channel gate, then spatial gate."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, reduction)
        self.spatial = SpatialGate()


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, with optional CBAM on the residual branch before the sum."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        cbam_reduction: int | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.cbam = CBAM(planes, cbam_reduction) if cbam_reduction else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.cbam is not None:
            out = self.cbam(out)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with torchvision's module names; ``width`` is the first stage's channel count."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 64,
        stem: str = "imagenet",
        cbam: str = "none",
        cbam_reduction: int = 16,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_choice("stem", stem, STEMS)
        check_choice("cbam", cbam, CBAM_PLACEMENTS)
        self.inplanes = width
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages = []
        for index, blocks in enumerate(layers):
            with_cbam = cbam == "all" or (cbam == "layer1" and index == 0)
            stages.append(
                self._make_layer(
                    width * 2**index, blocks, 1 if index == 0 else 2,
                    cbam_reduction if with_cbam else None,
                )
            )
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 8, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Bag of Tricks (P3): each block then starts as the identity.
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def _make_layer(
        self, planes: int, blocks: int, stride: int, cbam_reduction: int | None
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, cbam_reduction)]
        self.inplanes = planes
        layers += [
            BasicBlock(planes, planes, cbam_reduction=cbam_reduction) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class LeNet5(nn.Module):
    """LeNet-5 for 3-channel 32x32 input with 50% dropout between F6 and the output (P1).

    ReLU activations and max pooling, as in the common Keras LeNet the source builds on.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: int = 6
    ) -> None:
        super().__init__()
        c1, c3 = width, width * 16 // 6
        side = ((image_size - 4) // 2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c3, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c3 * side * side, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def conv_bn(c_in: int, c_out: int, bn_weight_one: bool = True) -> nn.Sequential:
    """3x3 conv, BatchNorm, ReLU: the unit of the cifar10-fast networks (P2)."""
    bn = nn.BatchNorm2d(c_out)
    if not bn_weight_one:
        # The original PyTorch default before 1.2 drew BN weights from U(0, 1); the P2
        # ladder's last step is about fixing them to 1.
        nn.init.uniform_(bn.weight)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), bn, nn.ReLU(inplace=True))


class Residual(nn.Module):
    """``x + f(x)`` with f two conv-bn units, the residual branch of ResNet-9."""

    def __init__(self, channels: int, zero_init: bool = False) -> None:
        super().__init__()
        self.res1 = conv_bn(channels, channels)
        self.res2 = conv_bn(channels, channels)
        if zero_init:  # Bag of Tricks (P3): the block starts as the identity
            nn.init.zeros_(self.res2[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res2(self.res1(x))


class Scale(nn.Module):
    """Multiply by a constant (the classifier's x0.125 in ResNet-9)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor


# The P2 ablation ladder (source P2, 20 epochs): each step adds one change.
LADDER_STEPS = ("shortest_path", "downsample_3x3", "maxpool", "global_maxpool", "final")


def resnet9_family(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    width: int = 64,
    step: str = "final",
    residual_layers: tuple[int, ...] = (1, 3),
    zero_init_residual: bool = False,
) -> nn.Sequential:
    """ResNet-9 ("Residual: L1+L3") and the ablation-ladder networks it was grown from.

    ``image_size`` is unused (global pooling makes the network size-agnostic).
    ``step='final'`` with ``residual_layers=(1, 3)`` is ResNet-9; ``residual_layers=()`` with
    an earlier ``step`` gives the ladder's residual-free networks:

    - ``shortest_path``: downsampling by 1x1 convs of stride 2, global average pool;
    - ``downsample_3x3``: 3x3 convs of stride 2 instead;
    - ``maxpool``: 3x3 conv of stride 1 followed by 2x2 max pooling;
    - ``global_maxpool``: global max pool, and the final layer twice as wide;
    - ``final``: BN weights fixed at 1 and the classifier output scaled by 0.125.

    ``zero_init_residual`` starts each residual branch's last BN at weight 0 (P3's trick).
    """
    check_choice("step", step, LADDER_STEPS)
    rung = LADDER_STEPS.index(step)
    widths = [width, width * 2, width * 4, width * 8]
    if rung < LADDER_STEPS.index("global_maxpool"):
        widths[3] = width * 4
    bn_one = rung >= LADDER_STEPS.index("final")

    def downsample_layer(c_in: int, c_out: int) -> nn.Sequential:
        if rung == 0:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            )
        if rung == 1:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            )
        return nn.Sequential(conv_bn(c_in, c_out, bn_one), nn.MaxPool2d(2))

    layers: list[tuple[str, nn.Module]] = [("prep", conv_bn(in_channels, widths[0], bn_one))]
    for index in (1, 2, 3):
        stage = downsample_layer(widths[index - 1], widths[index])
        if index in residual_layers:
            stage.append(Residual(widths[index], zero_init_residual))
        layers.append((f"layer{index}", stage))
    pool = nn.AdaptiveMaxPool2d(1) if rung >= 3 else nn.AdaptiveAvgPool2d(1)
    layers += [("pool", pool), ("flatten", nn.Flatten()),
               ("linear", nn.Linear(widths[3], num_classes, bias=False))]
    if bn_one:
        layers.append(("scale", Scale(0.125)))
    return nn.Sequential(OrderedDict(layers))


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry: how to build the model and what it is for."""

    name: str
    build: Callable[..., nn.Module]
    description: str
    options: tuple[str, ...]


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "resnet18",
            lambda image_size, **kw: ResNet((2, 2, 2, 2), **kw),
            "ResNet-18, torchvision layout (P0); stem, cbam, width, zero_init_residual",
            ("width", "stem", "cbam", "cbam_reduction", "zero_init_residual"),
        ),
        ModelInfo("lenet5", LeNet5, "LeNet-5, 3x32x32 input, dropout 0.5 (P1)", ("width",)),
        ModelInfo(
            "resnet9",
            resnet9_family,
            "ResNet-9 of cifar10-fast (P2) and its ablation ladder (step, residual_layers)",
            ("width", "step", "residual_layers", "zero_init_residual"),
        ),
    )
}


def build_model(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    **options: object,
) -> nn.Module:
    """Build a registered model; unknown names and options raise with the valid choices."""
    check_choice("model", name, sorted(MODELS))
    check_options(name, options)
    return MODELS[name].build(
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, **options
    )


def check_options(name: str, options: Mapping[str, object]) -> None:
    """Refuse, before anything is built, an option the model does not take or a value
    out of its range (e.g. ``width=0``, which torch would only reject deep inside a
    convolution)."""
    info = MODELS[name]
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise ValueError(
            f"model {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(info.options) or 'none'}"
        )
    for option in ("width", "cbam_reduction"):
        if option in options:
            check_number(f"model option {option}", options[option], 1, integer=True)
    choices = {"stem": STEMS, "cbam": CBAM_PLACEMENTS, "step": LADDER_STEPS}
    for option, valid in choices.items():
        if option in options:
            check_choice(f"model option {option}", options[option], valid)
    if "zero_init_residual" in options and not isinstance(options["zero_init_residual"], bool):
        raise ValueError("model option zero_init_residual must be true or false, got "
                         f"{options['zero_init_residual']!r}")
    for layer in options.get("residual_layers", ()):  # type: ignore[attr-defined]
        check_number("model option residual_layers", layer, 1, 3, high_open=False, integer=True)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, the count source P0 prints (buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
