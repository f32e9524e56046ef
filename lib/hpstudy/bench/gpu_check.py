"""The GPU check: what one bare GPU machine measures in a few minutes, to size
``--runs-per-gpu`` and to project the ``paper`` preset's wall time.

    PYTHONPATH=lib python3 -m hpstudy.bench.gpu_check --out gpu-results [--device cuda]
        [--sizes full|tiny] [--subset gpu-check-data/cifar100-subset.npz] [--budget 450]
        [--skip SEGMENT ...] [--ks 1,2,4,8] [--compile-backend inductor]

(``scripts/gpu_check.sh`` runs exactly this.) It needs what a bare GPU machine has: Python,
torch (2.11 or newer), torchvision, numpy, pandas, scipy, pyyaml; the package from the working
tree, nothing installed, no network, no papermill, nbconvert, ray or submitit. Every timing
trains on **synthetic** images of CIFAR's shape and dtype (uint8, 3 x 32 x 32, balanced
labels), made on the spot; only the optional accuracy check reads real images, from the subset
``scripts/make_subset.py`` writes.

Segments, in order, each in its own try (a failure is recorded, the rest still runs) and under
one overall time budget (a segment that does not fit is skipped and says so):

1. ``plan``: the ``paper`` preset's runs and epochs (``hpstudy.plan``);
2. ``paper_epoch``: one epoch (training 40,000 + validating 10,000 images) of ``paper``'s
   longest configuration (width 1.0, batch 128) in fp32 and bf16, compile on and off;
3. ``runs_at_once``: that epoch with K = 1, 2, 4, 8 runs at once on the device, each run its
   own process (as ``--runs-per-gpu K`` packs them); the best K (highest aggregate
   throughput; within ``TIE_TOLERANCE`` the smaller K);
4. ``bench``: ``hpstudy bench`` on the device (ours against the report's pipeline);
5. ``accuracy``: a short run at width 0.25 on the real subset, its validation accuracy
   against chance (1%), when a subset is there;
6. ``projection``: the ``paper`` preset's wall time on one such device at the best K.

Results: ``OUT/gpu_check.json`` (rewritten after every segment, so a run cut short keeps what
it measured), ``OUT/gpu_check.log``, the same in lines, and ``OUT/stderr.log``, what every
process of the check wrote to stderr (warnings, a failing segment's traceback). ``--sizes tiny`` shrinks every
segment so that ``--device cpu`` rehearses the whole path in well under a minute
(tests/test_gpu_check.py).
"""
from __future__ import annotations

import time

T0 = time.monotonic()   # the budget counts from here, before torch is imported

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import queue  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from .. import data as D  # noqa: E402
from .. import train as T  # noqa: E402
from ..config import Config  # noqa: E402
from ..device import (cpu_name, default_eval_batch_size, resolve_compile,  # noqa: E402
                     resolve_precision, run_settings)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SUBSET = REPO_ROOT / "gpu-check-data" / "cifar100-subset.npz"
DEFAULT_BUDGET_S = 450          # of the 8 minutes the check may take; the rest is margin
TIE_TOLERANCE = 0.03            # K within 3% of the best throughput counts as a tie
SYNTHETIC = "synthetic"         # the data label of every timing
CHANCE = 1 / D.NUM_CLASSES

# paper's longest configuration, as params/paper.yaml gives it (used when the plan cannot be
# computed; the plan's own longest run is used otherwise)
PAPER_LONGEST = dict(width=1.0, batch_size=128, lr=0.05, momentum=0.9, nesterov=False,
                     weight_decay=5e-4, epochs=300, schedule="cosine", normalize="published",
                     precision="fp32", compile="auto", n_train=None, n_val=None)
# paper: 3 seeds x (six 300-epoch configurations + three 15-epoch ones), used likewise
PAPER_FALLBACK = {"runs": 27, "epochs": 3 * (6 * 300 + 3 * 15)}

SIZES = {
    # the GPU machine: paper's shapes
    "full": dict(width=1.0, batch_size=128, n_train=40000, n_val=10000, warmup_steps=20,
                 ks=(1, 2, 4, 8), compile_backend="inductor",
                 bench=dict(steps=20, segments=3, width=1.0, batch_size=128, eval_images=0),
                 accuracy=dict(width=0.25, epochs=15, batch_size=128),
                 # seconds a segment needs at least: what is left after the later segments'
                 # needs is what it may take (runs_at_once, the point of the check, first)
                 need_s=dict(plan=2, paper_epoch=60, runs_at_once=120, bench=60, accuracy=20,
                             projection=0),
                 variant_cap_s=180, threads=None),
    # the rehearsal on a CPU: the same code path, tiny shapes; compile through aot_eager
    # (dynamo and AOTAutograd without inductor's C++ build, which takes minutes on a CPU)
    "tiny": dict(width=0.25, batch_size=32, n_train=256, n_val=128, warmup_steps=2,
                 ks=(1, 2, 4, 8), compile_backend="aot_eager",
                 bench=dict(steps=2, segments=1, width=0.25, batch_size=32, eval_images=64,
                            images=500),
                 accuracy=dict(width=0.25, epochs=2, batch_size=64),
                 need_s=dict(plan=1, paper_epoch=2, runs_at_once=2, bench=2, accuracy=1,
                             projection=0),
                 # one thread per process: a rehearsal on a shared CPU, where spinning
                 # thread pools of processes side by side only burn the cores
                 variant_cap_s=120, threads=1),
}
# the cheap ones first; fp32 compiled (paper's numerics) fills the compile cache that the
# workers of runs_at_once then read
VARIANTS = (("fp32", "off"), ("bf16", "off"), ("fp32", "on"), ("bf16", "on"))


