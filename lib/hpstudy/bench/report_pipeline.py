"""The report's training pipeline, as a user of the report runs it: the baseline that
``hpstudy bench`` measures the library against.

torchvision-style and per image: a Dataset that turns each uint8 HWC image into a PIL image
(as torchvision's CIFAR100 does), ``transforms.Compose([RandomHorizontalFlip(),
RandomCrop(32, padding=4), ToTensor(), Normalize(...)])``, ``DataLoader(shuffle=True,
num_workers=2)``, the same MobileNet in default NCHW fp32, ``SGD`` with momentum,
``CosineAnnealingLR`` stepped per epoch, mixup as the mixup paper's CIFAR code does it (one
lambda per batch from ``np.random.beta``, a permuted copy of the batch), and ``loss.item()``
plus accuracy bookkeeping per step.

Nothing here touches process-wide settings (no ``device.run_settings``: default malloc, no
deterministic mode), and the benchmark runs it in a fresh interpreter of its own, so what it
measures is what the report's script pays, untouched by the library's tuning.

``python -m hpstudy.bench.report_pipeline CONFIG_JSON`` trains one whole run (the study-level bench
runs a preset's plan this way, one run after another) and prints its result as one JSON line.
"""
from __future__ import annotations

import json
import math
import random
import sys
import time

import numpy as np
import torch
from torch import nn

from .. import data as D
from ..config import Config
from ..device import resolve_device
from ..model import MobileNet


class PILImages(torch.utils.data.Dataset):
    """What torchvision's CIFAR100 does per item: HWC uint8 -> PIL image -> transform."""

    def __init__(self, x_hwc: np.ndarray, labels: np.ndarray, transform):
        self.x, self.y, self.transform = x_hwc, labels, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


class Bounded(torch.utils.data.Sampler):
    """Indices of one benchmark segment: ``count`` of them, shuffled (a RandomSampler's draw,
    cut short) or in order; set ``count`` before iterating."""

    def __init__(self, n: int, shuffle: bool, generator: torch.Generator):
        self.n, self.shuffle, self.generator, self.count, self.start = n, shuffle, generator, 0, 0

    def __iter__(self):
        if self.shuffle:
            return iter(torch.randperm(self.n, generator=self.generator)[: self.count].tolist())
        idx = [(self.start + i) % self.n for i in range(self.count)]
        self.start = (self.start + self.count) % self.n
        return iter(idx)

    def __len__(self):
        return self.count


def transforms_for(mean, std, crop: bool = True, flip: bool = True):
    """The report's per-image training and evaluation transforms."""
    from torchvision import transforms

    norm = transforms.Normalize(mean, std)
    aug = ([transforms.RandomHorizontalFlip()] if flip else []) + \
          ([transforms.RandomCrop(32, padding=4)] if crop else [])
    return (transforms.Compose([*aug, transforms.ToTensor(), norm]),
            transforms.Compose([transforms.ToTensor(), norm]))


def images(data: D.CIFAR100, idx: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """HWC uint8 images and fine labels of ``idx`` (of the training file), as numpy."""
    x = data.train.x[idx].permute(0, 2, 3, 1).contiguous().numpy()
    return x, data.train.fine[idx].numpy()


def train_steps(model, criterion, optimizer, loader, device, mixup_alpha: float = 0.0) -> dict:
    """One pass over ``loader``: the report's loop (per-step ``.item()``; mixup's accuracy is
    the lambda-weighted agreement with both targets, as in the mixup paper's code)."""
    model.train()
    loss_sum, correct, seen = 0.0, 0.0, 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if mixup_alpha > 0:
            lam = float(np.random.beta(mixup_alpha, mixup_alpha))
            perm = torch.randperm(x.size(0), device=device)
            x, y_b = lam * x + (1 - lam) * x[perm], y[perm]
        out = model(x)
        loss = criterion(out, y)
        if mixup_alpha > 0:
            loss = lam * loss + (1 - lam) * criterion(out, y_b)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pred = out.argmax(1)
        loss_sum += loss.item() * len(y)
        if mixup_alpha > 0:
            correct += lam * (pred == y).sum().item() + (1 - lam) * (pred == y_b).sum().item()
        else:
            correct += (pred == y).sum().item()
        seen += len(y)
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "images": seen}


def evaluate(model, criterion, loader, device) -> dict:
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss_sum += criterion(out, y).item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "images": seen}


def build(cfg: Config, device: torch.device):
    """The report's model, optimizer and loss: NCHW fp32, torch's default SGD."""
    model = MobileNet(D.NUM_CLASSES, cfg.width, cfg.init).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    return model, optimizer, nn.CrossEntropyLoss()


def train_run(cfg: Config, data: D.CIFAR100, log=print) -> dict:
    """One whole run of ``cfg`` through the report's pipeline: the same images (the run's
    subsets of the 40k/10k split), normalization, model, optimizer settings, schedule,
    augmentation and mixup as the library's run of ``cfg``; its own random stream."""
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    tr, va = D.subset_indices(cfg, data)
    mean, std = D.norm_constants(data, cfg.normalize, cfg.split_seed)
    train_tf, eval_tf = transforms_for(mean, std, cfg.augment_crop, cfg.augment_flip)
    pin = device.type == "cuda"
    # drop a last batch of one image only: BatchNorm cannot train on it
    train_loader = torch.utils.data.DataLoader(
        PILImages(*images(data, tr), train_tf), batch_size=cfg.batch_size, shuffle=True,
        num_workers=2, pin_memory=pin, drop_last=len(tr) % cfg.batch_size == 1)
    val_loader = torch.utils.data.DataLoader(
        PILImages(*images(data, va), eval_tf), batch_size=cfg.batch_size, shuffle=False,
        num_workers=2, pin_memory=pin)
    model, optimizer, criterion = build(cfg, device)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs,
                                                            eta_min=cfg.eta_min)
                 if cfg.schedule == "cosine" else None)
    history = []
    for epoch in range(cfg.epochs):
        te = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        tr_m = train_steps(model, criterion, optimizer, train_loader, device, cfg.mixup_alpha)
        ev = evaluate(model, criterion, val_loader, device)
        if scheduler is not None:
            scheduler.step()
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": tr_m["loss"], "train_acc": tr_m["acc"],
               "val_loss": ev["loss"], "val_acc": ev["acc"], "seconds": time.perf_counter() - te}
        history.append(row)
        log(f"epoch {epoch + 1:>3}/{cfg.epochs}  train loss {row['train_loss']:7.4f}  "
            f"val acc {100 * row['val_acc']:6.2f}%  {row['seconds']:6.1f}s")
        if not math.isfinite(tr_m["loss"]):
            break
    return {"history": history, "seconds": time.perf_counter() - t0,
            "train_images": len(tr), "val_images": len(va),
            "final_val_acc": history[-1]["val_acc"] if history else float("nan")}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m hpstudy.bench.report_pipeline CONFIG_JSON\n"
              "trains one run of CONFIG_JSON (a Config as JSON) through the report's pipeline "
              "and prints the result as one JSON line", file=sys.stderr)
        return 2
    cfg = Config.from_dict(json.loads(argv[0]))
    data = D.load_cifar100(cfg.data_root, download_missing=False)
    out = train_run(cfg, data, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
