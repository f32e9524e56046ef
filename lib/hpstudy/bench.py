"""Training and evaluation throughput: the library's path against the report's pipeline.

``hpstudy bench`` (or ``python benchmarks/bench.py``) runs, in one process, alternating
segments of

* **reference**: the report's own pipeline: a Dataset yielding PIL images (as torchvision's
  CIFAR100 does: uint8 HWC array -> ``PIL.Image.fromarray``), ``Compose([RandomHorizontalFlip(),
  RandomCrop(32, padding=4), ToTensor(), Normalize(...)])``, ``DataLoader(batch_size=128,
  shuffle=True, num_workers=2)``, the same MobileNet in default NCHW fp32 form, plain
  ``SGD(momentum=0.9)`` and cross-entropy, with the usual per-step ``loss.item()`` and
  accuracy bookkeeping of such a loop;
* **ours**: exactly what ``hpstudy.train.fit`` (and so ``runs.run``) trains with:
  ``data.prepare_data`` / ``build_model`` / ``build_optimizer`` / ``train_one_epoch`` /
  ``evaluate`` under ``device.run_settings`` (the per-process settings ``fit`` applies).

Segments alternate (reference, ours, reference, ...) so that drift of a shared machine falls on
both. The reference's DataLoader workers are persistent, so worker start-up is not counted,
but each segment is one bounded pass (a sampler of exactly that segment's images): when it
ends the workers go idle, so they neither prefetch batches for free nor take the cores from
ours' segment. Filling the first batches is counted, as at the start of every epoch of the
report's loop. On the CPU, ours'
first step tunes glibc malloc as ``fit`` does; that is process-wide, so the reference gets it
too (``--allocator default`` leaves malloc alone for both). Results: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import data as D
from . import train as T
from .config import Config
from .device import (allocator_tuned, default_eval_batch_size, resolve_compile, resolve_device,
                     resolve_precision, run_settings)
from .model import MobileNet, count_parameters

PAPER_EPOCHS = 5 * 300 + 3 * 15      # the `paper` preset: five 300-epoch runs, three 15-epoch runs
EPOCH_TRAIN, EPOCH_VAL = 40000, 10000


# --- data ------------------------------------------------------------------------------------

def synthetic_cifar(n_train: int = 50000, n_test: int = 10000, seed: int = 0) -> D.CIFAR100:
    """Random uint8 images with balanced labels, the shape of CIFAR-100."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        fine = torch.arange(n) % D.NUM_CLASSES
        fine = fine[torch.randperm(n, generator=g)]
        return D.Split(x, fine, fine // 5)

    return D.CIFAR100(split(n_train), split(n_test), [f"c{i}" for i in range(100)],
                      [f"s{i}" for i in range(20)], "synthetic", {"train": "synthetic"})


def load_data(root: str | None) -> tuple[D.CIFAR100, str]:
    root = root or os.environ.get("HPSTUDY_DATA")
    if root:
        p = Path(root).expanduser()
        if (p / D.FOLDER / "train").is_file() or (p.name == D.FOLDER and (p / "train").is_file()):
            data = D.load_cifar100(p, download_missing=False)
            if len(data.train) == 50000:
                return data, f"CIFAR-100 ({data.root})"
    return synthetic_cifar(), "synthetic uint8 (50000, 3, 32, 32)"


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
    """Indices of one segment: ``count`` of them, shuffled or in order; set before ``iter``."""

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


# --- measurements ----------------------------------------------------------------------------

class Memory:
    """Peak memory of a stretch of code: CUDA max allocated, or the main process's peak RSS
    (VmHWM, reset through /proc/self/clear_refs where Linux allows it), both in MB and
    counted above ``current_mb()`` at the start of the stretch."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = device.type != "cuda" and _reset_hwm()

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resettable:
            _malloc_trim()   # hand freed heap back, so that the peak is not hidden in it
            _reset_hwm()

    def current_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20
        return _status_mb("VmRSS:") if self.resettable else 0.0

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.resettable:
            return _status_mb("VmHWM:")
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    @property
    def kind(self) -> str:
        if self.device.type == "cuda":
            return "CUDA max allocated during warm-up, above what was allocated before"
        if self.resettable:
            return ("main-process peak RSS during warm-up, above the RSS before it (data, "
                    "model and torch excluded; the reference's worker processes not counted)")
        return "process max RSS (whole run, both pipelines)"


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return 0.0


def _malloc_trim() -> None:
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Reference:
    """The report's pipeline, one object per process (persistent workers)."""

    def __init__(self, data: D.CIFAR100, tr: torch.Tensor, va: torch.Tensor, width: float,
                 batch_size: int, device: torch.device, seed: int = 0):
        from torchvision import transforms

        self.device = device
        norm = transforms.Normalize(D.PUBLISHED_MEAN, D.PUBLISHED_STD)
        train_tf = transforms.Compose([transforms.RandomHorizontalFlip(),
                                       transforms.RandomCrop(32, padding=4),
                                       transforms.ToTensor(), norm])
        eval_tf = transforms.Compose([transforms.ToTensor(), norm])
        hwc = data.train.x.permute(0, 2, 3, 1).contiguous().numpy()
        y = data.train.fine.numpy()
        tr, va = tr.numpy(), va.numpy()
        pin = device.type == "cuda"
        g = torch.Generator().manual_seed(seed)
        kw = dict(batch_size=batch_size, num_workers=2, persistent_workers=True, pin_memory=pin)
        # shuffle=True is a RandomSampler; Bounded is the same draw, cut to one segment
        self.train_sampler = Bounded(len(tr), True, g)
        self.eval_sampler = Bounded(len(va), False, g)
        self.train_loader = torch.utils.data.DataLoader(
            PILImages(hwc[tr], y[tr], train_tf), sampler=self.train_sampler, drop_last=True, **kw)
        self.eval_loader = torch.utils.data.DataLoader(PILImages(hwc[va], y[va], eval_tf),
                                                       sampler=self.eval_sampler, **kw)
        torch.manual_seed(seed)
        self.model = MobileNet(D.NUM_CLASSES, width).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.criterion = nn.CrossEntropyLoss()

    def train(self, steps: int) -> int:
        model, opt, crit, dev = self.model, self.optimizer, self.criterion, self.device
        model.train()
        running_loss, correct, seen = 0.0, 0, 0
        self.train_sampler.count = steps * self.train_loader.batch_size
        for x, y in self.train_loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            out = model(x)
            loss = crit(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running_loss += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
        return seen

    def evaluate(self, images: int) -> int:
        model, crit, dev = self.model, self.criterion, self.device
        model.eval()
        seen, loss_sum, correct = 0, 0.0, 0
        self.eval_sampler.count = images
        with torch.no_grad():
            for x, y in self.eval_loader:
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                out = model(x)
                loss_sum += crit(out, y).item() * len(y)
                correct += (out.argmax(1) == y).sum().item()
                seen += len(y)
        return seen


class Ours:
    """The library's path: the pieces ``fit`` is made of, called the way ``fit`` calls them."""

    def __init__(self, data: D.CIFAR100, width: float, batch_size: int, device: torch.device,
                 tune_allocator: bool = True):
        self.tune_allocator = tune_allocator
        self.cfg = Config.from_dict(dict(width=width, batch_size=batch_size, device=device.type,
                                         lr=0.05, momentum=0.9))
        self.device = device
        self.precision = resolve_precision(self.cfg.precision, device)
        self.train_b, self.val_b = D.prepare_data(self.cfg, data, device)
        self.model = T.build_model(self.cfg, device)
        self.optimizer = T.build_optimizer(self.cfg, self.model)
        self.step_model = (torch.compile(self.model) if resolve_compile(self.cfg.compile, device)
                           else self.model)
        self.criterion = nn.CrossEntropyLoss()
        self.eval_bs = self.cfg.eval_batch_size or default_eval_batch_size(device)
        self.epoch = 0
        self.pos = {"train": 0, "val": 0}

    def window(self, which: str, n: int) -> D.Batches:
        """The next ``n`` images of the split (wrapping), as a Batches like prepare_data's."""
        b = self.train_b if which == "train" else self.val_b
        total = len(b.split)
        idx = (torch.arange(n) + self.pos[which]) % total
        self.pos[which] = (self.pos[which] + n) % total
        return D.Batches(b.split.subset(idx.to(b.split.x.device)), b.mean, b.std, b.channels_last)

    def train(self, part: D.Batches) -> int:
        with run_settings(self.device, tune_allocator=self.tune_allocator):
            out = T.train_one_epoch(self.step_model, self.criterion, self.optimizer, part,
                                    self.device, self.epoch, self.cfg, precision=self.precision)
        self.epoch += 1
        if out["diverged"]:
            raise RuntimeError("the benchmark's training diverged")
        return len(part.split)  # whole batches: the window is steps x batch size

    def evaluate(self, part: D.Batches) -> int:
        with run_settings(self.device, tune_allocator=self.tune_allocator):
            T.evaluate(self.step_model, self.criterion, part, self.device,
                       batch_size=self.eval_bs, precision=self.precision)
        return len(part.split)


# --- the run ---------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hpstudy bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="training steps per segment (default 20)")
    p.add_argument("--segments", type=int, default=4,
                   help="segments per pipeline, alternated (default 4)")
    p.add_argument("--eval-images", type=int, default=0,
                   help="images evaluated per segment (default: steps x batch size, at most 10000)")
    p.add_argument("--width", type=float, default=1.0, help="MobileNet width multiplier (default 1.0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    p.add_argument("--data-root", default=None,
                   help="CIFAR-100 folder (default $HPSTUDY_DATA; synthetic data when absent)")
    p.add_argument("--allocator", choices=("library", "default"), default="library",
                   help="CPU: 'library' lets ours tune glibc malloc as fit does (process-wide, so "
                        "the reference gets it too); 'default' leaves malloc alone for both")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="print only the table")
    a = p.parse_args(argv)
    if a.steps < 1 or a.segments < 1 or a.batch_size < 2 or not a.width > 0 or a.eval_images < 0:
        p.error("--steps, --segments must be >= 1, --batch-size >= 2, --width > 0")
    return a


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_bench(a: argparse.Namespace, log=print) -> dict:
    device = resolve_device(a.device)
    t_start = time.perf_counter()
    data, data_desc = load_data(a.data_root)
    n = len(data.train)
    tr, va = D.split_indices(n, D.default_n_val(n), 0)
    mem = Memory(device)
    bs = a.batch_size
    train_images = a.steps * bs
    eval_images = a.eval_images or min(train_images, len(va))

    # Warm-up, one pipeline after the other; peak memory is taken here. The reference goes
    # first: on the CPU, ours tunes malloc on its first step (process-wide, one-way).
    warm = max(2, min(a.steps, 4))
    peak = {}
    log("setting up the reference (DataLoader with 2 persistent workers) and ours ...")
    ref = Reference(data, tr, va, a.width, bs, device)
    ours = Ours(data, a.width, bs, device, tune_allocator=a.allocator == "library")
    log("warming up ...")
    mem.reset()
    base = mem.current_mb()
    ref.train(warm)
    ref.evaluate(eval_images)
    peak["reference"] = mem.peak_mb() - base
    mem.reset()
    base = mem.current_mb()
    ours.train(ours.window("train", warm * bs))
    ours.evaluate(ours.window("val", eval_images))     # the segments' shapes: no recompiles
    peak["ours"] = mem.peak_mb() - base

    res = {k: {"train_s": [], "train_n": [], "eval_s": [], "eval_n": []}
           for k in ("reference", "ours")}

    def timed(name, fn, arg, kind):
        sync(device)
        t = time.perf_counter()
        n_done = fn(arg)
        sync(device)
        dt = time.perf_counter() - t
        res[name][f"{kind}_s"].append(dt)
        res[name][f"{kind}_n"].append(n_done)
        return n_done / dt

    for s in range(a.segments):
        # training: reference, ours (prepared outside the timed region)
        part = ours.window("train", train_images)
        v_ref = timed("reference", ref.train, a.steps, "train")
        v_ours = timed("ours", ours.train, part, "train")
        # evaluation: ours, reference (the order flips, so neither always follows the other)
        vpart = ours.window("val", eval_images)
        e_ours = timed("ours", ours.evaluate, vpart, "eval")
        e_ref = timed("reference", ref.evaluate, eval_images, "eval")
        if not a.quiet:
            log(f"segment {s + 1}/{a.segments}: train img/s reference {v_ref:8.1f}  ours "
                f"{v_ours:8.1f}  ({v_ours / v_ref:.2f}x)   eval img/s reference {e_ref:8.1f}  "
                f"ours {e_ours:8.1f}")

    out = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "data": data_desc,
        "width": a.width, "batch_size": bs, "steps": a.steps, "segments": a.segments,
        "eval_images_per_segment": eval_images,
        "parameters": count_parameters(ours.model),
        "ours_precision": ours.precision,
        "ours_channels_last": ours.cfg.channels_last,
        "ours_compile": ours.step_model is not ours.model,
        "ours_eval_batch_size": ours.eval_bs,
        "ours_eval_bn_folded": device.type == "cpu",
        "reference_notes": ("PIL Dataset + torchvision transforms, DataLoader(batch_size, "
                            "shuffle=True, num_workers=2, persistent_workers=True), one bounded pass per "
                            "segment (workers idle between); NCHW fp32; SGD(momentum=0.9); loss.item() and "
                            "accuracy .item() per step; eval: DataLoader + model.eval() + no_grad"),
        "memory_kind": mem.kind,
        "allocator": ("glibc malloc tuned by the library (process-wide: both pipelines)"
                      if allocator_tuned() else
                      "default (ours without the library's malloc tuning)"
                      if device.type == "cpu" else "n/a"),
    }
    for k, r in res.items():
        tr_ips = sum(r["train_n"]) / sum(r["train_s"])
        ev_ips = sum(r["eval_n"]) / sum(r["eval_s"])
        epoch_s = EPOCH_TRAIN / tr_ips + EPOCH_VAL / ev_ips
        out[f"{k}_train_img_s"] = tr_ips
        out[f"{k}_eval_img_s"] = ev_ips
        out[f"{k}_train_img_s_segments"] = [n / t for n, t in zip(r["train_n"], r["train_s"])]
        out[f"{k}_peak_mem_mb"] = peak[k]
        out[f"{k}_epoch_s"] = epoch_s
        out[f"{k}_paper_h"] = epoch_s * PAPER_EPOCHS / 3600
    out["speedup"] = out["ours_train_img_s"] / out["reference_train_img_s"]
    out["speedup_segments_median"] = statistics.median(
        o / r for o, r in zip(out["ours_train_img_s_segments"], out["reference_train_img_s_segments"]))
    out["eval_speedup"] = out["ours_eval_img_s"] / out["reference_eval_img_s"]
    out["epoch_speedup"] = out["reference_epoch_s"] / out["ours_epoch_s"]
    out["paper_epochs"] = PAPER_EPOCHS
    out["process_max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["wall_s"] = time.perf_counter() - t_start
    return out


def table(r: dict) -> str:
    def row(label, a, b, fmt, ratio=None):
        ratio = f"{ratio:7.2f}x" if ratio is not None and math.isfinite(ratio) else ""
        return f"{label:<28}{format(a, fmt):>12}{format(b, fmt):>12}{ratio:>10}"

    lines = [
        f"hpstudy bench: {r['device']} ({r['device_name']}, {r['cpu_threads']} threads), "
        f"torch {r['torch']}",
        f"MobileNet width {r['width']} ({r['parameters']:,} parameters), batch {r['batch_size']}, "
        f"{r['segments']} x {r['steps']} steps per pipeline, alternated; data: {r['data']}",
        f"ours: {r['ours_precision']}, channels_last={r['ours_channels_last']}, "
        f"compile={r['ours_compile']}, eval batch {r['ours_eval_batch_size']}"
        + (", eval with BN folded into the convs" if r["ours_eval_bn_folded"] else ""),
        "",
        f"{'':<28}{'reference':>12}{'ours':>12}{'ours/ref':>10}",
        row("train img/s", r["reference_train_img_s"], r["ours_train_img_s"], ".1f", r["speedup"]),
        row("eval img/s", r["reference_eval_img_s"], r["ours_eval_img_s"], ".1f", r["eval_speedup"]),
        row("peak memory MB", r["reference_peak_mem_mb"], r["ours_peak_mem_mb"], ".0f"),
        row("s / epoch (40k + 10k)", r["reference_epoch_s"], r["ours_epoch_s"], ".1f",
            r["epoch_speedup"]),
        row(f"paper preset h ({r['paper_epochs']} ep)", r["reference_paper_h"], r["ours_paper_h"],
            ".1f", r["epoch_speedup"]),
        "",
        f"train speedup per segment: "
        + " ".join(f"{o / f:.2f}" for o, f in zip(r["ours_train_img_s_segments"],
                                                  r["reference_train_img_s_segments"]))
        + f" (median {r['speedup_segments_median']:.2f}x)",
        f"peak memory: {r['memory_kind']}; process max RSS {r['process_max_rss_mb']:.0f} MB",
        f"allocator: {r['allocator']}; wall time {r['wall_s']:.0f} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(list(sys.argv[1:] if argv is None else argv))
    log = (lambda *x, **k: None) if a.quiet else (lambda *x, **k: print(*x, **k, flush=True))
    r = run_bench(a, log)
    print(table(r))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
