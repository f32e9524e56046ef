"""MobileNet v1, CIFAR variant (3x3 stride-1 stem), as the report describes it."""
from __future__ import annotations

import torch
from torch import nn

from .config import INITS

# (output channels, stride) of the 13 depthwise-separable blocks
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MobileNet(nn.Module):
    """Stem conv 3x3/1 (32 ch), 13 blocks of depthwise 3x3 + pointwise 1x1 (BN + ReLU after
    each conv), global average pool, linear. 3.31 M parameters at width 1.0, 100 classes.

    ``init``: "torchvision" re-initialises as torchvision's MobileNets do (see
    ``reset_parameters``); "pytorch" keeps each layer's PyTorch default (convs and linear
    kaiming-uniform(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in)); BN weight 1, bias 0), as the public
    CIFAR code the report likely descends from does. Both draw from torch's global RNG, so
    seed it before construction for reproducible weights."""

    def __init__(self, num_classes: int = 100, width: float = 1.0, init: str = "pytorch"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        ch = lambda c: max(1, int(c * width))  # noqa: E731
        layers = [conv_bn(3, ch(32), 3, 1)]
        cin = ch(32)
        for cout, stride in BLOCKS:
            layers.append(conv_bn(cin, cin, 3, stride, groups=cin))   # depthwise
            layers.append(conv_bn(cin, ch(cout), 1, 1))               # pointwise
            cin = ch(cout)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        if init == "torchvision":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        # torchvision's MobileNet initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
