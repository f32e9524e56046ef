"""Test-set scoring, and where a run diverged.

``test_scores`` scores a trained model on the 10,000 test images with the normalization the
run used, in batches on the run's device (no per-image Python loop): accuracy, top-5,
accuracy per superclass and the most confused (true, predicted) class pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import data as D
from .config import Config
from .data import Batches
from .device import default_eval_batch_size, resolve_device, resolve_precision
from .train import predict


# --- a study's runs --------------------------------------------------------------------------

def diverged_at(run) -> int | None:
    """Epoch (1-based) at which a run's loss stopped being finite, or None if it never did.

    ``run``: a Run or a history DataFrame. A run marked diverged with no history gives 0.
    """
    h = run.history if hasattr(run, "history") else pd.DataFrame(run)
    status = getattr(run, "status", None)
    if not len(h):
        return 0 if status == "diverged" else None
    cols = [c for c in ("train_loss", "val_loss") if c in h]
    vals = h[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(vals)
    cfg = getattr(run, "config", None)
    if cfg is not None and "val_loss" in cols and getattr(cfg, "eval_every", 1) > 1:
        # epochs that were not scored hold nan by design, not by divergence
        from .train import evaluated_epoch
        scored = np.array([evaluated_epoch(cfg, int(e)) for e in h["epoch"]])
        j = cols.index("val_loss")
        finite[:, j] |= ~scored & ~np.isinf(vals[:, j])
    bad = ~finite.all(axis=1)
    if bad.any():
        return int(h["epoch"].iloc[int(np.argmax(bad))])
    if status == "diverged":
        return int(h["epoch"].iloc[-1])
    return None


# --- the test set ----------------------------------------------------------------------------

@dataclass
class TestScores:
    """Scores of one model on one split (the test set)."""
    __test__ = False  # not a pytest class

    acc: float                      # top-1 accuracy (fraction)
    top5: float                     # top-5 accuracy (fraction)
    loss: float                     # mean cross-entropy
    n: int                          # images scored
    per_superclass: pd.DataFrame    # superclass, n, acc, acc_coarse (20 rows)
    confused: pd.DataFrame          # most confused (true, predicted) pairs with counts and names
    confusion: np.ndarray = field(repr=False)  # (100, 100) counts, rows = true, cols = predicted

    def summary(self) -> dict:
        """The JSON-able part: what a notebook records."""
        return {"acc": self.acc, "top5": self.top5, "loss": self.loss, "n": self.n,
                "per_superclass": self.per_superclass.to_dict("records"),
                "confused": self.confused.to_dict("records")}


def fine_to_coarse(data: D.CIFAR100) -> torch.Tensor:
    """(100,) superclass of each fine class, read off the labels."""
    m = torch.full((D.NUM_CLASSES,), -1, dtype=torch.long)
    m[data.train.fine] = data.train.coarse
    m[data.test.fine] = data.test.coarse
    return m


def test_scores(model: nn.Module, data: D.CIFAR100, cfg: Config, *, n_confused: int = 10,
                split: D.Split | None = None, device: str | None = None,
                batch_size: int | None = None) -> TestScores:
    """Score ``model`` on ``split`` (default: the 10,000 test images).

    Inputs are normalized with the constants the run trained with
    (``norm_constants(data, cfg.normalize, cfg.split_seed)``), on ``cfg.device`` with
    ``cfg.precision`` resolved as training resolves them.
    """
    if model is None:
        raise ValueError("no model to score: the run has no model.pt (did it diverge?)")
    split = data.test if split is None else split
    if len(split) == 0:
        raise ValueError("the split to score is empty")
    dev = resolve_device(device or cfg.device)
    precision = resolve_precision(cfg.precision, dev)
    mean, std = D.norm_constants(data, cfg.normalize, cfg.split_seed)
    batches = Batches(split.to(dev), torch.tensor(mean, device=dev),
                      torch.tensor(std, device=dev), cfg.channels_last)
    model = model.to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    bs = batch_size or cfg.eval_batch_size or default_eval_batch_size(dev)
    logits = predict(model, batches, dev, batch_size=bs, precision=precision)
    y = batches.split.fine
    pred = logits.argmax(1)
    correct = (pred == y)
    top5 = (logits.topk(5, 1).indices == y[:, None]).any(1)
    loss = float(nn.functional.cross_entropy(logits, y))
    k = D.NUM_CLASSES

    # confusion matrix in one bincount: rows true, columns predicted
    conf = torch.bincount(y * k + pred, minlength=k * k).view(k, k).cpu().numpy()

    # per superclass (of the true label): fine accuracy, and how often the prediction at
    # least falls in the right superclass
    f2c = fine_to_coarse(data).to(dev)
    coarse = batches.split.coarse
    nc = D.NUM_COARSE
    n_per = torch.bincount(coarse, minlength=nc).double()
    hit = torch.bincount(coarse, weights=correct.double(), minlength=nc)
    hit_c = torch.bincount(coarse, weights=(f2c[pred] == coarse).double(), minlength=nc)
    per = pd.DataFrame({
        "superclass": data.coarse_names[:nc],
        "n": n_per.long().cpu().numpy(),
        "acc": (hit / n_per.clamp(min=1)).cpu().numpy(),
        "acc_coarse": (hit_c / n_per.clamp(min=1)).cpu().numpy(),
    })
    per.loc[per["n"] == 0, ["acc", "acc_coarse"]] = float("nan")

    confused = confused_pairs(conf, data, n_confused)
    return TestScores(acc=float(correct.double().mean()), top5=float(top5.double().mean()),
                      loss=loss, n=int(len(y)), per_superclass=per, confused=confused,
                      confusion=conf)


def confused_pairs(conf: np.ndarray, data: D.CIFAR100, n: int) -> pd.DataFrame:
    """The ``n`` most confused (true, predicted) pairs of a confusion matrix (rows true), with
    counts, the share of the true class, names and whether both lie in one superclass."""
    k = conf.shape[0]
    f2c = fine_to_coarse(data)
    off = conf.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:n]
    per_true = conf.sum(1)
    rows = []
    for f in flat:
        t, p = divmod(int(f), k)
        if off[t, p] == 0:
            break
        rows.append({"true": t, "predicted": p, "count": int(off[t, p]),
                     "share_of_true": float(off[t, p] / max(per_true[t], 1)),
                     "true_name": data.fine_names[t], "predicted_name": data.fine_names[p],
                     "same_superclass": bool(f2c[t] == f2c[p])})
    return pd.DataFrame(rows, columns=["true", "predicted", "count", "share_of_true",
                                       "true_name", "predicted_name", "same_superclass"])
