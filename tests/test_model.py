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


# --- initialisation: PyTorch's layer defaults (default) or torchvision's re-init ------------

def _layers(m: nn.Module) -> list[nn.Module]:
    return [x for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("init", ["torchvision", "pytorch"])
def test_both_initialisations_are_seeded(init):
    torch.manual_seed(3)
    a = MobileNet(100, 0.25, init).state_dict()
    torch.manual_seed(3)
    b = MobileNet(100, 0.25, init).state_dict()
    torch.manual_seed(4)
    c = MobileNet(100, 0.25, init).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_pytorch_is_the_default_initialisation():
    """Chosen in benchmarks/INIT.md: no difference detected over 5 seeds; the report's
    lineage (public CIFAR code keeping PyTorch's layer defaults) breaks the tie."""
    from hpstudy.config import Config
    assert Config().init == "pytorch"
    torch.manual_seed(5)
    a = MobileNet(100, 0.25).state_dict()
    torch.manual_seed(5)
    b = MobileNet(100, 0.25, "pytorch").state_dict()
    torch.manual_seed(5)
    c = MobileNet(100, 0.25, "torchvision").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_pytorch_init_is_the_plain_layers_default():
    """Under the same seed, every conv and the linear equal fresh nn.Conv2d / nn.Linear
    built in the same order: nothing is re-initialised."""
    torch.manual_seed(7)
    m = MobileNet(100, 0.25, "pytorch")
    torch.manual_seed(7)
    for layer in _layers(m):
        if isinstance(layer, nn.Conv2d):
            fresh = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                              layer.stride, layer.padding, groups=layer.groups, bias=False)
        else:
            fresh = nn.Linear(layer.in_features, layer.out_features)
        for name, p in fresh.named_parameters():
            assert torch.equal(getattr(layer, name), p), (layer, name)
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    assert all(torch.equal(b.weight, torch.ones_like(b.weight)) and
               torch.equal(b.bias, torch.zeros_like(b.bias)) for b in bns)


def _std(w: torch.Tensor) -> float:
    return w.detach().float().std().item()


def test_initialisation_statistics():
    """Depthwise 3x3 with C channels (weight C x 1 x 3 x 3): PyTorch's kaiming-uniform(a=sqrt(5))
    gives U(+-1/sqrt(fan_in)), fan_in = 9, std 1/sqrt(27); torchvision's kaiming-normal
    fan_out (fan_out = 9 C) gives std sqrt(2 / (9 C)), sqrt(C) times below fan-in He."""
    torch.manual_seed(0)
    tv = MobileNet(100, 1.0, "torchvision")
    torch.manual_seed(0)
    pt = MobileNet(100, 1.0, "pytorch")
    dw = lambda m: [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.groups > 1]  # noqa: E731
    pw = lambda m: [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.kernel_size == (1, 1)]  # noqa: E731
    for conv in (dw(tv)[-1], dw(pt)[-1]):                 # 1024 channels: 9216 weights
        assert conv.groups == conv.out_channels == 1024
    c = 1024
    d_tv, d_pt = dw(tv)[-1].weight, dw(pt)[-1].weight
    assert _std(d_tv) == pytest.approx((2 / (9 * c)) ** 0.5, rel=0.05)
    assert _std(d_pt) == pytest.approx(1 / 27 ** 0.5, rel=0.05)
    assert d_pt.abs().max().item() <= 1 / 3                # bound 1/sqrt(fan_in)
    assert _std(d_pt) / _std(d_tv) == pytest.approx((c / 6) ** 0.5, rel=0.1)
    # pointwise 1x1, 1024 -> 1024: fan_in = fan_out = 1024
    p_tv, p_pt = pw(tv)[-1].weight, pw(pt)[-1].weight
    assert _std(p_tv) == pytest.approx((2 / 1024) ** 0.5, rel=0.05)
    assert _std(p_pt) == pytest.approx(1 / (3 * 1024) ** 0.5, rel=0.05)
    # classifier: torchvision N(0, 0.01) and zero bias; PyTorch U(+-1/sqrt(1024)) for both
    assert _std(tv.classifier.weight) == pytest.approx(0.01, rel=0.05)
    assert torch.equal(tv.classifier.bias, torch.zeros(100))
    assert _std(pt.classifier.weight) == pytest.approx(1 / (3 * 1024) ** 0.5, rel=0.05)
    assert pt.classifier.bias.abs().max().item() <= 1 / 32
    assert pt.classifier.bias.abs().max().item() > 0
    for m in (tv, pt):
        for b in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
            assert torch.equal(b.weight, torch.ones_like(b.weight))
            assert torch.equal(b.bias, torch.zeros_like(b.bias))


def test_unknown_initialisation_is_refused():
    from hpstudy.config import Config, ConfigError
    assert Config.from_dict(init="torchvision").init == "torchvision"
    with pytest.raises(ConfigError, match=r"parameter 'init': allowed values: torchvision, pytorch"):
        Config.from_dict(init="xavier")
    with pytest.raises(ConfigError, match="'init'"):
        Config.from_dict(init=1)
    with pytest.raises(ValueError, match="init"):
        MobileNet(100, 0.25, "kaiming")


@pytest.mark.parametrize("init", ["torchvision", "pytorch"])
def test_build_model_uses_the_config_init(init):
    from hpstudy.config import Config
    from hpstudy.train import build_model
    cfg = Config.from_dict(width=0.25, seed=11, init=init, channels_last=False)
    a = build_model(cfg, torch.device("cpu")).state_dict()
    torch.manual_seed(11)
    b = MobileNet(100, 0.25, init).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_initialisations_are_configs():
    """One list of initialisations: Config's, which the model and the init study use."""
    from hpstudy import config, model
    assert model.INITS is config.INITS
    with pytest.raises(ValueError, match=", ".join(config.INITS)):
        MobileNet(100, 0.25, "kaiming")
