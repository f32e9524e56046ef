"""Training and evaluation throughput: the library's path against the report's pipeline.

``hpstudy bench`` (or ``python benchmarks/bench.py``) alternates segments of

* **reference**: the report's own pipeline (``report_pipeline``: PIL images through
  torchvision transforms, ``DataLoader(batch_size=128, shuffle=True, num_workers=2)``, the
  same MobileNet in default NCHW fp32, plain ``SGD(momentum=0.9)``, per-step ``loss.item()``
  and accuracy bookkeeping), by default in an interpreter of its own (``--reference
  process``), as a user runs the report's script: none of the library's process-wide settings
  (its malloc tuning) reach it;
* **ours**: exactly what ``hpstudy.train.fit`` (and so ``store.run``) trains with:
  ``data.prepare_data`` / ``build_model`` / ``build_optimizer`` / ``train_one_epoch`` /
  ``evaluate`` under ``device.run_settings`` (the per-process settings ``fit`` applies).

Segments alternate (reference, ours, reference, ...) so that drift of a shared machine falls on
both; each is timed where it runs, and the reference process waits for the next request while
ours runs. The reference's DataLoader workers are persistent, so worker start-up is not
counted, but each segment is one bounded pass (a sampler of exactly that segment's images):
when it ends the workers go idle, so they neither prefetch batches for free nor take the cores
from ours' segment. Filling the first batches is counted, as at the start of every epoch of
the report's loop. ``--reference inline`` runs it in this process instead, where ours' malloc
tuning speeds it up too (``--allocator default`` leaves malloc alone).

``--plan PRESET`` measures at the study level instead (``bench.study``). Results:
benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from . import study as bench_study
from .. import data as D
from . import report_pipeline as RP
from .. import train as T
from ..config import Config
from ..device import (allocator_tuned, cpu_name, default_eval_batch_size, resolve_compile,
                     resolve_device, resolve_precision, run_settings)
from ..dispatch import DEFAULT_EXECUTOR, EXECUTORS
from ..model import count_parameters

PAPER_EPOCHS = 3 * (6 * 300 + 3 * 15)  # `paper`: per seed six 300-epoch runs, three 15-epoch; 3 seeds
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
    """CIFAR-100 from ``root`` (default $HPSTUDY_DATA), else synthetic images. ``synthetic``
    (or ``synthetic:N``, N training images) asks for synthetic ones even where CIFAR-100 is."""
    if root and (root == "synthetic" or root.startswith("synthetic:")):
        n = int(root.partition(":")[2] or 50000)
        return synthetic_cifar(n, max(n // 5, 1)), f"synthetic uint8 ({n}, 3, 32, 32)"
    root = root or os.environ.get("HPSTUDY_DATA")
    if root:
        p = Path(root).expanduser()
        if (p / D.FOLDER / "train").is_file() or (p.name == D.FOLDER and (p / "train").is_file()):
            data = D.load_cifar100(p, download_missing=False)
            if len(data.train) == 50000:
                return data, f"CIFAR-100 ({data.root})"
    return synthetic_cifar(), "synthetic uint8 (50000, 3, 32, 32)"


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


def _now(device: torch.device) -> float:
    """A clock reading after the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class Reference:
    """The report's pipeline (``report_pipeline``) cut into segments: persistent DataLoader
    workers, each segment one bounded pass (its workers idle between segments)."""

    def __init__(self, data: D.CIFAR100, width: float, batch_size: int, device: torch.device,
                 seed: int = 0):
        self.device = device
        n = len(data.train)
        tr, va = D.split_indices(n, D.default_n_val(n), 0)
        train_tf, eval_tf = RP.transforms_for(D.PUBLISHED_MEAN, D.PUBLISHED_STD)
        pin = device.type == "cuda"
        g = torch.Generator().manual_seed(seed)
        kw = dict(batch_size=batch_size, num_workers=2, persistent_workers=True, pin_memory=pin)
        # shuffle=True is a RandomSampler; Bounded is the same draw, cut to one segment
        self.train_sampler = RP.Bounded(len(tr), True, g)
        self.eval_sampler = RP.Bounded(len(va), False, g)
        self.train_loader = torch.utils.data.DataLoader(
            RP.PILImages(*RP.images(data, tr), train_tf), sampler=self.train_sampler,
            drop_last=True, **kw)
        self.eval_loader = torch.utils.data.DataLoader(
            RP.PILImages(*RP.images(data, va), eval_tf), sampler=self.eval_sampler, **kw)
        torch.manual_seed(seed)
        cfg = Config.from_dict(dict(width=width, batch_size=batch_size, lr=0.05, momentum=0.9))
        self.model, self.optimizer, self.criterion = RP.build(cfg, device)

    def train(self, steps: int) -> tuple[int, float]:
        self.train_sampler.count = steps * self.train_loader.batch_size
        t = _now(self.device)
        n = RP.train_steps(self.model, self.criterion, self.optimizer, self.train_loader,
                           self.device)["images"]
        return n, _now(self.device) - t

    def evaluate(self, images: int) -> tuple[int, float]:
        self.eval_sampler.count = images
        t = _now(self.device)
        n = RP.evaluate(self.model, self.criterion, self.eval_loader, self.device)["images"]
        return n, _now(self.device) - t


