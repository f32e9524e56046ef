"""The run store: one folder per resolved config, so nothing is trained twice or lost.

``runs/<hash>/`` holds ``config.json``, ``history.csv`` (a row per finished epoch),
``checkpoint.pt`` (+ ``checkpoint.prev.pt``, the epoch before), ``model.pt`` once finished and
``status``. Every file is written to a temporary name and renamed, so a crash never leaves a
half-written file under a real name; a file damaged anyway is detected, named, and the run
restarts from the last good state.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import data as D
from .config import Config
from .data import subset_indices
from .device import resolve_compile, resolve_device, resolve_precision
from .metrics import (CHECKPOINT_KEYS, HISTORY_COLUMNS, METRICS, WEIGHTS_FORMAT,
                      WEIGHTS_KEYS)
from .model import MobileNet
from .train import fit

# 2: "device" and "compile" left the hash (version 1 hashed them).
HASH_VERSION = 2
HOST = socket.gethostname()
FINAL = ("done", "diverged")
# Keys that change speed, location or the machine but not the numbers a run produces. A run is
# found by its hash on whatever machine asks: a CPU head rendering the runs a GPU worker
# trained must compute the same hash, though "device" resolves to "cpu" there and "cuda" on
# the worker, and torch.compile ("auto") is on for CUDA only. Different CPU kinds round
# differently in the last bits too, and were never hashed either. What a run actually used
# stays recorded in its config.json ("resolved"). The resolved precision is hashed: bf16 and
# fp32 give different numbers (so "auto", bf16 on CUDA and fp32 elsewhere, matches across
# machines only where it resolves alike; a study meant for both names its precision).
NOT_HASHED = ("data_root", "eval_batch_size", "device", "compile")


class StoreError(RuntimeError):
    """A file of the run store is damaged; the message names it."""


def store_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("HPSTUDY_RUNS") or "runs").expanduser().resolve()


def resolved_config(cfg: Config) -> dict:
    """The config with 'auto' settled for this machine: what the run actually does."""
    device = resolve_device(cfg.device)
    d = cfg.to_dict()
    d["device"] = device.type
    d["precision"] = resolve_precision(cfg.precision, device)
    d["compile"] = "on" if resolve_compile(cfg.compile, device) else "off"
    return d


def run_hash(resolved: dict, data_identity: str) -> str:
    key = {k: v for k, v in resolved.items() if k not in NOT_HASHED}
    if key.get("eval_every", 1) == 1:
        # added after HASH_VERSION 2: every-epoch scoring keeps the hashes stored runs have
        key.pop("eval_every", None)
    key["data"] = data_identity
    key["hash_version"] = HASH_VERSION
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


# --- atomic files ----------------------------------------------------------------------------

def atomic_write(path: Path, payload: bytes) -> None:
    # host and pid: two machines sharing a store (NFS) never write the same temporary file
    tmp = path.with_name(f".{path.name}.{HOST}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_torch_save(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def history_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in HISTORY_COLUMNS})
    return out.getvalue().encode()


def read_history(path: Path) -> pd.DataFrame:
    """Parse and check ``history.csv``: columns, numeric values, epochs 1..n in order.

    Strict on purpose: a file cut short (disk full, crash) must not come back as a row with
    missing fields read as NaN or a number with its last digits gone. Every line written here
    ends with a newline and holds every field; only the metrics of a diverged epoch may be
    ``nan``/``inf``.
    """
    bookkeeping = [c for c in HISTORY_COLUMNS if c not in METRICS]   # epoch, lr, seconds
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except Exception as e:
        raise StoreError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if text and not text.endswith("\n"):
        raise StoreError(f"{path}: truncated (the last line is incomplete)")
    lines = list(csv.reader(io.StringIO(text)))
    header = lines[0] if lines else []
    if header != HISTORY_COLUMNS:
        raise StoreError(f"{path}: columns {header}, expected {HISTORY_COLUMNS}")
    values = []
    for i, fields in enumerate(lines[1:], start=2):
        if len(fields) != len(HISTORY_COLUMNS) or any(not v.strip() for v in fields):
            raise StoreError(f"{path}: line {i} is incomplete ({len(fields)} of "
                             f"{len(HISTORY_COLUMNS)} fields, or an empty field)")
        try:
            row = [float(v) for v in fields]
        except ValueError as e:
            raise StoreError(f"{path}: line {i}: non-numeric value ({e})") from None
        for name in bookkeeping:
            v = row[HISTORY_COLUMNS.index(name)]
            if not math.isfinite(v) or (name == "epoch" and not v.is_integer()):
                raise StoreError(f"{path}: line {i}: bad {name} {v!r}")
        values.append(row)
    df = pd.DataFrame(values, columns=HISTORY_COLUMNS, dtype=float).astype({"epoch": int})
    if list(df["epoch"]) != list(range(1, len(df) + 1)):
        raise StoreError(f"{path}: epochs are not 1..{len(df)} in order")
    return df


def load_checkpoint(path: Path) -> dict:
    """Load with ``weights_only=True`` (a pickle that would run code is refused) and check it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise StoreError(f"{path}: cannot be loaded ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    # keys beyond CHECKPOINT_KEYS (older checkpoints' "scheduler") are ignored
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        raise StoreError(f"{path}: not a checkpoint of this tool (missing keys)")
    if len(state["history"]) != state["epoch"]:
        raise StoreError(f"{path}: holds {len(state['history'])} history rows for epoch "
                         f"{state['epoch']}")
    return state


def weights_file(cfg: Config, state_dict: dict) -> dict:
    """What ``model.pt`` holds: the weights and what it takes to build their model
    (``metrics.WEIGHTS_KEYS``), so that the file loads without its run's config.json."""
    out = {"format": WEIGHTS_FORMAT, "width": cfg.width, "num_classes": D.NUM_CLASSES}
    if hasattr(cfg, "init"):
        out["init"] = cfg.init      # recorded for the reader; loading overwrites every weight
    out["state_dict"] = state_dict
    return out


def load_weights(path: str | os.PathLike, width: float | None = None,
                 num_classes: int | None = None) -> MobileNet:
    """A MobileNet from a ``model.pt``, loaded with ``weights_only=True``.

    The file says its width and number of classes; ``width``/``num_classes``, when given, must
    agree with it. A legacy ``model.pt`` (a bare state dict) does not say them: it loads when
    the caller passes ``width`` (``num_classes`` defaults to 100).
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and "state_dict" in obj:
            missing = [k for k in WEIGHTS_KEYS if k not in obj]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            for name, given in (("width", width), ("num_classes", num_classes)):
                if given is not None and given != obj[name]:
                    raise ValueError(f"the file holds {name} {obj[name]}, expected {given}")
            width, num_classes, sd = obj["width"], obj["num_classes"], obj["state_dict"]
        else:
            if width is None:
                raise ValueError("a bare state dict (an older model.pt) does not say its "
                                 "width; pass width=")
            sd = obj
        model = MobileNet(num_classes or D.NUM_CLASSES, width)
        model.load_state_dict(sd)
    except Exception as e:
        raise StoreError(f"{path}: cannot be loaded as MobileNet weights "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return model.eval()


# --- locking ---------------------------------------------------------------------------------

@contextlib.contextmanager
def run_lock(d: Path, log=print):
    """One process per run folder; a second one waits, saying who holds it."""
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            f.seek(0)
            holder = f.read().strip() or "another process"
            log(f"run {d.name} is busy (held by {holder}); waiting for it to finish")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {HOST}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def run_busy(d: Path) -> bool:
    """Whether a process holds the run folder's lock (it is training or resuming it)."""
    lock = d / "lock"
    if not lock.exists():
        return False
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


# --- runs ------------------------------------------------------------------------------------

@dataclass
class Run:
    """A stored run: its config, status, per-epoch history and (lazily) its trained model."""
    dir: Path
    config: Config
    status: str
    history: pd.DataFrame
    resumed_from: int = 0       # epochs already done when this process picked the run up
    trained: bool = False       # whether this process trained any epoch of it
    _model: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def hash(self) -> str:
        return self.dir.name

    @property
    def model(self) -> torch.nn.Module | None:
        """The final model (None for a diverged run), loaded with ``weights_only=True``; its
        width comes from ``model.pt`` (checked against the config's)."""
        if self._model is None and (self.dir / "model.pt").exists():
            self._model = load_weights(self.dir / "model.pt", self.config.width)
        return self._model

    @property
    def final(self) -> dict:
        return self.history.iloc[-1].to_dict() if len(self.history) else {}

    @property
    def best(self) -> dict:
        h = self.history.dropna(subset=["val_acc"])
        return h.loc[h["val_acc"].idxmax()].to_dict() if len(h) else {}

    @classmethod
    def load(cls, d: Path) -> "Run":
        d = Path(d)
        try:
            meta = json.loads((d / "config.json").read_text())
            cfg = Config.from_dict({k: v for k, v in meta.items() if k in Config.keys()})
        except Exception as e:
            raise StoreError(f"{d / 'config.json'}: unreadable ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
        status = (d / "status").read_text().strip() if (d / "status").exists() else "new"
        hist = read_history(d / "history.csv") if (d / "history.csv").exists() \
            else pd.DataFrame(columns=HISTORY_COLUMNS)
        return cls(d, cfg, status, hist)


class RunDir:
    """Reads and writes one run folder; knows how to recover from damaged files."""

    def __init__(self, d: Path, log=print):
        self.d = d
        self.log = log

    def path(self, name: str) -> Path:
        return self.d / name

    @property
    def status(self) -> str:
        p = self.path("status")
        return p.read_text().strip() if p.exists() else "new"

    def set_status(self, s: str) -> None:
        atomic_write(self.path("status"), (s + "\n").encode())

    def write_config(self, cfg: Config, resolved: dict, data: D.CIFAR100) -> None:
        meta = {**cfg.to_dict(), "resolved": resolved, "data": data.describe(),
                "data_identity": data.identity, "hash_version": HASH_VERSION,
                "torch": torch.__version__}
        atomic_write(self.path("config.json"), json.dumps(meta, indent=2).encode())

    def save_epoch(self, state: dict) -> None:
        """The new checkpoint replaces the old, which is kept as ``checkpoint.prev.pt``."""
        ck = self.path("checkpoint.pt")
        if ck.exists():
            os.replace(ck, self.path("checkpoint.prev.pt"))
        atomic_torch_save(ck, state)
        atomic_write(self.path("history.csv"), history_csv(state["history"]))

    def save_weights(self, cfg: Config, model: torch.nn.Module | dict) -> None:
        """``model.pt``: a model's (or a state dict's) weights, see ``weights_file``."""
        sd = model.state_dict() if isinstance(model, torch.nn.Module) else model
        atomic_torch_save(self.path("model.pt"), weights_file(cfg, sd))

    def last_good_state(self) -> dict | None:
        """The newest checkpoint that loads and checks out; damaged ones are named and moved
        aside (``*.corrupt``) so they are never loaded again."""
        for name in ("checkpoint.pt", "checkpoint.prev.pt"):
            p = self.path(name)
            if not p.exists():
                continue
            try:
                return load_checkpoint(p)
            except StoreError as e:
                self.log(f"warning: {e}; moved aside to {p.name}.corrupt")
                os.replace(p, p.with_name(p.name + ".corrupt"))
        return None

    def check_config(self, cfg: Config, resolved: dict, data: D.CIFAR100) -> None:
        """A stored ``config.json`` that does not parse (cut short, garbage) is named and
        written again: its content follows from the config this folder's hash stands for."""
        p = self.path("config.json")
        if not p.exists():
            return
        try:
            json.loads(p.read_text())
        except Exception as e:
            self.log(f"warning: {p}: unreadable ({type(e).__name__}); written again")
            self.write_config(cfg, resolved, data)

    def finished(self, expect_epochs: int) -> Run | None:
        """The stored result if the run is finished and its files check out, else None.

        A damaged ``history.csv`` or ``model.pt`` of a finished run is named and rebuilt from
        the final checkpoint; when that is gone too the status becomes ``damaged`` and the
        caller resumes from the last good checkpoint (or trains again). A diverged run's
        history is never rebuilt from a checkpoint (which lacks the diverged epoch): it is
        resumed, and diverges again at the same epoch.
        """
        status = self.status
        if status not in FINAL:
            return None
        problem = None
        try:
            run = Run.load(self.d)
        except StoreError as e:
            run, problem = None, str(e)
        if run is not None and status == "done" and len(run.history) != expect_epochs:
            problem = (f"{self.path('history.csv')}: says done but holds {len(run.history)} "
                       f"of {expect_epochs} epochs")
        if problem is not None and status == "done":
            state = self.last_good_state()
            if state is not None and state["epoch"] == expect_epochs:
                self.log(f"warning: {problem}; rebuilt it from {self.path('checkpoint.pt').name}")
                atomic_write(self.path("history.csv"), history_csv(state["history"]))
                run, problem = Run.load(self.d), None
        if problem is not None:
            self.log(f"warning: {problem}; the run is resumed from its last good checkpoint "
                     f"(or trained again)")
            self.set_status("damaged")
            return None
        if status == "done":
            mp = self.path("model.pt")
            try:
                if not mp.exists():
                    raise StoreError(f"{mp}: missing")
                run._model = load_weights(mp, run.config.width)
            except StoreError as e:
                if mp.exists():
                    os.replace(mp, mp.with_name(mp.name + ".corrupt"))
                    e = StoreError(f"{e}; moved aside to {mp.name}.corrupt")
                state = self.last_good_state()
                if state is None or state["epoch"] != expect_epochs:
                    self.log(f"warning: {e}; the run is resumed from its last good checkpoint "
                             f"(or trained again)")
                    self.set_status("damaged")
                    return None
                self.save_weights(run.config, state["model"])
                run._model = load_weights(mp, run.config.width)
                self.log(f"warning: {e}; rebuilt {mp.name} from {self.path('checkpoint.pt').name}")
        return run


class Terminated(KeyboardInterrupt):
    """SIGTERM while a run trains (SLURM time limit, preemption, scancel, kill): the run is
    kept ``interrupted`` at its last finished epoch, as on Ctrl-C."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM raises ``Terminated`` inside the block (main thread only: elsewhere Python
    cannot set handlers); the previous handler is restored afterwards."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def run(config: Config | dict, *, root: str | os.PathLike | None = None, log=print) -> Run:
    """The run for ``config``: from the store if finished, resumed if partial, else trained."""
    cfg = config if isinstance(config, Config) else Config.from_dict(config)
    data = D.load_cifar100(cfg.data_root)
    subset_indices(cfg, data)   # a subset size the data cannot give fails before anything runs
    resolved = resolved_config(cfg)
    d = store_root(root) / run_hash(resolved, data.identity)
    rd = RunDir(d, log)
    with run_lock(d, log):
        # half-written temporary files of a process that was killed mid-write
        for tmp in d.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        rd.check_config(cfg, resolved, data)
        done = rd.finished(cfg.epochs)
        if done is not None:
            log(f"run {d.name}: {done.status}, {len(done.history)} epochs (from the store)")
            return done
        rd.write_config(cfg, resolved, data)
        state = rd.last_good_state()
        start = state["epoch"] if state else 0
        if state is None:
            start = 0
            for p in ("history.csv", "model.pt"):
                if rd.path(p).exists():
                    os.remove(rd.path(p))
        log(f"run {d.name}: " + (f"resuming after epoch {start}" if start else "training") +
            f" ({describe(cfg)})")
        rd.set_status("running")
        try:
            with _sigterm_interrupts():
                out = fit(cfg, data, state=state, on_epoch=rd.save_epoch, log=log)
        except (KeyboardInterrupt, SystemExit):   # Ctrl-C, SIGTERM, sys.exit in a handler
            rd.set_status("interrupted")
            last = rd.last_good_state()
            log(f"interrupted: run {d.name} is kept at epoch {last['epoch'] if last else 0} "
                f"in {d}; run the same command again to resume")
            raise
        except BaseException:
            rd.set_status("failed")
            raise
        atomic_write(rd.path("history.csv"), history_csv(out["history"]))
        if out["status"] == "done":
            rd.save_weights(cfg, out["model"])
        rd.set_status(out["status"])
    result = Run.load(d)
    result.resumed_from, result.trained = start, True
    return result


def describe(cfg: Config) -> str:
    base = Config()
    parts = [f"{k}={v}" for k, v in cfg.to_dict().items()
             if v != getattr(base, k) or k in ("lr", "epochs")]
    return ", ".join(parts)


def stored_runs(root: str | os.PathLike | None = None):
    """Every run of the store that loads (damaged folders are skipped; ``list_runs`` names
    them)."""
    for d in sorted(store_root(root).glob("*/config.json")):
        try:
            yield Run.load(d.parent)
        except Exception:
            continue


def list_runs(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every stored run: config columns, status, final and best validation metrics."""
    rows = []
    for d in sorted(store_root(root).glob("*/config.json")):
        try:
            r = Run.load(d.parent)
        except Exception as e:  # a damaged folder is listed, not fatal
            rows.append({"hash": d.parent.name, "status": f"unreadable: {e}"})
            continue
        final, best = r.final, r.best
        rows.append({"hash": r.hash, **r.config.to_dict(), "status": r.status,
                     "epochs_done": len(r.history),
                     **{f"final_{k}": final.get(k) for k in METRICS},
                     "best_val_acc": best.get("val_acc"), "best_epoch": best.get("epoch"),
                     "dir": str(r.dir)})
    return pd.DataFrame(rows)


def locate(cfg: Config, root: str | os.PathLike | None = None) -> Path:
    """The folder the run of ``cfg`` has (or will have) in the store."""
    data = D.load_cifar100(cfg.data_root)
    return store_root(root) / run_hash(resolved_config(cfg), data.identity)


def stored_status(d: Path) -> str:
    """``missing`` (no folder), else the status file's word (``new`` before the first)."""
    if not (d / "config.json").exists():
        return "missing"
    p = d / "status"
    return p.read_text().strip() if p.exists() else "new"


def find_run(config: Config | dict, *, root: str | os.PathLike | None = None) -> Run:
    """The finished run of ``config`` from the store, never trained here (rendering with
    ``no_train``); a run that is not finished is an error naming its config."""
    cfg = config if isinstance(config, Config) else Config.from_dict(config)
    d = locate(cfg, root)
    status = stored_status(d)
    if status not in FINAL:
        raise StoreError(f"run {d.name} is {status} in {d.parent} and no_train is set, so "
                         f"nothing is trained here: {describe(cfg)}. Train it first (hpstudy "
                         f"report without --no-train, or hpstudy train with these values).")
    return Run.load(d)
