"""Export the run store to other tools.

``tensorboard(out_dir)`` writes every stored run's history as TensorBoard scalars (one folder
per run, ``<hash>_<short description>``): ``train/loss``, ``train/acc``, ``val/loss``,
``val/acc`` and ``lr`` per epoch, plus the run's hyperparameters for TensorBoard's HParams tab.
View with ``tensorboard --logdir <out_dir>``. Exporting again replaces what an earlier export
wrote for a run.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

from .config import Config, describe

SCALARS = {"train_loss": "train/loss", "train_acc": "train/acc", "val_loss": "val/loss",
           "val_acc": "val/acc", "lr": "lr"}
# where or how a run computed, not what it is
NOT_DESCRIBED = ("data_root", "device", "precision", "compile", "eval_batch_size",
                 "channels_last")


def short_description(cfg: Config, limit: int = 80) -> str:
    """``lr=0.05_epochs=15_...``: lr, epochs and every value that differs from the default,
    safe as a folder name."""
    text = re.sub(r"[^A-Za-z0-9_.=+-]", "-", describe(cfg, skip=NOT_DESCRIBED, sep="_"))
    return text[:limit].rstrip("_-")


def _hparams(cfg: Config) -> dict:
    out = {}
    for k, v in cfg.to_dict().items():
        if k in NOT_DESCRIBED:
            continue
        # one type per name across runs: optional numbers (None = all) as text
        out[k] = str(v) if k in ("n_train", "n_val") else v
    return out


def tensorboard(out_dir, root=None, *, hparams: bool = True, log=print) -> int:
    """Write each stored run's history under ``out_dir``; returns the number of runs written.

    Runs without a finished epoch are left out; a damaged run folder is named and skipped.
    """
    try:
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams as hparams_summary
    except ImportError:
        raise ImportError("exporting to TensorBoard needs tensorboardX, which is not "
                          "installed: pip install -e '.[tensorboard]'") from None
    from . import store as runs

    out_dir = Path(out_dir)
    table = runs.list_runs(root)
    written = 0
    for _, row in table.iterrows():
        d = row.get("dir")
        if not isinstance(d, str):
            log(f"warning: run {row['hash']} skipped: {row['status']}")
            continue
        try:
            r = runs.Run.load(Path(d))
        except runs.StoreError as e:
            log(f"warning: run {row['hash']} skipped: {e}")
            continue
        if not len(r.history):
            continue
        folder = out_dir / f"{r.hash}_{short_description(r.config)}"
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("events.out.tfevents.*"):    # an earlier export of this run
            old.unlink()
        with SummaryWriter(logdir=str(folder), flush_secs=3600) as w:
            for rec in r.history.to_dict("records"):
                step = int(rec["epoch"])
                for col, tag in SCALARS.items():
                    w.add_scalar(tag, float(rec[col]), step)
            if hparams:
                final = r.history.iloc[-1]
                metrics = {tag: float(final[col]) for col, tag in SCALARS.items()
                           if col != "lr" and math.isfinite(float(final[col]))}
                for s in hparams_summary(_hparams(r.config), metrics):
                    w.file_writer.add_summary(s)
        written += 1
    log(f"tensorboard: {written} runs written to {out_dir}" +
        (f"; view with: tensorboard --logdir {os.fspath(out_dir)}" if written else ""))
    return written