class RemoteReference:
    """``Reference`` in a fresh interpreter of its own (``--serve-reference``), as a user runs
    the report's script: none of this process's settings (the library's malloc tuning) reach
    it. Segments are timed there and asked for one at a time, so the alternation holds."""

    def __init__(self, spec: dict):
        cmd = [sys.executable, "-m", "hpstudy.bench", "--serve-reference", json.dumps(spec)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"the reference process exited ({code}) before answering; "
                               "its error is above")
        return json.loads(line)

    def ask(self, op: str, arg=None) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, "arg": arg}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def train(self, steps: int) -> tuple[int, float]:
        r = self.ask("train", steps)
        return r["n"], r["s"]

    def evaluate(self, images: int) -> tuple[int, float]:
        r = self.ask("eval", images)
        return r["n"], r["s"]

    def warm_up(self, steps: int, images: int) -> float:
        return self.ask("warm_up", [steps, images])["peak_mb"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit")
            except (BrokenPipeError, RuntimeError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def warm_up_reference(ref: Reference, mem: "Memory", steps: int, images: int) -> float:
    """Warm-up of the reference; its peak memory above what was in use before, MB."""
    mem.reset()
    base = mem.current_mb()
    ref.train(steps)
    ref.evaluate(images)
    return mem.peak_mb() - base


def serve_reference(spec: dict) -> int:
    """The reference's side of ``RemoteReference``: one JSON line in, one out."""
    device = resolve_device(spec["device"])
    data, desc = load_data(spec["data_root"])
    ref = Reference(data, spec["width"], spec["batch_size"], device)
    mem = Memory(device)
    print(json.dumps({"data": desc, "pid": os.getpid(), "allocator_tuned": allocator_tuned(),
                      "threads": torch.get_num_threads(), "memory_kind": mem.kind}), flush=True)
    for line in sys.stdin:
        msg = json.loads(line)
        op, arg = msg["op"], msg.get("arg")
        if op == "quit":
            break
        if op == "warm_up":
            out = {"peak_mb": warm_up_reference(ref, mem, *arg)}
        elif op == "train":
            n, s = ref.train(arg)
            out = {"n": n, "s": s}
        elif op == "eval":
            n, s = ref.evaluate(arg)
            out = {"n": n, "s": s}
        else:
            raise ValueError(f"unknown request {op!r}")
        print(json.dumps(out), flush=True)
    return 0


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

    def train(self, part: D.Batches) -> tuple[int, float]:
        with run_settings(self.device, tune_allocator=self.tune_allocator):
            t = _now(self.device)
            out = T.train_one_epoch(self.step_model, self.criterion, self.optimizer, part,
                                    self.device, self.epoch, self.cfg, precision=self.precision)
            dt = _now(self.device) - t
        self.epoch += 1
        if out["diverged"]:
            raise RuntimeError("the benchmark's training diverged")
        return len(part.split), dt  # whole batches: the window is steps x batch size

    def evaluate(self, part: D.Batches) -> tuple[int, float]:
        with run_settings(self.device, tune_allocator=self.tune_allocator):
            t = _now(self.device)
            T.evaluate(self.step_model, self.criterion, part, self.device,
                       batch_size=self.eval_bs, precision=self.precision)
            return len(part.split), _now(self.device) - t


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
                   help="CIFAR-100 folder (default $HPSTUDY_DATA; synthetic data when absent); "
                        "'synthetic' or 'synthetic:N' for synthetic images (N of them)")
    p.add_argument("--allocator", choices=("library", "default"), default="library",
                   help="CPU: 'library' lets ours tune glibc malloc as fit does; 'default' "
                        "leaves it alone")
    p.add_argument("--reference", choices=("process", "inline"), default="process",
                   help="where the reference runs: 'process' (default) in an interpreter of its "
                        "own, as a user runs the report's script; 'inline' in this one, sharing "
                        "its process-wide settings (the library's malloc tuning)")
    g = p.add_argument_group(
        "study level", "--plan PRESET times the preset's whole plan instead: every run through "
        "the report's pipeline one after another (each in a fresh process), then through the "
        "library's executor, each into a fresh run store")
    g.add_argument("--plan", default=None, metavar="PRESET",
                   help="e.g. quick: the study-level ratio of that preset's plan")
    g.add_argument("--studies", nargs="+", default=None, metavar="STUDY",
                   help="only these studies' runs (default: all)")
    g.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a preset parameter, as in hpstudy report")
    g.add_argument("--executor", choices=EXECUTORS, default=DEFAULT_EXECUTOR,
                   help=f"the library's executor (default {DEFAULT_EXECUTOR}, the fastest measured)")
    g.add_argument("--jobs", type=int, default=None, help="processes of the local executor")
    p.add_argument("--serve-reference", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="print only the table")
    a = p.parse_args(argv)
    if a.steps < 1 or a.segments < 1 or a.batch_size < 2 or not a.width > 0 or a.eval_images < 0:
        p.error("--steps, --segments must be >= 1, --batch-size >= 2, --width > 0")
    return a


def run_bench(a: argparse.Namespace, log=print) -> dict:
    device = resolve_device(a.device)
    t_start = time.perf_counter()
    data, data_desc = load_data(a.data_root)
    n = len(data.train)
    mem = Memory(device)
    bs = a.batch_size
    train_images = a.steps * bs
    eval_images = a.eval_images or min(train_images, D.default_n_val(n))

    # Warm-up, one pipeline after the other; peak memory is taken here. The reference goes
    # first: in --reference inline, ours tunes malloc on its first step (process-wide, one-way).
    warm = max(2, min(a.steps, 4))
    peak = {}
    log(f"setting up the reference ({a.reference}: DataLoader with 2 persistent workers) "
        "and ours ...")
    if a.reference == "process":
        ref = RemoteReference({"device": device.type, "data_root": a.data_root,
                               "width": a.width, "batch_size": bs})
    else:
        ref = Reference(data, a.width, bs, device)
    try:
        ours = Ours(data, a.width, bs, device, tune_allocator=a.allocator == "library")
        log("warming up ...")
        if a.reference == "process":
            peak["reference"] = ref.warm_up(warm, eval_images)
        else:
            peak["reference"] = warm_up_reference(ref, mem, warm, eval_images)
        mem.reset()
        base = mem.current_mb()
        ours.train(ours.window("train", warm * bs))
        ours.evaluate(ours.window("val", eval_images))     # the segments' shapes: no recompiles
        peak["ours"] = mem.peak_mb() - base

        res = {k: {"train_s": [], "train_n": [], "eval_s": [], "eval_n": []}
               for k in ("reference", "ours")}

        def timed(name, fn, arg, kind):
            n_done, dt = fn(arg)
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
                    f"{v_ours:8.1f}  ({v_ours / v_ref:.2f}x)   eval img/s reference "
                    f"{e_ref:8.1f}  ours {e_ours:8.1f}")
    finally:
        if a.reference == "process":
            ref_info = ref.info
            ref.close()

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
        "reference_process": ("its own interpreter (default malloc, no library settings)"
                              if a.reference == "process" else "this one (shares its settings)"),
        # read from the reference's own process: whether the library's malloc tuning reached it
        "reference_allocator_tuned": (ref_info["allocator_tuned"] if a.reference == "process"
                                      else allocator_tuned()),
        "memory_kind": mem.kind,
        "allocator": _allocator_note(a.reference, device),
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


