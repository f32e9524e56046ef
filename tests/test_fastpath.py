"""The fast CPU path (channels_last, BN folded into the convs for evaluation, the run settings
of ``device.run_settings``) trains the same model as the plain path (NCHW fp32, unfolded
evaluation): the loss curves agree to float32 rounding, amplified over a few SGD steps."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hpstudy import data as D
from hpstudy import train as T
from hpstudy.config import Config
from hpstudy.device import run_settings
from hpstudy.model import MobileNet

from conftest import tiny_config

# SGD on this data amplifies float32 rounding: after three steps even the plain path differs
# from a float64 run by 1e-3..2e-2 in the per-step loss, and the fast path's channels_last
# BatchNorm backward rounds a little more than the NCHW one (gradient at initialisation within
# 2.4% of float64, NCHW 0.5%). So the first step is compared tightly (forward and loss agree to
# float32 rounding) and the 2-epoch curve within these tolerances, at lr 0.01. Measured over
# four lr-0.01 configurations (seeds 0, 1, 2; mixup): largest differences 4e-3 (epoch train
# loss), 8e-4 (val loss), 9e-3 (train accuracy), 0 (val accuracy); at lr 0.05 the train loss
# already drifts by up to 2e-2. What the checks catch: a wrong layout changes the first-step
# loss; skipping every other optimizer step moved the epoch-2 val loss by 1.2e-2 (measured);
# a mis-folded BatchNorm changes the folded logits (test_folded_evaluation_matches_the_model).
# absolute, loss of the first step (~4.6), per init: PyTorch's fan-in init gives larger
# activations, so channels_last and NCHW round apart further (measured 6.5e-5 on AVX512;
# torchvision's init: below 1e-5)
FIRST_STEP_TOL = {"torchvision": 1e-5, "pytorch": 3e-4}
TRAIN_LOSS_TOL = 2e-2    # absolute, epoch-mean training loss
VAL_LOSS_TOL = 5e-3      # absolute, validation loss
ACC_TOL = 0.03           # absolute: 24 of the 800 training, 6 of the 200 validation images


def _fit(cfg: dict, monkeypatch=None, plain: bool = False) -> list[dict]:
    data = D.load_cifar100(download_missing=False)
    if plain:
        monkeypatch.setattr(T, "folded", lambda model: model)
    out = T.fit(Config.from_dict(cfg), data, log=lambda s: None)
    assert out["status"] == "done"
    return out["history"]


def _close(fast: list[dict], plain: list[dict]) -> None:
    assert len(fast) == len(plain)
    for f, p in zip(fast, plain):
        assert math.isfinite(f["train_loss"]) and math.isfinite(f["val_loss"])
        assert f["train_loss"] == pytest.approx(p["train_loss"], abs=TRAIN_LOSS_TOL), (f, p)
        assert f["val_loss"] == pytest.approx(p["val_loss"], abs=VAL_LOSS_TOL), (f, p)
        for key in ("train_acc", "val_acc"):
            assert abs(f[key] - p[key]) <= ACC_TOL, (key, f, p)


def test_fast_path_matches_plain_path(tiny_env, monkeypatch):
    cfg = tiny_config(lr=0.01, weight_decay=5e-4)
    fast = _fit({**cfg, "channels_last": True})
    with monkeypatch.context() as m:
        plain = _fit({**cfg, "channels_last": False}, m, plain=True)
    assert len(fast) == cfg["epochs"]
    _close(fast, plain)


def test_fast_path_with_mixup_matches_plain_path(tiny_env, monkeypatch):
    cfg = tiny_config(lr=0.01, epochs=1, mixup_alpha=0.2, n_train=400)
    fast = _fit({**cfg, "channels_last": True})
    with monkeypatch.context() as m:
        plain = _fit({**cfg, "channels_last": False}, m, plain=True)
    _close(fast, plain)


@pytest.mark.parametrize("init", ["pytorch", "torchvision"])
def test_first_step_agrees(tiny_env, init):
    """The first step of both paths on the same batch: same loss to float32 rounding."""
    data = D.load_cifar100(download_missing=False)
    cpu = torch.device("cpu")
    losses = {}
    for cl in (True, False):
        cfg = Config.from_dict(tiny_config(channels_last=cl, init=init))
        tr, _ = D.prepare_data(cfg, data, cpu)
        model = T.build_model(cfg, cpu)
        opt = T.build_optimizer(cfg, model)
        gen, _ = T.epoch_generators(cfg.seed, 0, cpu)
        x = tr.input(D.augment(tr.split.x[:100], gen))
        assert x.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        y = tr.split.fine[:100]
        losses[cl], _ = T.train_step(model, nn.CrossEntropyLoss(), opt, x, y, y, 1.0, device=cpu)
    assert float(losses[True]) == pytest.approx(float(losses[False]), abs=FIRST_STEP_TOL[init])


def test_folded_evaluation_matches_the_model():
    torch.manual_seed(0)
    model = MobileNet(100, 0.25).to(memory_format=torch.channels_last)
    model.train()
    with torch.no_grad():                       # non-trivial running statistics
        for _ in range(3):
            model(torch.randn(64, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    x = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8)
    split = D.Split(x, torch.randint(0, 100, (300,)), torch.zeros(300, dtype=torch.long))
    b = D.Batches(split, torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25]), True)
    cpu = torch.device("cpu")
    plain = T.predict(model, b, cpu, batch_size=128, fold_bn=False)
    fast = T.predict(model, b, cpu, batch_size=128)
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-5 * plain.abs().max().item())
    assert (fast.argmax(1) == plain.argmax(1)).float().mean() > 0.99
    f = T.folded(model.eval())
    assert f is not model and not any(isinstance(m, nn.BatchNorm2d) for m in f.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())   # the original intact
    ev = T.evaluate(model, nn.CrossEntropyLoss(), b, cpu, batch_size=100)
    ev0 = T.evaluate(model, nn.CrossEntropyLoss(), b, cpu, batch_size=100, fold_bn=False)
    assert ev["loss"] == pytest.approx(ev0["loss"], abs=1e-5)


def test_run_settings_are_restored():
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)
    with run_settings(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert (torch.are_deterministic_algorithms_enabled(),
            torch.utils.deterministic.fill_uninitialized_memory) == before


def test_train_step_is_what_train_one_epoch_does():
    """``train_step`` (what the benchmark and ``train_one_epoch`` share) takes one SGD step."""
    torch.manual_seed(0)
    model = MobileNet(100, 0.25)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    w0 = model.classifier.weight.detach().clone()
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 100, (8,))
    loss, logits = T.train_step(model, nn.CrossEntropyLoss(), opt, x, y, y, 1.0,
                                device=torch.device("cpu"))
    assert not loss.requires_grad and logits.shape == (8, 100)
    assert not torch.equal(model.classifier.weight, w0)
    assert np.isfinite(float(loss))
