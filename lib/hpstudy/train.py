"""The training loop and evaluation as plain functions (after torchvision's reference scripts).

All randomness of an epoch (shuffle, crops, flips, mixup) comes from generators seeded by
``(seed, epoch)``, so a run resumed from a checkpoint continues exactly as an uninterrupted
one would.

Speed (see benchmarks/RESULTS.md, ``hpstudy bench``): data stay uint8 on the device and are
augmented per batch there; the model runs channels_last; on the CPU ``run_settings`` tunes
the allocator and evaluation folds BatchNorm into the convs (``folded``); on CUDA, bf16
autocast and torch.compile, with no host-device sync per step.

Where the rest lives: device, precision and the process-wide settings in ``device``; the
images a run uses (``prepare_data``, ``Batches``) in ``data``; the history columns and
checkpoint keys in ``schema``; the files of a run in ``store``.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import data as D
from .config import Config
from .data import Batches, prepare_data
from .device import (autocast, default_eval_batch_size, resolve_compile, resolve_device,
                     resolve_precision, run_settings)
# HISTORY_COLUMNS (and Batches and the device helpers, which the loop uses) stay importable
# from here for callers not yet moved to schema, data and device (tests/test_train.py,
# tests/test_evaluation.py); new code imports them from those modules.
from .schema import CHECKPOINT_FORMAT, HISTORY_COLUMNS  # noqa: F401
from .model import MobileNet


# --- the schedule and the randomness of an epoch --------------------------------------------

def lr_at(cfg: Config, epoch: int) -> float:
    """Learning rate of 0-based ``epoch``; cosine is the report's per-epoch formula."""
    if cfg.schedule == "cosine":
        return cfg.eta_min + (cfg.lr - cfg.eta_min) * (1 + math.cos(math.pi * epoch / cfg.epochs)) / 2
    return cfg.lr


def steps_per_epoch(cfg: Config) -> int:
    """SGD steps in one epoch (a last batch of one image is skipped: BatchNorm cannot train
    on it)."""
    n = cfg.n_train or 40000          # None: the whole 40,000-image training split
    return n // cfg.batch_size + (1 if n % cfg.batch_size >= 2 else 0)


def lr_sum(cfg: Config) -> float:
    """The learning rate summed over every SGD step of a run. Weight decay shrinks a weight
    by a factor (1 - lr * lambda) per step, so lambda * lr_sum(cfg) is how much decay a run
    applies in all: how far weight decay can act (Lewkowycz and Gur-Ari 2020)."""
    return steps_per_epoch(cfg) * sum(lr_at(cfg, e) for e in range(cfg.epochs))


def evaluated_epoch(cfg: Config, epoch: int) -> bool:
    """Whether 1-based ``epoch`` scores the validation split: every ``eval_every``-th and the
    last. On a tiny training subset one pass over the validation images costs more than the
    epoch's training, so scoring fewer epochs buys seeds; the epochs skipped hold NaN."""
    return epoch % cfg.eval_every == 0 or epoch == cfg.epochs


def epoch_generators(seed: int, epoch: int, device: torch.device):
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + epoch + 1)
    return g, np.random.default_rng([seed, epoch])


# --- the pieces ------------------------------------------------------------------------------

def build_model(cfg: Config, device: torch.device) -> nn.Module:
    torch.manual_seed(cfg.seed)
    model = MobileNet(D.NUM_CLASSES, cfg.width, cfg.init).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    # foreach, not fused: fused measured no faster on the CPU (the optimizer step is a tiny
    # share of a training step; benchmarks/RESULTS.md, "Defaults the code cites")
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, foreach=True)