class SegmentTimeout(Exception):
    """A segment ran past the time it was given."""


class Skip(Exception):
    """A segment has nothing to work on (what it needs was skipped or failed)."""


class Interrupted(BaseException):
    """SIGTERM (``timeout`` in scripts/gpu_check.sh) or SIGINT: write what there is, stop."""


# --- small helpers ---------------------------------------------------------------------------

def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise SegmentTimeout in this (main) thread after ``seconds``. Nests: an inner limit
    never outlasts the outer one, and the outer one's clock keeps running."""
    if seconds is None or not hasattr(signal, "SIGALRM") \
            or threading.current_thread() is not threading.main_thread():
        yield
        return
    outer_left = signal.getitimer(signal.ITIMER_REAL)[0]      # 0: no outer limit
    start = time.monotonic()
    mine = max(float(seconds), 0.01)
    if outer_left and outer_left <= mine:        # the outer limit comes first: leave it be
        yield
        return

    def fire(signum, frame):
        raise SegmentTimeout(f"ran past its {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, mine)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL,
                             max(outer_left - (time.monotonic() - start), 0.01))


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _tail(e: BaseException, lines: int = 12) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__)[-lines:])


def _free(device: torch.device) -> None:
    """Drop what the last measurement left: its compiled graphs (a new model would count
    against dynamo's recompile limit), its memory."""
    try:
        torch.compiler.reset()
    except AttributeError:                      # older torch
        torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class StderrCopy:
    """Everything written to file descriptor 2 from here on, by this process and the ones it
    starts (workers, the bench's reference, compile workers), goes to the terminal and to
    ``path`` as well: warnings and tracebacks survive the machine."""

    def __init__(self, path: Path):
        self.file = open(path, "ab")
        self.terminal = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        self.thread = threading.Thread(target=self._pump, args=(r,), daemon=True)
        self.thread.start()

    def _pump(self, r: int) -> None:
        while True:          # drain whatever happens, so that no writer ever blocks
            data = os.read(r, 65536)
            if not data:
                break
            for fd_write in (lambda: os.write(self.terminal, data),
                             lambda: (self.file.write(data), self.file.flush())):
                try:
                    fd_write()
                except (OSError, ValueError):
                    pass
        os.close(r)

    def close(self) -> None:
        sys.stderr.flush()
        os.dup2(self.terminal, 2)           # our end of the pipe closes: the pump ends
        self.thread.join(timeout=5)
        self.file.close()


