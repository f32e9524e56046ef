"""The names a run's results are stored and shown under, defined once.

``history.csv`` has one row per finished epoch with ``HISTORY_COLUMNS``; ``METRICS`` are the
four per-epoch measurements among them and ``METRIC_LABELS`` their names in figures and
tables. A checkpoint (``checkpoint.pt``) is a dict holding at least ``CHECKPOINT_KEYS``; a
``model.pt`` holds ``WEIGHTS_KEYS``. The format numbers say which layout a file has.
"""
from __future__ import annotations

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
