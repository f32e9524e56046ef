"""A report folder (``reports/<preset>/``): one writer at a time, one parameter set.

``report_id`` names the parameter set a report renders: the preset's content, the ``-p``
overrides, the store and data folders, the machine class the runs train on. The folder's
``summary.json`` records it and every results JSON carries it, so a page cites an earlier
study's results only when they come from the same parameter set (``notebook.Session.upstream``).

``claim(out, report_id)`` holds the folder for one ``hpstudy report``: a second one on the same
folder refuses, naming the holder. Pages of another parameter set found there are moved to
``previous/`` (replacing an older ``previous/``) before anything is written: a report never
shows a page of one variant beside the index of another, and nothing is deleted.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from .atomic import HOST

LOCK = ".report.lock"
SUMMARY = "summary.json"
PREVIOUS = "previous"


class FolderBusy(RuntimeError):
    """Another ``hpstudy report`` writes this folder now; the message names it."""


def report_id(preset, overrides: dict, extra: dict, machine: str) -> str:
    """A short hash of everything that decides a report's numbers (not where it is written)."""
    key = {"preset": {"name": preset.name, "compare_with_report": preset.compare_with_report,
                      "common": preset.common, "studies": preset.studies},
           "overrides": overrides, "runs_root": extra.get("runs_root"),
           "data_root": extra.get("data_root"), "machine": machine}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def recorded_id(out: Path) -> str | None:
    """The report id in ``out/summary.json`` (None: none, or unreadable)."""
    try:
        return json.loads((out / SUMMARY).read_text()).get("report_id")
    except (OSError, ValueError, AttributeError):
        return None


def _pages(out: Path) -> list[Path]:
    return [p for p in out.iterdir()
            if p.name not in (LOCK, PREVIOUS) and not p.name.startswith(".")]


@contextlib.contextmanager
def claim(out: Path, rid: str, log=print):
    """Hold ``out`` for this report (see the module's docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / LOCK, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        if e.errno in (errno.EAGAIN, errno.EACCES):
            raise FolderBusy(f"{out} is being written by another hpstudy report ({holder}); "
                             f"wait for it to end, or give this one another --out") from None
        raise
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {HOST} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        old = recorded_id(out)
        pages = _pages(out)
        if pages and old != rid:
            previous = out / PREVIOUS
            shutil.rmtree(previous, ignore_errors=True)
            previous.mkdir()
            for p in pages:
                os.replace(p, previous / p.name)
            log(f"note: {out} held the pages of another parameter set (report "
                f"{old or 'unknown'}); they are now in {previous}")
        yield
    finally:
        with contextlib.suppress(OSError):
            f.seek(0)
            f.truncate()
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
