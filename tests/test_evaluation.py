"""Test-set scoring against a plain computation."""
from __future__ import annotations

import json

import pytest


def test_test_scores_agree_with_a_plain_computation(tiny_root):
    import numpy as np
    import torch

    from hpstudy import data as D, evaluation
    from hpstudy.config import Config
    from hpstudy.model import MobileNet
    from hpstudy.train import Batches, evaluate

    data = D.load_cifar100(tiny_root)
    cfg = Config(width=0.25, device="cpu", data_root=str(tiny_root))
    torch.manual_seed(0)
    model = MobileNet(100, 0.25)
    # a few BatchNorm statistics from the data, so predictions are not all one class
    model.train()
    mean, std = (torch.tensor(v) for v in D.norm_constants(data, "train"))
    with torch.no_grad():
        model(D.to_input(data.train.x[:500], mean, std))
    s = evaluation.test_scores(model, data, cfg, n_confused=5, batch_size=64)
    ref = evaluate(model, torch.nn.CrossEntropyLoss(),
                   Batches(data.test, mean, std, True), torch.device("cpu"), batch_size=200)
    assert s.n == len(data.test) == 200
    assert abs(s.acc - ref["acc"]) < 1e-9 and abs(s.top5 - ref["top5"]) < 1e-9
    assert abs(s.loss - ref["loss"]) < 1e-4
    assert s.confusion.sum() == 200 and np.trace(s.confusion) == round(s.acc * 200)
    # per superclass, the slow way
    y, c = data.test.fine.numpy(), data.test.coarse.numpy()
    hits = np.diag(s.confusion)
    for k, row in s.per_superclass.iterrows():
        classes = np.unique(y[c == k])
        assert row["n"] == (c == k).sum()
        assert abs(row["acc"] - hits[classes].sum() / row["n"]) < 1e-9
    assert len(s.per_superclass) == 20
    counts = list(s.confused["count"])
    assert counts == sorted(counts, reverse=True) and len(counts) <= 5
    for _, r in s.confused.iterrows():
        assert r["true"] != r["predicted"]
        assert s.confusion[r["true"], r["predicted"]] == r["count"]
        assert r["true_name"] == data.fine_names[r["true"]]
    json.dumps(s.summary())
    with pytest.raises(ValueError, match="diverge"):
        evaluation.test_scores(None, data, cfg)
