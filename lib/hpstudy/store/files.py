"""The store's file formats, each read and written in one place: atomic writes (a temporary
name, fsync, rename: a crash never leaves a half-written file under a real name), the history
CSV, checkpoints and final weights, each checked when read so that a damaged file is named."""
from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path

import pandas as pd
import torch

from .. import data as D
from ..atomic import HOST, atomic_write  # noqa: F401 - the store's writes go through it
from ..config import Config
from ..model import MobileNet
from ..schema import (CHECKPOINT_KEYS, HISTORY_COLUMNS, METRICS, WEIGHTS_FORMAT,
                      WEIGHTS_KEYS)


class StoreError(RuntimeError):
    """A file of the run store is damaged; the message names it."""


class StoreUnavailable(OSError):
    """A file of the run store could not be read (an I/O error, a lost NFS server, no memory)
    although it may well be intact: never taken for damage, so nothing is moved aside, deleted
    or trained again. The message names the file."""


# A read that fails with an OSError or MemoryError is tried again after each of these pauses
# (seconds), then raised as StoreUnavailable.
RETRY_DELAYS = (0.5, 2.0, 5.0)


def read_bytes(path: str | os.PathLike, parse=None):
    """The bytes of ``path`` (or ``parse(bytes)``), retrying transient failures.

    Only the file's content decides damage: ``parse`` raising anything but MemoryError is the
    caller's to judge (corrupt). An OSError while reading, or a MemoryError while reading or
    parsing, is retried (``RETRY_DELAYS``) and then raised as ``StoreUnavailable``. A missing
    file raises FileNotFoundError at once (it is not transient)."""
    path = Path(path)
    for attempt, delay in enumerate((*RETRY_DELAYS, None), start=1):
        try:
            data = path.read_bytes()
            return parse(data) if parse is not None else data
        except FileNotFoundError:
            raise
        except (OSError, MemoryError) as e:
            if delay is None:
                raise StoreUnavailable(
                    getattr(e, "errno", None) or 0,
                    f"{path}: could not be read ({type(e).__name__}: {e}) in {attempt} tries; "
                    f"the file is left as it is, and nothing was trained again") from e
            time.sleep(delay)


def move_aside(path: Path) -> Path:
    """Rename a damaged file to ``<name>.corrupt`` (``.corrupt.1``, ... when taken): an earlier
    damaged copy is never overwritten."""
    target = path.with_name(path.name + ".corrupt")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    os.replace(path, target)
    return target


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
        text = read_bytes(path).decode("utf-8")
    except FileNotFoundError:
        raise StoreError(f"{path}: missing") from None
    except UnicodeDecodeError as e:
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


def _torch_load(data: bytes):
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_checkpoint(path: Path) -> dict:
    """Load with ``weights_only=True`` (a pickle that would run code is refused) and check it."""
    try:
        state = read_bytes(path, _torch_load)
    except (StoreUnavailable, FileNotFoundError):
        raise
    except Exception as e:       # the content does not deserialize: damaged
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
        obj = read_bytes(path, _torch_load)
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
    except (StoreUnavailable, FileNotFoundError):
        raise
    except Exception as e:
        raise StoreError(f"{path}: cannot be loaded as MobileNet weights "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return model.eval()
