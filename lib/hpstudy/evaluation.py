"""Evaluating runs: the comparison table of a study, its best setting, and test-set scoring.

``test_scores`` scores a trained model on the 10,000 test images with the normalization the
run used, in batches on the run's device (no per-image Python loop): accuracy, top-5,
accuracy per superclass and the most confused (true, predicted) class pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import data as D
from .config import Config
from .train import (Batches, default_eval_batch_size, predict, resolve_device,
                    resolve_precision)


# --- a study's runs --------------------------------------------------------------------------

def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


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
    bad = ~np.isfinite(vals).all(axis=1)
    if bad.any():
        return int(h["epoch"].iloc[int(np.argmax(bad))])
    if status == "diverged":
        return int(h["epoch"].iloc[-1])
    return None


def best_setting(runs: dict) -> str | None:
    """Label of the finished run with the highest final-epoch validation accuracy (the number
    the report compares); diverged or unfinished runs never win. None if no run qualifies."""
    best, best_acc = None, -1.0
    for label, r in runs.items():
        acc = r.final.get("val_acc") if len(r.history) else None
        if r.status == "done" and _finite(acc) and float(acc) > best_acc:
            best, best_acc = label, float(acc)
    return best


def runs_table(runs: dict, study: str | None = None) -> pd.DataFrame:
    """One row per setting: status, epochs, final-epoch metrics, best epoch (by validation
    accuracy) and its accuracy, training time. Accuracies in percent, rounded for reading.

    ``study``: a study name; the report's final-epoch validation accuracy for the same
    setting (``hpstudy.reference.REPORT``) is added as ``report val acc %`` where it has one.
    """
    from .reference import REPORT

    def pct(v):
        return round(100 * float(v), 2) if _finite(v) else float("nan")

    def num(v):
        return round(float(v), 4) if _finite(v) else float("nan")

    rows = []
    for label, r in runs.items():
        f, b = r.final, r.best
        row = {
            "setting": label, "status": r.status,
            "epochs": f"{len(r.history)}/{r.config.epochs}",
            "train loss": num(f.get("train_loss")), "train acc %": pct(f.get("train_acc")),
            "val loss": num(f.get("val_loss")), "val acc %": pct(f.get("val_acc")),
            "best epoch": int(b["epoch"]) if b else None,
            "best val acc %": pct(b.get("val_acc")) if b else float("nan"),
            "minutes": round(float(r.history["seconds"].sum()) / 60, 2) if len(r.history) else 0.0,
        }
        if r.status == "diverged":
            row["status"] = f"diverged at epoch {diverged_at(r)}"
        if study is not None:
            row["report val acc %"] = pct(REPORT.get((study, label), {}).get("val_acc"))
        rows.append(row)
    df = pd.DataFrame(rows).set_index("setting")
    df["best epoch"] = df["best epoch"].astype("Int64")  # an integer, or <NA> for no finite epoch
    return df


def shared_settings(configs: dict) -> str:
    """The settings all ``configs`` (label -> Config) share, where they differ from the
    defaults (``lr`` and ``epochs`` always, unless they vary), as ``key=value, ...``."""
    dicts = [c.to_dict() for c in configs.values()]
    if not dicts:
        return ""
    default = Config().to_dict()
    out = []
    for k, v in dicts[0].items():
        if any(d[k] != v for d in dicts[1:]):
            continue
        if v != default[k] or k in ("lr", "epochs"):
            out.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(out)


def scale_note(cfg: Config) -> str:
    """One sentence saying how far ``cfg`` is from the report's full-size protocol ('' if it
    is the full size)."""
    parts = []
    if cfg.width != 1.0:
        parts.append(f"width {cfg.width:g} (the report: 1)")
    if cfg.n_train is not None:
        parts.append(f"{cfg.n_train:,} training images (the report: the whole split)")
    if cfg.n_val is not None:
        parts.append(f"{cfg.n_val:,} validation images")
    if not parts:
        return ""
    return ("These runs are a scaled-down version of the report's protocol (" + ", ".join(parts)
            + f", {cfg.epochs} epochs): they exercise the method, and their numbers are not "
            "comparable with the report's.")


def reading(runs: dict) -> str:
    """The common part of a study's reading, as Markdown built from the runs: the best setting
    by final-epoch validation accuracy, the gaps to the others, diverged runs, the scale of
    the runs and the single-run caveat."""
    parts = []
    best = best_setting(runs)
    if best is None:
        parts.append("No setting finished without diverging, so there is no best setting.")
    else:
        rb = runs[best]
        acc = float(rb.final["val_acc"])
        parts.append(f"By final-epoch validation accuracy (the number the report compares) the "
                     f"best setting is **`{best}`**: {100 * acc:.2f}% after "
                     f"{len(rb.history)} epochs (best epoch {int(rb.best['epoch'])}: "
                     f"{100 * float(rb.best['val_acc']):.2f}%).")
        others = [(k, r) for k, r in runs.items()
                  if k != best and r.status == "done" and _finite(r.final.get("val_acc"))]
        if others:
            parts.append("The others: " + "; ".join(
                f"`{k}` {100 * float(r.final['val_acc']):.2f}% "
                f"({100 * (float(r.final['val_acc']) - acc):+.2f} points)" for k, r in others) + ".")
    for k, r in runs.items():
        if r.status == "diverged":
            parts.append(f"`{k}` diverged at epoch {diverged_at(r)}: its loss stopped being "
                         f"finite, training stopped there, and the figures mark it with an x.")
        elif r.status != "done":
            parts.append(f"`{k}` is not finished (status {r.status!r}).")
    cfg = next(iter(runs.values())).config if runs else None
    if cfg is not None:
        note = scale_note(cfg)
        if note:
            parts.append(note)
        parts.append(f"Each setting is a single run (seed {cfg.seed}): the spread between seeds "
                     f"is not measured, so a difference of a point or two is not evidence. "
                     f"Rerun with other `seed` values to see it.")
    return " ".join(parts)


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

    off = conf.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:n_confused]
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
    confused = pd.DataFrame(rows, columns=["true", "predicted", "count", "share_of_true",
                                           "true_name", "predicted_name", "same_superclass"])
    return TestScores(acc=float(correct.double().mean()), top5=float(top5.double().mean()),
                      loss=loss, n=int(len(y)), per_superclass=per, confused=confused,
                      confusion=conf)