def _die_with_parent() -> None:
    """A worker dies when the check does (Linux), so that none is left on the GPU."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def synthetic_split(n: int, seed: int, device: torch.device) -> D.Split:
    """``n`` random uint8 images of CIFAR's shape, balanced fine labels, made on ``device``."""
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, device=device, dtype=torch.uint8)
    fine = (torch.arange(n, device=device) % D.NUM_CLASSES)[
        torch.randperm(n, generator=g, device=device)]
    return D.Split(x, fine, fine // 5)


def paper_config(base: dict, sizes: dict, device: torch.device, **kw) -> Config:
    cfg = {**base, "width": sizes["width"], "batch_size": sizes["batch_size"],
           "device": device.type, **kw}
    return Config.from_dict({k: v for k, v in cfg.items() if k in Config.keys()})


def installed_packages() -> list[str]:
    """Top-level packages imported so far that are not the standard library's."""
    std = set(getattr(sys, "stdlib_module_names", ()))
    return sorted({m.split(".")[0] for m in list(sys.modules)} - std
                  - {"hpstudy", "__main__", "__mp_main__"})


# --- one run's epoch -------------------------------------------------------------------------

class Trainer:
    """What ``train.fit`` does per epoch (learning rate, ``train_one_epoch``, ``evaluate``,
    under ``run_settings``), on given training and validation splits, timed."""

    def __init__(self, cfg: Config, device: torch.device, train: D.Split, val: D.Split,
                 compile_backend: str = "inductor", data_label: str = SYNTHETIC):
        self.cfg, self.device, self.data_label = cfg, device, data_label
        mean, std = (D.norm_constants(None, cfg.normalize) if cfg.normalize != "train"
                     else D.channel_stats(train.x.cpu()))
        mean_t = torch.tensor(mean, device=device)
        std_t = torch.tensor(std, device=device)
        self.train = D.Batches(train.to(device), mean_t, std_t, cfg.channels_last)
        self.val = D.Batches(val.to(device), mean_t, std_t, cfg.channels_last)
        self.precision = resolve_precision(cfg.precision, device)
        self.compiled = resolve_compile(cfg.compile, device)
        self.compile_backend = compile_backend if self.compiled else None
        with run_settings(device):
            self.model = T.build_model(cfg, device)
        self.optimizer = T.build_optimizer(cfg, self.model)
        self.step_model = (torch.compile(self.model, backend=compile_backend) if self.compiled
                           else self.model)
        self.criterion = nn.CrossEntropyLoss()
        self.eval_bs = cfg.eval_batch_size or default_eval_batch_size(device)
        self.epochs_done = 0

    def epoch(self, train: D.Batches | None = None) -> dict:
        train = train or self.train
        cfg, device = self.cfg, self.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with run_settings(device):
            for group in self.optimizer.param_groups:
                group["lr"] = T.lr_at(cfg, self.epochs_done)
            t0 = _now(device)
            tr = T.train_one_epoch(self.step_model, self.criterion, self.optimizer, train,
                                   device, self.epochs_done, cfg, precision=self.precision)
            t1 = _now(device)
            ev = T.evaluate(self.step_model, self.criterion, self.val, device,
                            batch_size=self.eval_bs, precision=self.precision)
            t2 = _now(device)
        self.epochs_done += 1
        n_tr, n_va = len(train.split), len(self.val.split)
        return {"data": self.data_label,
                "train_images": n_tr, "val_images": n_va,
                "train_s": t1 - t0, "eval_s": t2 - t1, "epoch_s": t2 - t0,
                "train_img_s": n_tr / (t1 - t0), "eval_img_s": n_va / (t2 - t1),
                "train_loss": tr["train_loss"], "train_acc": tr["train_acc"],
                "val_acc": ev["acc"], "diverged": tr["diverged"],
                "peak_mem_mb": (torch.cuda.max_memory_allocated(device) / 2**20
                                if device.type == "cuda" else None)}

    def warm_up(self, steps: int) -> float:
        """Compile and cache the epoch's shapes: ``steps`` full batches and a last partial one
        as the whole split has (40,000 / 128 leaves 64), and one whole evaluation."""
        bs, n = self.cfg.batch_size, len(self.train.split)
        k = min(n, steps * bs + n % bs)
        idx = torch.arange(k, device=self.train.split.x.device)
        part = D.Batches(self.train.split.subset(idx), self.train.mean, self.train.std,
                         self.train.channels_last)
        t = time.perf_counter()
        self.epoch(part)
        self.epochs_done = 0
        return time.perf_counter() - t


# --- the workers of runs_at_once -------------------------------------------------------------

def worker_main(spec: dict) -> int:
    """One run of ``runs_at_once``: set up and warm up, say ready, then one timed epoch per
    request. Replies are JSON lines on the original stdout; anything else goes to stderr."""
    _die_with_parent()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(msg):
        out.write(json.dumps(msg) + "\n")
        out.flush()

    try:
        device = torch.device(spec["device"])
        torch.set_num_threads(spec["threads"])
        cfg = Config.from_dict(spec["config"])
        seed = spec["seed"]
        tr = Trainer(cfg, device, synthetic_split(spec["n_train"], 2 * seed, device),
                     synthetic_split(spec["n_val"], 2 * seed + 1, device),
                     spec["compile_backend"])
        warm = tr.warm_up(spec["warmup_steps"])
        send({"ready": True, "pid": os.getpid(), "in_process_s": time.monotonic() - T0,
              "warm_up_s": warm, "compiled": tr.compiled})
    except Exception as e:
        send({"error": _error(e), "traceback": _tail(e)})
        return 1
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("op") == "quit":
            break
        try:
            torch.set_num_threads(msg.get("threads", spec["threads"]))
            start = time.monotonic()
            r = tr.epoch()
            send({"start": start, "end": time.monotonic(), **r})
        except Exception as e:
            send({"error": _error(e), "traceback": _tail(e)})
    return 0


class Worker:
    def __init__(self, spec: dict):
        cmd = [sys.executable, "-m", "hpstudy.bench.gpu_check", "--worker", json.dumps(spec)]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            msg["received"] = time.monotonic()
            self.replies.put(msg)
        self.replies.put({"error": f"the worker exited ({self.proc.wait()})"})

    def send(self, msg: dict) -> None:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def reply(self, deadline: float) -> dict:
        try:
            return self.replies.get(timeout=max(_left(deadline), 0.01))
        except queue.Empty:
            raise SegmentTimeout("a worker did not answer in the time left") from None

    @staticmethod
    def close_all(workers: list["Worker"], grace_s: float = 5.0) -> None:
        """Ask every worker to quit; kill those still busy after ``grace_s``."""
        for w in workers:
            if w.proc.poll() is None:
                try:
                    w.send({"op": "quit"})
                except (OSError, ValueError):
                    pass
        end = time.monotonic() + grace_s
        for w in workers:
            try:
                w.proc.wait(timeout=max(end - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()


def choose_best(rounds: list[dict], tolerance: float = TIE_TOLERANCE) -> int:
    """The smallest K whose aggregate throughput is within ``tolerance`` of the highest."""
    top = max(r["run_epochs_per_h"] for r in rounds)
    return min(r["k"] for r in rounds if r["run_epochs_per_h"] >= (1 - tolerance) * top)


# --- the check -------------------------------------------------------------------------------

class Check:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.sizes = SIZES[a.sizes]
        self.backend = a.compile_backend or self.sizes["compile_backend"]
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.json_path = self.out / "gpu_check.json"
        self.log_path = self.out / "gpu_check.log"
        self.log_path.write_text("")
        (self.out / "stderr.log").write_text("")
        self.deadline = T0 + a.budget
        self.device = torch.device(a.device)
        self.paper_base = dict(PAPER_LONGEST)
        self.subset = Path(a.subset) if a.subset else (DEFAULT_SUBSET if DEFAULT_SUBSET.exists()
                                                       else None)
        self.r: dict = {"check": "hpstudy gpu_check", "status": "running", "sizes": a.sizes,
                        "budget_s": a.budget,
                        "data": "synthetic: every timing trains on random uint8 images of "
                                "CIFAR's shape (3 x 32 x 32) with balanced labels; only the "
                                "accuracy segment reads real images (the subset)",
                        "segments": {}}

    # -- output
    def log(self, line: str = "") -> None:
        print(line, flush=True)
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    def save(self) -> None:
        self.r["wall_s"] = time.monotonic() - T0
        self.r["imported_packages"] = installed_packages()
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.r, indent=2, default=str) + "\n")
        tmp.replace(self.json_path)

    # -- the environment
    def environment(self) -> None:
        dev = self.device
        env = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "device": dev.type,
               "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
               "torch": torch.__version__, "python": platform.python_version(),
               "python_executable": sys.executable, "sys_prefix": sys.prefix,
               "cpu": cpu_name(), "cpus": (len(os.sched_getaffinity(0))
                                           if hasattr(os, "sched_getaffinity") else os.cpu_count()),
               "cpu_capability": getattr(getattr(torch.backends, "cpu", None),
                                         "get_cpu_capability", lambda: None)(),
               "torch_threads": torch.get_num_threads()}
        try:
            import torchvision
            env["torchvision"] = torchvision.__version__
        except Exception as e:      # the bench's reference needs it; recorded, not fatal
            env["torchvision"] = f"not importable ({_error(e)})"
        if dev.type == "cuda":
            p = torch.cuda.get_device_properties(dev)
            env.update(gpu_memory_gib=p.total_memory / 2**30,
                       gpu_capability=f"{p.major}.{p.minor}", cuda=torch.version.cuda,
                       cudnn=torch.backends.cudnn.version(), gpus=torch.cuda.device_count())
        self.r.update(env)
        self.log(f"hpstudy gpu_check: {env['device']} ({env['device_name']}), torch "
                 f"{env['torch']}, Python {env['python']} ({sys.executable}), "
                 f"{env['cpus']} CPUs ({env['cpu']}, {env['cpu_capability']}); sizes "
                 f"{self.a.sizes}, budget {self.a.budget:.0f} s")
        self.log(f"data: {SYNTHETIC} images of CIFAR's shape and dtype for every timing")

    # -- the segments
    def seg_plan(self, deadline: float) -> dict:
        """paper's distinct runs. ``plan.plan`` also locates each in a run store, which reads
        CIFAR-100 for its identity, and the GPU machine has no CIFAR-100: this is the same
        loop, the runs told apart by the same hash without a data identity."""
        from ..plan import cost, study_parameters
        from ..presets import load_preset
        from ..store import resolved_config, run_hash
        from ..studies import STUDIES

        params = study_parameters(load_preset("paper"), list(STUDIES))
        runs: dict = {}
        for name, p in params.items():
            if p.study.trains:
                for (lab, seed), cfg in p.run_configs().items():
                    runs.setdefault(run_hash(resolved_config(cfg), "-"),
                                    (cfg, f"{name} {lab} seed {seed}"))
        planned = list(runs.values())
        cfg, label = max(planned, key=lambda r: (cost(r[0]), r[1]))
        self.paper_base = {k: getattr(cfg, k) for k in PAPER_LONGEST}
        every = [max(getattr(c, "eval_every", 1), 1) for c, _ in planned]
        epochs = [c.epochs for c, _ in planned]
        out = {"preset": "paper", "runs": len(planned), "epochs": sum(epochs),
               # validated epochs: every eval_every-th and the last
               "scored_epochs": sum(math.ceil(e / k) for e, k in zip(epochs, every)),
               "runs_by_epochs": {str(e): epochs.count(e) for e in sorted(set(epochs))},
               "longest": {**self.paper_base, "label": label}}
        self.log(f"paper: {out['runs']} runs, {out['epochs']:,} epochs "
                 f"({', '.join(f'{n} x {e}' for e, n in out['runs_by_epochs'].items())}); "
                 f"longest: width {cfg.width}, batch {cfg.batch_size}, {cfg.precision}, "
                 f"compile {cfg.compile}")
        return out

    def seg_paper_epoch(self, deadline: float) -> dict:
        s, dev = self.sizes, self.device
        variants = []
        self.log(f"paper epoch: width {s['width']}, batch {s['batch_size']}, {s['n_train']:,} "
                 f"train + {s['n_val']:,} val {SYNTHETIC} images; fp32/bf16 x compile on/off")
        train = synthetic_split(s["n_train"], 0, dev)
        val = synthetic_split(s["n_val"], 1, dev)
        for i, (precision, comp) in enumerate(VARIANTS):
            v = {"precision": precision, "compile": comp, "data": SYNTHETIC}
            later = (len(VARIANTS) - i - 1) * 5
            limit = min(s["variant_cap_s"], _left(deadline) - later)
            if limit < 2:
                v.update(status="skipped", reason=f"{_left(deadline):.0f} s left of the segment")
                self.log(f"  {precision} compile {comp}: skipped ({v['reason']})")
                variants.append(v)
                continue
            t = time.perf_counter()
            tr = None
            try:
                with time_limit(limit):
                    cfg = paper_config(self.paper_base, s, dev, precision=precision, compile=comp)
                    tr = Trainer(cfg, dev, train, val, self.backend)
                    v["compile_backend"] = tr.compile_backend
                    v["warm_up_s"] = tr.warm_up(s["warmup_steps"])
                    v.update(tr.epoch())
                v["status"] = "ok"
                self.log(f"  {precision} compile {comp:<3}: epoch {v['epoch_s']:7.2f} s (train "
                         f"{v['train_img_s']:8.0f} img/s, eval {v['eval_img_s']:8.0f} img/s), "
                         f"warm-up {v['warm_up_s']:.1f} s, train loss {v['train_loss']:.3f}"
                         + (f", peak {v['peak_mem_mb']:.0f} MB" if v["peak_mem_mb"] else "")
                         + f"  [{SYNTHETIC}]")
            except (Exception, SegmentTimeout) as e:
                v.update(status="error", error=_error(e), traceback=_tail(e))
                self.log(f"  {precision} compile {comp}: FAILED {_error(e)}")
            v["seconds"] = time.perf_counter() - t
            variants.append(v)
            del tr
            _free(dev)
        ok = [v for v in variants if v["status"] == "ok"]
        if not ok:
            self.r["segments"]["paper_epoch"]["variants"] = variants
            raise RuntimeError("every variant failed: " + "; ".join(
                f"{v['precision']}/{v['compile']}: {v.get('error', v.get('reason'))}"
                for v in variants))
        fastest = min(ok, key=lambda v: v["epoch_s"])
        return {"data": SYNTHETIC, "width": s["width"], "batch_size": s["batch_size"],
                "train_images": s["n_train"], "val_images": s["n_val"], "variants": variants,
                "fastest": f"{fastest['precision']} compile {fastest['compile']}"}

    def _paper_compile(self) -> tuple[str, str]:
        """The compile setting runs_at_once uses: paper's own, unless compiling failed."""
        comp = "on" if resolve_compile(self.paper_base["compile"], self.device) else "off"
        seg = self.r["segments"].get("paper_epoch", {})
        same = [v for v in seg.get("variants", []) if v["precision"] == "fp32"
                and v["compile"] == comp]
        if comp == "on" and same and same[0]["status"] != "ok":
            return "off", "compile failed in paper_epoch, so the runs train without it"
        return comp, f"paper's setting (compile {self.paper_base['compile']})"

    def seg_runs_at_once(self, deadline: float) -> dict:
        s, dev = self.sizes, self.device
        cpus = self.r.get("cpus") or os.cpu_count() or 1
        ks = sorted(set(self.a.ks or s["ks"]))
        comp, why = self._paper_compile()
        cfg = paper_config(self.paper_base, s, dev, compile=comp)
        threads = lambda k: s["threads"] or (1 if dev.type == "cuda"  # noqa: E731
                                             else max(1, cpus // k))
        self.log(f"runs at once: K = {', '.join(map(str, ks))}, one process per run, "
                 f"{cfg.precision}, compile {comp} ({why}); {SYNTHETIC} images")
        workers, rounds = [], []
        out = {"data": SYNTHETIC, "precision": cfg.precision, "compile": comp,
               "compile_note": why, "train_images": s["n_train"], "val_images": s["n_val"],
               "width": s["width"], "batch_size": s["batch_size"],
               "threads_note": (f"{s['threads']} torch thread per run (sizes {self.a.sizes})"
                                if s["threads"] else
                                "1 torch thread per run, as a Ray task with num_cpus=1"
                                if dev.type == "cuda" else "CPU threads split between the runs"),
               "tie_tolerance": TIE_TOLERANCE, "rounds": rounds}
        try:
            t = time.perf_counter()
            for i in range(max(ks)):
                workers.append(Worker({"device": dev.type, "config": cfg.to_dict(), "seed": i,
                                       "n_train": s["n_train"], "n_val": s["n_val"],
                                       "warmup_steps": s["warmup_steps"],
                                       "compile_backend": self.backend,
                                       "threads": threads(max(ks))}))
            ready, failed = [], []
            for w in workers:
                msg = w.reply(deadline)
                (ready if msg.get("ready") else failed).append((w, msg))
            out["start_up_s"] = time.perf_counter() - t
            # a run's start-up: interpreter, imports, data, model, compile and warm-up
            out["setup_s"] = [m["received"] - w.started for w, m in ready]
            if failed:
                out["worker_errors"] = [m.get("error") for _, m in failed]
                self.log(f"  {len(failed)} of {len(workers)} workers failed to start: "
                         f"{failed[0][1].get('error')}")
            self.log(f"  {len(ready)} workers ready in {out['start_up_s']:.1f} s (each: set-up "
                     f"and warm-up, median {statistics.median(out['setup_s'] or [0]):.1f} s)")
            per_epoch_1 = None
            for k in ks:
                if k > len(ready):
                    rounds.append({"k": k, "status": "skipped",
                                   "reason": f"only {len(ready)} workers started"})
                    continue
                guess = (per_epoch_1 or 0) * k
                if per_epoch_1 is not None and guess * 1.2 + 2 > _left(deadline):
                    rounds.append({"k": k, "status": "skipped",
                                   "reason": f"about {guess:.0f} s needed, "
                                             f"{_left(deadline):.0f} s left"})
                    self.log(f"  K={k}: skipped, {_left(deadline):.0f} s left")
                    continue
                rnd = self._round(k, [w for w, _ in ready[:k]], threads(k), deadline)
                rounds.append(rnd)
                if rnd["status"] != "ok":
                    self.log(f"  K={k}: FAILED {rnd['error']}")
                    if rnd.get("timed_out"):
                        break
                    continue
                per_epoch_1 = rnd["wall_s"] if k == 1 else (per_epoch_1 or rnd["wall_s"] / k)
                self.log(f"  K={k}: {k} epochs at once in {rnd['wall_s']:7.2f} s wall: "
                         f"{rnd['s_per_run_epoch']:6.2f} s per run-epoch, "
                         f"{rnd['train_img_s']:8.0f} train img/s in all, "
                         f"{rnd['run_epochs_per_h']:7.0f} run-epochs/h  [{SYNTHETIC}]")
        except SegmentTimeout as e:         # starting the workers took the time: keep what ran
            out["timed_out"] = _error(e)
            self.log(f"  timed out: {e}")
        finally:
            Worker.close_all(workers)
        done = {r["k"] for r in rounds}
        rounds += [{"k": k, "status": "skipped", "reason": "the segment's time ran out"}
                   for k in ks if k not in done]
        ok = [r for r in rounds if r["status"] == "ok"]
        if not ok:
            self.r["segments"]["runs_at_once"].update(out)     # what was tried, with the error
            raise RuntimeError("no round of runs at once finished: "
                               + "; ".join(f"K={r['k']}: {r.get('error', r.get('reason'))}"
                                           for r in rounds) if rounds else "no worker started")
        out["best_k"] = choose_best(ok)
        self.log(f"  best K = {out['best_k']} (highest aggregate throughput; within "
                 f"{100 * TIE_TOLERANCE:.0f}% the smaller K): --runs-per-gpu {out['best_k']}")
        return out

    def _round(self, k: int, workers: list, threads: int, deadline: float) -> dict:
        """One timed epoch on each of ``k`` workers at once."""
        t = time.monotonic()
        try:
            for w in workers:
                w.send({"op": "epoch", "threads": threads})
            replies = [w.reply(deadline) for w in workers]
        except SegmentTimeout as e:
            return {"k": k, "status": "error", "error": _error(e), "timed_out": True}
        except OSError as e:                # a worker is gone (its pipe broke)
            return {"k": k, "status": "error", "error": _error(e)}
        wall = time.monotonic() - t
        bad = [m for m in replies if "error" in m]
        if bad:
            return {"k": k, "status": "error", "error": bad[0]["error"],
                    "traceback": bad[0].get("traceback")}
        n_train, n_val = replies[0]["train_images"], replies[0]["val_images"]
        return {"k": k, "status": "ok", "data": SYNTHETIC, "threads_per_run": threads,
                "wall_s": wall,
                "span_s": max(m["end"] for m in replies) - min(m["start"] for m in replies),
                "epoch_s": [m["epoch_s"] for m in replies],
                "train_s": [m["train_s"] for m in replies],
                "eval_s": [m["eval_s"] for m in replies],
                "train_loss": [m["train_loss"] for m in replies],
                "peak_mem_mb": [m["peak_mem_mb"] for m in replies],
                "run_epochs_per_h": k * 3600 / wall,
                "train_img_s": k * n_train / wall,
                "img_s": k * (n_train + n_val) / wall,
                "s_per_run_epoch": wall / k}

    def seg_bench(self, deadline: float) -> dict:
        from . import throughput as B

        b = self.sizes["bench"]
        root = SYNTHETIC + (f":{b['images']}" if b.get("images") else "")
        argv = ["--device", self.device.type, "--data-root", root, "--steps", str(b["steps"]),
                "--segments", str(b["segments"]), "--width", str(b["width"]),
                "--batch-size", str(b["batch_size"]), "--eval-images", str(b["eval_images"])]
        self.log(f"bench: hpstudy bench {' '.join(argv)}")
        r = B.run_bench(B.parse_args(argv), log=lambda line: self.log("  " + line))
        # bench's paper hours use its own PAPER_EPOCHS; the projection below uses the plan's
        for k in [k for k in r if k.endswith("_paper_h")] + ["paper_epochs"]:
            r.pop(k, None)
        r["data_detail"], r["data"] = r["data"], SYNTHETIC
        self.log(f"  train img/s: reference {r['reference_train_img_s']:.0f}, ours "
                 f"{r['ours_train_img_s']:.0f} ({r['speedup']:.2f}x); eval img/s: reference "
                 f"{r['reference_eval_img_s']:.0f}, ours {r['ours_eval_img_s']:.0f} "
                 f"({r['eval_speedup']:.2f}x); s per epoch (40k + 10k): reference "
                 f"{r['reference_epoch_s']:.1f}, ours {r['ours_epoch_s']:.1f}; ours "
                 f"{r['ours_precision']}, compile {r['ours_compile']}  [{SYNTHETIC}]")
        return r

    def seg_accuracy(self, deadline: float) -> dict:
        import numpy as np

        acc = self.sizes["accuracy"]
        path = self.subset
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            train = D.Split(*(torch.from_numpy(z[k]).to(torch.int64 if k != "x_train" else
                                                         torch.uint8)
                              for k in ("x_train", "fine_train", "coarse_train")))
            val = D.Split(*(torch.from_numpy(z[k]).to(torch.int64 if k != "x_val" else
                                                       torch.uint8)
                            for k in ("x_val", "fine_val", "coarse_val")))
        cfg = paper_config(self.paper_base, acc, self.device, width=acc["width"],
                           batch_size=acc["batch_size"], epochs=acc["epochs"], compile="off",
                           precision="fp32")
        self.log(f"accuracy: width {cfg.width}, {acc['epochs']} epochs on the real subset "
                 f"{path.name} ({len(train):,} train, {len(val):,} val images), fp32, "
                 f"lr {cfg.lr} {cfg.schedule}, weight decay {cfg.weight_decay}")
        tr = Trainer(cfg, self.device, train, val, data_label="real CIFAR-100 subset")
        curve = []
        for _ in range(acc["epochs"]):
            e = tr.epoch()
            curve.append(e["val_acc"])
            if e["diverged"]:
                break
        final = curve[-1]
        correct = round(final * len(val))
        out = {"data": f"real CIFAR-100 subset ({path})", "subset_meta": meta,
               "width": cfg.width, "epochs": len(curve), "train_images": len(train),
               "val_images": len(val), "val_acc": final, "val_acc_by_epoch": curve,
               "correct": correct, "chance": CHANCE}
        try:
            from scipy.stats import binomtest
            out["p_above_chance"] = binomtest(correct, len(val), CHANCE,
                                              alternative="greater").pvalue
        except Exception:      # scipy missing or too old: the ratio still says it
            out["p_above_chance"] = None
        out["above_chance"] = bool(final > 2 * CHANCE and (out["p_above_chance"] is None
                                                           or out["p_above_chance"] < 1e-3))
        self.log(f"  val acc {100 * final:.2f}% after {len(curve)} epochs ({correct} of "
                 f"{len(val)}), chance {100 * CHANCE:.0f}%: "
                 + ("above chance" if out["above_chance"] else "NOT clearly above chance")
                 + (f" (binomial p = {out['p_above_chance']:.1e})"
                    if out["p_above_chance"] is not None else ""))
        return out

    def seg_projection(self, deadline: float) -> dict:
        segs = self.r["segments"]
        p = segs.get("plan", {})
        paper = ({k: p[k] for k in ("runs", "epochs", "scored_epochs")} if p.get("status") == "ok"
                 else {**PAPER_FALLBACK, "scored_epochs": PAPER_FALLBACK["epochs"]})
        rao = segs.get("runs_at_once", {})
        ok = [r for r in rao.get("rounds", []) if r["status"] == "ok"]
        if ok:
            k = rao["best_k"]
            rnd = next(r for r in ok if r["k"] == k)
            s_per_run_epoch = rnd["wall_s"] / k
            f_train = statistics.fmean(t / e for t, e in zip(rnd["train_s"], rnd["epoch_s"]))
            basis = f"runs_at_once, K = {k}"
            setup = statistics.median(rao["setup_s"]) if rao.get("setup_s") else None
        else:
            pe = segs.get("paper_epoch", {})
            ok_v = [v for v in pe.get("variants", []) if v["status"] == "ok"
                    and v["precision"] == self.paper_base["precision"]]
            if not ok_v:
                raise Skip("neither runs_at_once nor an fp32 paper_epoch measured")
            v = min(ok_v, key=lambda v: v["epoch_s"])
            k, s_per_run_epoch = 1, v["epoch_s"]
            f_train = v["train_s"] / v["epoch_s"]
            basis = f"paper_epoch ({v['precision']}, compile {v['compile']}), one run at a time"
            setup = v.get("warm_up_s")
        # every epoch trains; validation costs (1 - f_train) of a run-epoch, paid per scored epoch
        run_epochs = paper["epochs"] * f_train + paper["scored_epochs"] * (1 - f_train)
        seconds = run_epochs * s_per_run_epoch
        out = {"preset": "paper", **paper, "best_k": k, "basis": basis,
               "data": SYNTHETIC, "sizes": self.a.sizes,
               "s_per_run_epoch": s_per_run_epoch, "train_fraction": f_train,
               "projected_s": seconds, "hours": seconds / 3600,
               "assumes": "K runs always running at the measured throughput; the tail (fewer "
                          "than K runs left), per-run start-up and checkpoint writes left out"}
        if setup is not None:
            waves = math.ceil(paper["runs"] / k)
            out["start_up_s_per_run"] = setup
            out["hours_with_start_up"] = (seconds + waves * setup) / 3600
        if self.a.sizes != "full":
            out["note"] = "tiny sizes: a rehearsal of the arithmetic, not a projection"
        self.r["best_k"] = k
        self.r["projection"] = out
        self.log(f"projection: paper ({paper['runs']} runs, {paper['epochs']:,} epochs) on one "
                 f"{self.r.get('device_name')}: {out['hours']:.1f} h at K = {k} "
                 f"({s_per_run_epoch:.2f} s per run-epoch; {basis})"
                 + (f"; {out['hours_with_start_up']:.1f} h with per-run start-up"
                    if "hours_with_start_up" in out else "")
                 + ("  [tiny sizes: rehearsal only]" if self.a.sizes != "full" else ""))
        return out

    # -- the schedule
    def run(self) -> int:
        segments = [("plan", self.seg_plan), ("paper_epoch", self.seg_paper_epoch),
                    ("runs_at_once", self.seg_runs_at_once), ("bench", self.seg_bench),
                    ("accuracy", self.seg_accuracy), ("projection", self.seg_projection)]
        need = self.sizes["need_s"]
        skip = set(self.a.skip or ())
        for i, (name, fn) in enumerate(segments):
            seg = self.r["segments"][name] = {}
            if name in skip:
                seg.update(status="skipped", reason="--skip")
                continue
            if name == "accuracy" and self.subset is None:
                seg.update(status="skipped", reason=f"no subset: run `python scripts/"
                           f"make_subset.py` first (writes {DEFAULT_SUBSET.relative_to(REPO_ROOT)})"
                           " or pass --subset PATH")
                self.log(f"accuracy: skipped ({seg['reason']})")
                continue
            later = sum(need[n] for n, _ in segments[i + 1:] if n not in skip
                        and not (n == "accuracy" and self.subset is None))
            left = _left(self.deadline)
            # what the later segments' needs leave; too little, and this one (the earlier
            # comes first) gets its own need while the time holds
            limit = left - later
            if limit < need[name]:
                if left < need[name] or left <= 0:
                    seg.update(status="skipped", reason=f"over budget: {left:.0f} s left, "
                               f"this segment needs about {need[name]} s")
                    self.log(f"{name}: skipped ({seg['reason']})")
                    self.save()
                    continue
                limit = need[name]
            t = time.perf_counter()
            try:
                with time_limit(limit + 1):
                    seg.update(fn(time.monotonic() + limit))
                seg["status"] = "ok"
            except Skip as e:
                seg.update(status="skipped", reason=str(e))
                self.log(f"{name}: skipped ({e})")
            except Interrupted as e:
                seg.update(status="error", error=f"interrupted ({e})")
                self.r["status"] = "interrupted"
                self.save()
                self.log(f"{name}: interrupted ({e}); results so far in {self.json_path}")
                return 3
            except (Exception, SegmentTimeout) as e:
                seg.update(status="error", error=_error(e), traceback=_tail(e))
                self.log(f"{name}: FAILED {_error(e)}")
            seg["seconds"] = time.perf_counter() - t
            self.save()
        errors = [n for n, s in self.r["segments"].items() if s.get("status") == "error"]
        errors += [f"paper_epoch {v['precision']}/{v['compile']}" for v in
                   self.r["segments"].get("paper_epoch", {}).get("variants", [])
                   if v["status"] == "error"]
        errors += [f"runs_at_once K={r['k']}" for r in
                   self.r["segments"].get("runs_at_once", {}).get("rounds", [])
                   if r["status"] == "error"]
        self.r["errors"] = errors
        self.r["status"] = "complete"
        self.save()
        self.log(f"done in {time.monotonic() - T0:.0f} s"
                 + (f"; failed: {', '.join(errors)}" if errors else "; no segment failed")
                 + f"; results in {self.json_path} and {self.log_path} (tracebacks and "
                 f"warnings of every process in {self.out / 'stderr.log'})")
        return 1 if errors else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hpstudy.bench.gpu_check",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu-results", help="folder for gpu_check.json and "
                   "gpu_check.log (default gpu-results)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cuda (default) or cpu (the rehearsal)")
    p.add_argument("--sizes", default="full", choices=tuple(SIZES),
                   help="full: paper's shapes (default); tiny: the rehearsal's")
    p.add_argument("--subset", default=None, metavar="NPZ",
                   help="real images for the accuracy check (default "
                        f"{DEFAULT_SUBSET.relative_to(REPO_ROOT)} when present; "
                        "scripts/make_subset.py writes it)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                   help=f"seconds the whole check may take (default {DEFAULT_BUDGET_S}); "
                        "segments that do not fit are skipped and recorded")
    p.add_argument("--ks", type=lambda s: [int(k) for k in s.split(",")], default=None,
                   metavar="K,K,...", help="runs at once to measure (default 1,2,4,8)")
    p.add_argument("--skip", nargs="+", default=None, metavar="SEGMENT",
                   choices=("plan", "paper_epoch", "runs_at_once", "bench", "accuracy",
                            "projection"), help="segments to leave out")
    p.add_argument("--compile-backend", default=None, metavar="NAME",
                   help="torch.compile backend (default inductor; aot_eager with --sizes tiny)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.ks and min(a.ks) < 1:
        p.error("--ks: every K must be >= 1")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(list(sys.argv[1:] if argv is None else argv))
    if a.worker:
        return worker_main(json.loads(a.worker))

    def interrupt(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    n = SIZES[a.sizes]["threads"]
    if n:
        os.environ["OMP_NUM_THREADS"] = str(n)      # the processes this one starts, too
        torch.set_num_threads(n)
    check = Check(a)
    copy = StderrCopy(check.out / "stderr.log")
    try:
        return _run(check, a)
    finally:
        copy.close()


def _run(check: "Check", a: argparse.Namespace) -> int:
    if a.device == "cuda" and not torch.cuda.is_available():
        check.r.update(status="error", error="CUDA is not available (torch "
                       f"{torch.__version__}, built with CUDA {torch.version.cuda})")
        check.save()
        check.log(f"error: {check.r['error']}; use --device cpu for the rehearsal")
        return 2
    try:
        try:
            check.environment()
        except Exception as e:          # recorded; the measurements may still work
            check.r["environment_error"] = _error(e)
            check.log(f"environment: FAILED {_error(e)}")
        check.save()
        return check.run()
    except Interrupted as e:
        check.r["status"] = "interrupted"
        check.save()
        return 3


if __name__ == "__main__":
    sys.exit(main())
