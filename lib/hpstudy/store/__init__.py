"""The run store: one folder per resolved config, so nothing is trained twice or lost.

``runs/<hash>/`` holds ``config.json``, ``history.csv`` (a row per finished epoch),
``checkpoint.pt`` (+ ``checkpoint.prev.pt``, the epoch before), ``model.pt`` once finished,
``status`` and ``lock`` (``schema`` names them). Every file is written to a temporary name and
renamed, so a crash never leaves a half-written file under a real name; a file damaged anyway
is detected, named, and the run restarts from the last good state.

This package is the only code that opens a file inside a run folder (a test checks it), one
module per concern, after papermill's one module per storage backend:

``identity``  the resolved config and the hash that names a run's folder
``files``     atomic writes and the three file formats (history, checkpoint, weights)
``lock``      one process per run folder
``rundir``    ``RunDir``, one folder's reader and writer; ``Run``, a finished run
``runs``      ``run(config)`` and the lookups (``find_run``, ``list_runs``, ...)
"""
from ..schema import FINAL
from .files import (HOST, StoreError, StoreUnavailable, atomic_torch_save, atomic_write,
                    history_csv, load_checkpoint, load_weights, move_aside, read_history,
                    weights_file)
from .identity import (HASH_VERSION, NOT_HASHED, for_machine, resolved_config, run_hash,
                       store_root)
from .lock import check_locking, lock_holder, run_busy, run_lock
from .rundir import Run, RunDir, Terminated, sigterm_interrupts
from .runs import (find_run, list_runs, locate, remove_run, run, stored_runs, stored_status)

__all__ = ["FINAL", "check_locking", "HASH_VERSION", "HOST", "NOT_HASHED", "Run", "RunDir", "StoreError", "StoreUnavailable",
           "Terminated", "atomic_torch_save", "for_machine", "atomic_write", "find_run",
           "history_csv", "list_runs", "load_checkpoint", "load_weights", "locate",
           "lock_holder", "move_aside", "read_history", "remove_run", "resolved_config", "run", "run_busy",
           "run_hash", "run_lock", "sigterm_interrupts", "store_root", "stored_runs",
           "stored_status", "weights_file"]
