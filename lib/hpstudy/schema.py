"""The run store's schema: the names of a run folder's files, their columns and keys, and the
names results are shown under, defined once.

Only ``hpstudy.store`` opens a file inside a run folder (a test checks it); other modules ask
a ``store.RunDir``. ``history.csv`` has one row per finished epoch with ``HISTORY_COLUMNS``; ``METRICS`` are the
four per-epoch measurements among them and ``METRIC_LABELS`` their names in figures and
tables. A checkpoint (``checkpoint.pt``) is a dict holding at least ``CHECKPOINT_KEYS``; a
``model.pt`` holds ``WEIGHTS_KEYS``. The format numbers say which layout a file has.
"""
from __future__ import annotations

# the files of a run folder, ``runs/<hash>/``
CONFIG_FILE = "config.json"           # the config, its resolved values, the data's identity
STATUS_FILE = "status"                # one word: STATUSES
HISTORY_FILE = "history.csv"          # a row per finished epoch
CHECKPOINT_FILE = "checkpoint.pt"     # the last finished epoch
PREV_CHECKPOINT_FILE = "checkpoint.prev.pt"   # the epoch before
WEIGHTS_FILE = "model.pt"             # the final weights, once done
LOCK_FILE = "lock"                    # who trains the run now (flock + heartbeat)
RUN_FILES = (CONFIG_FILE, STATUS_FILE, HISTORY_FILE, CHECKPOINT_FILE, PREV_CHECKPOINT_FILE,
             WEIGHTS_FILE, LOCK_FILE)

# "new" before the first epoch, "missing" where no folder exists yet
STATUSES = ("new", "running", "interrupted", "failed", "damaged", "done", "diverged")
FINAL = ("done", "diverged")          # finished: never trained again

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")
METRIC_LABELS = {"train_loss": "train loss", "val_loss": "validation loss",
                 "train_acc": "train accuracy", "val_acc": "validation accuracy"}

# checkpoint.pt: what resuming needs. The learning-rate schedule is not stored: it is a pure
# function of the config and the epoch (``train.lr_at``). Older checkpoints that also hold a
# "scheduler" entry still load (extra keys are ignored).
CHECKPOINT_FORMAT = 1
CHECKPOINT_KEYS = ("format", "epoch", "config", "model", "optimizer", "history", "rng")

# model.pt: the final weights plus what it takes to build the model they belong to, so that
# the file loads without its run's config.json. "init" is recorded, not needed to load.
WEIGHTS_FORMAT = 1
WEIGHTS_KEYS = ("format", "width", "num_classes", "state_dict")
