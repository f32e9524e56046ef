"""MobileNet v1, CIFAR variant: parameter count, output shape, layout, width multiplier."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hpstudy.model import BLOCKS, MobileNet, count_parameters


def test_parameter_count_matches_the_report():
    m = MobileNet(100, 1.0)
    assert count_parameters(m) == 3_309_476          # "about 3.31 M"
    assert round(count_parameters(m) / 1e6, 2) == 3.31


def test_architecture_is_the_cifar_variant():
    m = MobileNet(100, 1.0)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    relus = [x for x in m.modules() if isinstance(x, nn.ReLU)]
    assert len(convs) == len(bns) == len(relus) == 1 + 2 * 13
    stem = convs[0]
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride) == (3, 32, (3, 3), (1, 1))
    depthwise, pointwise = convs[1::2], convs[2::2]
    assert [(c.out_channels, c.stride[0]) for c in pointwise] == [(c, 1) for c, _ in BLOCKS]
    assert [c.stride[0] for c in depthwise] == [s for _, s in BLOCKS]
    assert [s for _, s in BLOCKS] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert all(c.groups == c.in_channels == c.out_channels and c.kernel_size == (3, 3)
               for c in depthwise)
    assert all(c.kernel_size == (1, 1) and c.groups == 1 for c in pointwise)
    assert all(c.bias is None for c in convs)
    assert (m.classifier.in_features, m.classifier.out_features) == (1024, 100)


def test_output_shape_and_feature_map():
    torch.manual_seed(0)
    m = MobileNet(100, 0.25).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert m(x).shape == (4, 100)
        # four stride-2 blocks: 32 -> 2
        assert m.features(x).shape == (4, 256, 2, 2)
        assert MobileNet(10, 0.25).eval()(x).shape == (4, 10)
        # channels_last input and model give the same logits
        cl = m.to(memory_format=torch.channels_last)
        y = cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(y, m(x), atol=1e-5)


def expected_parameters(width: float, classes: int = 100) -> int:
    """Counted by hand from the layer list: conv weights (no bias), BN scale+shift, linear."""
    ch = lambda c: max(1, int(c * width))  # noqa: E731
    cin = ch(32)
    n = 3 * cin * 9 + 2 * cin
    for cout, _ in BLOCKS:
        n += cin * 9 + 2 * cin + cin * ch(cout) + 2 * ch(cout)
        cin = ch(cout)
    return n + cin * classes + classes


@pytest.mark.parametrize("width,params", [(0.25, 238_772), (0.5, 869_892), (1.0, 3_309_476)])
def test_width_multiplier_scales_every_layer(width, params):
    m = MobileNet(100, width)
    assert count_parameters(m) == params == expected_parameters(width)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert convs[0].out_channels == int(32 * width)
    assert [c.out_channels for c in convs[2::2]] == [int(c * width) for c, _ in BLOCKS]
    assert m.classifier.in_features == int(1024 * width)


def test_width_scales_parameters_roughly_quadratically():
    p = {w: count_parameters(MobileNet(100, w)) for w in (0.25, 0.5, 1.0)}
    assert p[0.25] < p[0.5] < p[1.0]
    assert 3.0 < p[1.0] / p[0.5] < 4.0       # pointwise convs dominate: ~w**2


def test_tiny_width_still_builds():
    m = MobileNet(100, 0.01)                  # every layer keeps at least one channel
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_initialisation_is_seeded():
    torch.manual_seed(3)
    a = MobileNet(100, 0.25).state_dict()
    torch.manual_seed(3)
    b = MobileNet(100, 0.25).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