def train_step(model, criterion, optimizer, x: torch.Tensor, y_a: torch.Tensor,
               y_b: torch.Tensor, lam: float, *, device: torch.device,
               precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a prepared batch; returns the (detached) loss and logits.

    The loss is ``lam * CE(y_a) + (1 - lam) * CE(y_b)`` (plain CE when ``lam == 1``). No
    host-device synchronisation happens here.
    """
    with autocast(device, precision):
        logits = model(x)
        loss = criterion(logits, y_a)
        if lam < 1.0:
            loss = lam * loss + (1 - lam) * criterion(logits, y_b)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


def train_one_epoch(model, criterion, optimizer, train: Batches, device, epoch: int,
                    cfg: Config, *, precision: str) -> dict:
    """One pass over ``train`` in a seeded random order, as ``cfg`` says (batch size, seed,
    augmentation, mixup; the learning rate is the optimizer's). Returns mean loss and accuracy
    (under mixup, the lambda-weighted agreement with both targets) and whether the loss
    diverged."""
    model.train()
    batch_size = cfg.batch_size
    gen, rng = epoch_generators(cfg.seed, epoch, device)
    n = len(train.split)
    order = torch.randperm(n, generator=gen, device=device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    seen = 0
    check_every = 1 if device.type == "cpu" else 50
    for step, start in enumerate(range(0, n, batch_size)):
        idx = order[start:start + batch_size]
        if len(idx) < 2:  # BatchNorm cannot train on a single image
            break
        x = D.augment(train.split.x[idx], gen, crop=cfg.augment_crop, flip=cfg.augment_flip)
        x = train.input(x)
        y = train.split.fine[idx]
        x, y_a, y_b, lam = D.mixup(x, y, cfg.mixup_alpha, rng, gen)
        loss, logits = train_step(model, criterion, optimizer, x, y_a, y_b, lam,
                                  device=device, precision=precision)
        b = len(idx)
        seen += b
        loss_sum += loss.double() * b
        pred = logits.argmax(1)
        hits = (pred == y_a).double().sum() * lam
        if lam < 1.0:
            hits = hits + (pred == y_b).double().sum() * (1 - lam)
        correct += hits
        if step % check_every == 0 and not torch.isfinite(loss_sum):
            break
    loss_mean = float(loss_sum) / max(seen, 1)
    return {"train_loss": loss_mean, "train_acc": float(correct) / max(seen, 1),
            "diverged": not math.isfinite(loss_mean)}


def folded(model: nn.Module) -> nn.Module:
    """An inference copy of a MobileNet with every BatchNorm folded into the conv before it
    (``fuse_conv_bn_eval``): one pass less per layer, ~13% faster evaluation on the CPU.
    Logits agree with the unfolded model to float32 rounding (~1e-6 relative). Anything that
    is not a plain MobileNet (e.g. a compiled one) is returned unchanged."""
    if not isinstance(model, MobileNet) or model.training:
        return model
    out = copy.deepcopy(model)
    cl = model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    for block in out.features:
        conv, bn = block[0], block[1]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            block[0] = fuse_conv_bn_eval(conv, bn)
            block[1] = nn.Identity()
    if cl:
        out = out.to(memory_format=torch.channels_last)
    return out.eval()


@torch.inference_mode()
def predict(model, batches: Batches, device, *, batch_size: int, precision: str = "fp32",
            x: torch.Tensor | None = None, fold_bn: bool = True) -> torch.Tensor:
    """Logits (float32, on ``device``) for every image of the split, in order.

    On the CPU a MobileNet runs with its BatchNorms folded into the convs (``folded``);
    ``fold_bn=False`` runs the model as it is."""
    model.eval()
    if fold_bn and device.type == "cpu":
        model = folded(model)
    x = batches.split.x if x is None else x
    out = []
    for start in range(0, len(x), batch_size):
        with autocast(device, precision):
            out.append(model(batches.input(x[start:start + batch_size])).float())
    return torch.cat(out)


def evaluate(model, criterion, batches: Batches, device, *, batch_size: int,
             precision: str = "fp32", fold_bn: bool = True) -> dict:
    logits = predict(model, batches, device, batch_size=batch_size, precision=precision,
                     fold_bn=fold_bn)
    y = batches.split.fine
    return {"loss": float(criterion(logits, y)),
            "acc": float((logits.argmax(1) == y).double().mean()),
            "top5": float((logits.topk(5, 1).indices == y[:, None]).any(1).double().mean())}


# --- the loop --------------------------------------------------------------------------------

def format_epoch(row: dict, epochs: int) -> str:
    """One fixed-width line per epoch."""
    w = len(str(epochs))
    def pct(v):  # noqa: E306
        return "   nan " if not math.isfinite(v) else f"{100 * v:6.2f}%"
    return (f"epoch {row['epoch']:>{w}}/{epochs}  lr {row['lr']:.5f}  "
            f"train loss {row['train_loss']:7.4f} acc {pct(row['train_acc'])}  "
            f"val loss {row['val_loss']:7.4f} acc {pct(row['val_acc'])}  {row['seconds']:6.1f}s")


def fit(cfg: Config, data: D.CIFAR100, *, state: dict | None = None, on_epoch=None,
        log=print) -> dict:
    """Train from ``state`` (a checkpoint dict, or None for a fresh start) to ``cfg.epochs``.

    ``on_epoch(state)`` is called after every finished epoch with a checkpoint dict
    (``metrics.CHECKPOINT_KEYS``: model, optimizer, epoch, history, RNG state, config).
    Returns the final state, with ``status`` 'done' or 'diverged'.
    """
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    with run_settings(device):
        return _fit(cfg, data, device, precision, state, on_epoch, log)


def _fit(cfg, data, device, precision, state, on_epoch, log) -> dict:
    train, val = prepare_data(cfg, data, device)
    model = build_model(cfg, device)
    optimizer = build_optimizer(cfg, model)
    history: list[dict] = []
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = list(state["history"])
        start = int(state["epoch"])
        torch.set_rng_state(state["rng"]["torch"])
    step_model = torch.compile(model) if resolve_compile(cfg.compile, device) else model
    criterion = nn.CrossEntropyLoss()
    eval_bs = cfg.eval_batch_size or default_eval_batch_size(device)
    status = "done"
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        lr = lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        tr = train_one_epoch(step_model, criterion, optimizer, train, device, epoch, cfg,
                             precision=precision)
        scored = evaluated_epoch(cfg, epoch + 1)
        if tr["diverged"] or not scored:
            ev = {"loss": float("nan"), "acc": float("nan")}
        else:
            ev = evaluate(step_model, criterion, val, device, batch_size=eval_bs, precision=precision)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": tr["train_loss"],
               "train_acc": tr["train_acc"], "val_loss": ev["loss"], "val_acc": ev["acc"],
               "seconds": time.perf_counter() - t0}
        history.append(row)
        log(format_epoch(row, cfg.epochs))
        if tr["diverged"] or (scored and not math.isfinite(ev["loss"])):
            status = "diverged"
            log(f"diverged at epoch {epoch + 1}: the loss is not finite; the run stops here")
            break
        # No scheduler state: lr_at(cfg, epoch) is the schedule, set at the top of each epoch.
        state = {
            "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "config": cfg.to_dict(),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "history": list(history),
            "rng": {"torch": torch.get_rng_state()},
        }
        if on_epoch is not None:
            on_epoch(state)
    return {"status": status, "history": history, "model": model}
