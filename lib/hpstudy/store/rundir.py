"""One run folder: ``RunDir`` is the only reader and writer of its files (``schema`` names them),
and ``Run`` is what a finished run gives its readers."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .. import data as D
from ..config import Config
from ..schema import (CHECKPOINT_FILE, CONFIG_FILE, FINAL, HISTORY_COLUMNS, HISTORY_FILE,
                      PREV_CHECKPOINT_FILE, STATUS_FILE, WEIGHTS_FILE)
from .files import (StoreError, StoreUnavailable, atomic_torch_save, atomic_write, history_csv,
                    load_checkpoint, load_weights, move_aside, read_bytes, read_history,
                    weights_file)
from .identity import HASH_VERSION
from .lock import lock_holder, run_busy


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
        if self._model is None and (self.dir / WEIGHTS_FILE).exists():
            self._model = load_weights(self.dir / WEIGHTS_FILE, self.config.width)
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
            meta = json.loads(read_bytes(d / CONFIG_FILE))
            cfg = Config.from_dict({k: v for k, v in meta.items() if k in Config.keys()})
        except StoreUnavailable:
            raise
        except Exception as e:
            raise StoreError(f"{d / CONFIG_FILE}: unreadable ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
        status = RunDir(d).status
        hist = read_history(d / HISTORY_FILE) if (d / HISTORY_FILE).exists() \
            else pd.DataFrame(columns=HISTORY_COLUMNS)
        return cls(d, cfg, status, hist)


class RunDir:
    """Reads and writes one run folder; knows how to recover from damaged files.

    The plan, the engines, ``hpstudy status`` and the exports ask a ``RunDir`` what a run
    folder holds (its state, progress, holder); none of them opens its files."""

    def __init__(self, d: str | os.PathLike, log=print):
        self.d = Path(d)
        self.log = log

    @property
    def hash(self) -> str:
        return self.d.name

    def path(self, name: str) -> Path:
        return self.d / name

    # --- what the folder says (read-only) --------------------------------------------------

    def exists(self) -> bool:
        """Whether a run was ever started here (its config.json is written first)."""
        return self.path(CONFIG_FILE).exists()

    @property
    def status(self) -> str:
        """The status file's word (``new`` before the first)."""
        try:
            return read_bytes(self.path(STATUS_FILE)).decode(errors="replace").strip() or "new"
        except FileNotFoundError:
            return "new"

    @property
    def state(self) -> str:
        """``missing`` (never started), else ``status``."""
        return self.status if self.exists() else "missing"

    @property
    def finished_status(self) -> bool:
        """Whether the status says finished (``schema.FINAL``); ``finished()`` checks files."""
        return self.status in FINAL

    def progress(self) -> tuple[int, float | None]:
        """Epochs finished and the validation accuracy of the last scored one (epochs not
        scored, with ``eval_every`` > 1, hold nan), read from ``history.csv``; (0, None) where
        it is missing or damaged."""
        h = self.history()
        if h is None or not len(h):
            return 0, None
        scored = h["val_acc"][h["val_acc"].map(math.isfinite)]
        return len(h), (float(scored.iloc[-1]) if len(scored) else None)

    def history(self) -> pd.DataFrame | None:
        """The checked history (``files.read_history``), or None where missing or damaged."""
        try:
            return read_history(self.path(HISTORY_FILE))
        except StoreError:
            return None

    def seconds(self) -> float:
        """Training seconds of the finished epochs (0 where no history reads)."""
        h = self.history()
        return float(h["seconds"].sum()) if h is not None else 0.0

    def resolved(self) -> dict:
        """What the run used on the machine that trained it (config.json's "resolved")."""
        try:
            return json.loads(self.path(CONFIG_FILE).read_text()).get("resolved", {})
        except (OSError, ValueError):
            return {}

    def busy(self) -> bool:
        """Whether a process holds the folder's lock (it trains or resumes the run)."""
        return run_busy(self.d)

    def holder(self) -> str:
        """Who trains the run now (``pid N on HOST``), or ''."""
        return lock_holder(self.d)

    # --- writing ---------------------------------------------------------------------------

    def set_status(self, s: str) -> None:
        atomic_write(self.path(STATUS_FILE), (s + "\n").encode())

    def write_config(self, cfg: Config, resolved: dict, data: D.CIFAR100) -> None:
        meta = {**cfg.to_dict(), "resolved": resolved, "data": data.describe(),
                "data_identity": data.identity, "hash_version": HASH_VERSION,
                "torch": torch.__version__}
        atomic_write(self.path(CONFIG_FILE), json.dumps(meta, indent=2).encode())

    def save_epoch(self, state: dict) -> None:
        """The new checkpoint replaces the old, which is kept as ``checkpoint.prev.pt``."""
        ck = self.path(CHECKPOINT_FILE)
        if ck.exists():
            os.replace(ck, self.path(PREV_CHECKPOINT_FILE))
        atomic_torch_save(ck, state)
        atomic_write(self.path(HISTORY_FILE), history_csv(state["history"]))

    def save_weights(self, cfg: Config, model: torch.nn.Module | dict) -> None:
        """``model.pt``: a model's (or a state dict's) weights, see ``weights_file``."""
        sd = model.state_dict() if isinstance(model, torch.nn.Module) else model
        atomic_torch_save(self.path(WEIGHTS_FILE), weights_file(cfg, sd))

    def last_good_state(self) -> dict | None:
        """The newest checkpoint that loads and checks out; damaged ones are named and moved
        aside (``*.corrupt``) so they are never loaded again."""
        for name in (CHECKPOINT_FILE, PREV_CHECKPOINT_FILE):
            p = self.path(name)
            if not p.exists():
                continue
            try:
                return load_checkpoint(p)      # StoreUnavailable (I/O) propagates: not damage
            except StoreError as e:
                self.log(f"warning: {e}; moved aside to {move_aside(p).name}")
        return None

    def check_config(self, cfg: Config, resolved: dict, data: D.CIFAR100) -> None:
        """A stored ``config.json`` that does not parse (cut short, garbage) is named and
        written again: its content follows from the config this folder's hash stands for."""
        p = self.path(CONFIG_FILE)
        if not p.exists():
            return
        try:
            json.loads(read_bytes(p))
        except (ValueError, TypeError) as e:    # not JSON (an I/O error propagates)
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
            run = Run.load(self.d)      # StoreUnavailable (I/O) propagates: nothing is touched
        except StoreError as e:
            run, problem = None, str(e)
        if run is not None and status == "done" and len(run.history) != expect_epochs:
            problem = (f"{self.path(HISTORY_FILE)}: says done but holds {len(run.history)} "
                       f"of {expect_epochs} epochs")
        if problem is not None and status == "done":
            state = self.last_good_state()
            if state is not None and state["epoch"] == expect_epochs:
                self.log(f"warning: {problem}; rebuilt it from {self.path(CHECKPOINT_FILE).name}")
                atomic_write(self.path(HISTORY_FILE), history_csv(state["history"]))
                run, problem = Run.load(self.d), None
        if problem is not None:
            self.log(f"warning: {problem}; the run is resumed from its last good checkpoint "
                     f"(or trained again)")
            self.set_status("damaged")
            return None
        if status == "done":
            mp = self.path(WEIGHTS_FILE)
            try:
                if not mp.exists():
                    raise StoreError(f"{mp}: missing")
                run._model = load_weights(mp, run.config.width)
            except StoreError as e:
                if mp.exists():
                    e = StoreError(f"{e}; moved aside to {move_aside(mp).name}")
                state = self.last_good_state()
                if state is None or state["epoch"] != expect_epochs:
                    self.log(f"warning: {e}; the run is resumed from its last good checkpoint "
                             f"(or trained again)")
                    self.set_status("damaged")
                    return None
                self.save_weights(run.config, state["model"])
                run._model = load_weights(mp, run.config.width)
                self.log(f"warning: {e}; rebuilt {mp.name} from {self.path(CHECKPOINT_FILE).name}")
        return run


class Terminated(KeyboardInterrupt):
    """SIGTERM while a run trains (SLURM time limit, preemption, scancel, kill): the run is
    kept ``interrupted`` at its last finished epoch, as on Ctrl-C."""


@contextlib.contextmanager
def sigterm_interrupts():
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
