"""The runs of a store: ``run(config)`` trains, resumes or returns one; lookups list them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from .. import data as D
from ..config import Config, describe
from ..data import subset_indices
from ..schema import CONFIG_FILE, FINAL, HISTORY_FILE, METRICS, WEIGHTS_FILE
from ..train import fit
from .files import StoreError, atomic_write, history_csv
from .identity import resolved_config, run_hash, store_root
from .lock import check_locking, run_lock
from .rundir import Run, RunDir, sigterm_interrupts


def run(config: Config | dict, *, root: str | os.PathLike | None = None, log=print) -> Run:
    """The run for ``config``: from the store if finished, resumed if partial, else trained."""
    cfg = config if isinstance(config, Config) else Config.from_dict(config)
    data = D.load_cifar100(cfg.data_root)
    subset_indices(cfg, data)   # a subset size the data cannot give fails before anything runs
    resolved = resolved_config(cfg)
    d = store_root(root) / run_hash(resolved, data.identity)
    check_locking(d.parent, log)
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
            for p in (HISTORY_FILE, WEIGHTS_FILE):
                if rd.path(p).exists():
                    os.remove(rd.path(p))
        log(f"run {d.name}: " + (f"resuming after epoch {start}" if start else "training") +
            f" ({describe(cfg)})")
        rd.set_status("running")
        try:
            with sigterm_interrupts():
                out = fit(cfg, data, state=state, on_epoch=rd.save_epoch, log=log)
        except (KeyboardInterrupt, SystemExit):   # Ctrl-C, SIGTERM, sys.exit in a handler
            rd.set_status("interrupted")
            last = rd.last_good_state()
            log(f"interrupted: run {d.name} is kept at epoch {last['epoch'] if last else 0} "
                f"in {d}; run the same command again to resume")
            raise
        except BaseException as e:
            try:
                rd.set_status("failed")
            except OSError as again:    # a full disk refuses this too: the status stays
                log(f"warning: {again}; run {d.name} keeps the status it had")
            if isinstance(e, OSError):
                last = rd.last_good_state()
                log(f"error: {e}; run {d.name} is kept at epoch {last['epoch'] if last else 0} "
                    f"in {d}; run the same command again to resume")
            raise
        atomic_write(rd.path(HISTORY_FILE), history_csv(out["history"]))
        if out["status"] == "done":
            rd.save_weights(cfg, out["model"])
        rd.set_status(out["status"])
    result = Run.load(d)
    result.resumed_from, result.trained = start, True
    return result


def stored_runs(root: str | os.PathLike | None = None):
    """Every run of the store that loads (damaged folders are skipped; ``list_runs`` names
    them)."""
    for d in sorted(store_root(root).glob(f"*/{CONFIG_FILE}")):
        try:
            yield Run.load(d.parent)
        except Exception:
            continue


def list_runs(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every stored run: config columns, status, final and best validation metrics."""
    rows = []
    for d in sorted(store_root(root).glob(f"*/{CONFIG_FILE}")):
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
    return RunDir(d).state


def remove_run(h: str, root: str | os.PathLike | None = None) -> Path:
    """Delete the run ``h`` of the store (``hpstudy runs --clear``); refused, naming why,
    when there is no such run or a process trains it now."""
    base = store_root(root)
    rd = RunDir(base / h)
    if "/" in h or h in (".", "..") or not rd.exists():
        raise StoreError(f"no run {h!r} under {base}")
    if rd.busy():
        raise StoreError(f"run {h} is in use by another process ({rd.holder()}); not removed")
    shutil.rmtree(rd.d)
    return rd.d


def find_run(config: Config | dict, *, root: str | os.PathLike | None = None) -> Run:
    """The finished run of ``config`` from the store, never trained here (rendering with
    ``no_train``); a run that is not finished is an error naming its config."""
    cfg = config if isinstance(config, Config) else Config.from_dict(config)
    d = locate(cfg, root)
    status = RunDir(d).state
    if status not in FINAL:
        raise StoreError(f"run {d.name} is {status} in {d.parent} and no_train is set, so "
                         f"nothing is trained here: {describe(cfg)}. Train it first (hpstudy "
                         f"report without --no-train, or hpstudy train with these values).")
    return Run.load(d)