def _allocator_note(reference: str, device: torch.device) -> str:
    if device.type != "cpu":
        return "n/a"
    ours = ("glibc malloc tuned by the library" if allocator_tuned()
            else "default (ours without the library's malloc tuning)")
    if reference == "process":
        return f"ours: {ours}; reference: default, in its own process"
    return ours + (" (process-wide: the reference shares it)" if allocator_tuned() else "")


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
        "train speedup per segment: "
        + " ".join(f"{o / f:.2f}" for o, f in zip(r["ours_train_img_s_segments"],
                                                  r["reference_train_img_s_segments"]))
        + f" (median {r['speedup_segments_median']:.2f}x)",
        f"peak memory: {r['memory_kind']}; process max RSS {r['process_max_rss_mb']:.0f} MB",
        f"reference ran in {r['reference_process']}",
        f"allocator: {r['allocator']}; wall time {r['wall_s']:.0f} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(list(sys.argv[1:] if argv is None else argv))
    if a.serve_reference:
        return serve_reference(json.loads(a.serve_reference))
    log = (lambda *x, **k: None) if a.quiet else (lambda *x, **k: print(*x, **k, flush=True))
    if a.plan:
        try:
            r = bench_study.measure(a.plan, studies=a.studies, overrides=a.param,
                                    executor=a.executor, jobs=a.jobs, log=log)
        except ValueError as e:     # ConfigError and PresetError are ValueErrors
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(bench_study.table(r))
    else:
        r = run_bench(a, log)
        print(table(r))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
