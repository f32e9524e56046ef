"""One process per run folder, on one machine or several.

The holder takes an exclusive ``flock`` on ``<run>/lock`` and keeps a heartbeat in it (JSON:
host, pid, since, heartbeat), refreshed every ``HEARTBEAT_S`` seconds by a thread. A waiter
says who holds the run and how fresh the heartbeat is. Two failures of ``flock`` alone are
covered by the heartbeat:

- a holder that is gone without releasing (a dead NFS client whose lock the server keeps):
  once its heartbeat is older than ``STALE_AFTER_S``, a waiter takes the run over (it replaces
  the lock file, so the old lock no longer counts);
- a filesystem whose ``flock`` is host-local (NFS mounted ``local_lock``, Lustre
  ``localflock``), where a second host gets the lock at once: a fresh heartbeat of another
  process in the file makes it wait all the same.

``check_locking(root)`` is the start-up self-check: it says when the store's filesystem does
not keep two processes of this machine apart with ``flock``.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..atomic import HOST, atomic_write
from ..schema import LOCK_FILE

HEARTBEAT_S = 30.0       # how often the holder refreshes its heartbeat
STALE_AFTER_S = 300.0    # a heartbeat older than this is a dead holder's: the run is taken over
POLL_S = 2.0             # how often a waiter looks again
REPORT_EVERY_S = 60.0    # how often a waiter says it is still waiting


def _record(since: float) -> str:
    return json.dumps({"host": HOST, "pid": os.getpid(), "since": since,
                       "heartbeat": time.time()})


def parse_holder(text: str) -> dict | None:
    """The holder a lock file names: {host, pid, since?, heartbeat?}, or None (empty, or caught
    mid-write). The older form ``pid N on HOST`` has no heartbeat."""
    text = text.strip()
    if not text:
        return None
    try:
        rec = json.loads(text)
        return rec if isinstance(rec, dict) and "pid" in rec and "host" in rec else None
    except ValueError:
        parts = text.split()
        if len(parts) == 4 and parts[0] == "pid" and parts[2] == "on" and parts[1].isdigit():
            return {"pid": int(parts[1]), "host": parts[3]}
        return None


def describe_holder(rec: dict | None, now: float | None = None) -> str:
    if not rec:
        return "another process"
    now = time.time() if now is None else now
    out = f"pid {rec['pid']} on {rec['host']}"
    if "since" in rec:
        out += f" for {now - rec['since']:.0f} s"
    if "heartbeat" in rec:
        out += f", heartbeat {now - rec['heartbeat']:.0f} s ago"
    return out


def _age(rec: dict | None, now: float) -> float | None:
    return now - rec["heartbeat"] if rec and "heartbeat" in rec else None


def _alive_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _other_live_holder(rec: dict | None, now: float, stale_after: float) -> bool:
    """Whether ``rec`` (read under a flock this process just got) names another process that
    still holds the run: a fresh heartbeat, and on this host a pid that is alive."""
    if not rec or (rec.get("host") == HOST and rec.get("pid") == os.getpid()):
        return False
    age = _age(rec, now)
    if age is None or age > stale_after:
        return False                     # no heartbeat (older form) or a stale one
    return rec.get("host") != HOST or _alive_here(int(rec["pid"]))


def _same_file(f, path: Path) -> bool:
    """Whether the open lock file ``f`` is still the one at ``path``."""
    try:
        return os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read(f) -> dict | None:
    f.seek(0)
    return parse_holder(f.read())


@contextlib.contextmanager
def run_lock(d: Path, log=print):
    """Hold run folder ``d`` for this process; wait, saying who holds it, while another does."""
    d.mkdir(parents=True, exist_ok=True)
    path = d / LOCK_FILE
    reported = 0.0
    while True:
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            got = True
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                f.close()
                raise
            got = False
        if got and not _same_file(f, path):
            # another waiter replaced the lock file (a takeover) after this one opened it
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
            continue
        now = time.time()
        rec = _read(f)
        if got and not _other_live_holder(rec, now, STALE_AFTER_S):
            if rec and _age(rec, now) is not None and rec.get("host") != HOST:
                log(f"run {d.name}: the lock's last holder ({describe_holder(rec, now)}) is "
                    f"stale (limit {STALE_AFTER_S:.0f} s); this process takes the run over")
            break
        age = _age(rec, now)
        if not got and age is not None and age > STALE_AFTER_S:
            log(f"warning: run {d.name}: its holder ({describe_holder(rec, now)}) has not "
                f"refreshed its heartbeat for more than {STALE_AFTER_S:.0f} s; taking the run "
                f"over")
            f.close()
            # a fresh lock file: the old one's flock (a dead client's) no longer counts
            atomic_write(path, b"")
            continue
        if now - reported >= REPORT_EVERY_S:
            how = "" if not got else " (this filesystem's flock did not keep it out: the " \
                                     "heartbeat did)"
            log(f"run {d.name} is busy (held by {describe_holder(rec, now)}){how}; waiting "
                f"for it to finish (a heartbeat older than {STALE_AFTER_S:.0f} s is taken "
                f"over)")
            reported = now
        if got:
            fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
        time.sleep(POLL_S)

    since = time.time()
    stop = threading.Event()
    write = threading.Lock()

    def beat(text: str) -> None:
        with write:
            f.seek(0)
            f.truncate()
            f.write(text)
            f.flush()
            with contextlib.suppress(OSError):
                os.fsync(f.fileno())

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError, ValueError):
                beat(_record(since))

    beat(_record(since))
    thread = threading.Thread(target=heartbeat, name=f"hpstudy-heartbeat-{d.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        with contextlib.suppress(OSError, ValueError):
            beat("")
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def run_busy(d: Path) -> bool:
    """Whether a process holds the run folder (a flock, or another's fresh heartbeat)."""
    return bool(lock_holder(d))


def lock_holder(d: Path) -> str:
    """Who trains the run now (``pid N on HOST for S s, heartbeat H s ago``), or ''."""
    lock = d / LOCK_FILE
    if not lock.exists():
        return ""
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return describe_holder(_read(f))
        try:
            rec = _read(f)
            now = time.time()
            return describe_holder(rec, now) if _other_live_holder(rec, now, STALE_AFTER_S) \
                else ""
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_CHECKED: dict[str, bool] = {}
_PROBE = ("import fcntl, sys\n"
          "f = open(sys.argv[1], 'a')\n"
          "try:\n"
          "    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
          "except OSError:\n"
          "    sys.exit(3)\n"
          "sys.exit(0)\n")


def check_locking(root: Path, log=print) -> bool:
    """Whether ``flock`` on the store's filesystem keeps two processes apart: this process
    holds a lock and a child tries to take it. Said once per store and process when it does
    not (runs are then kept apart by the heartbeat alone, after a ``POLL_S`` delay)."""
    root = Path(root)
    key = str(root)
    if key in _CHECKED:
        return _CHECKED[key]
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".lockcheck.{HOST}.{os.getpid()}"
    ok = True
    try:
        with open(probe, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            p = subprocess.run([sys.executable, "-c", _PROBE, str(probe)], timeout=60,
                               capture_output=True)
            ok = p.returncode == 3
    except (OSError, subprocess.SubprocessError) as e:
        ok = False
        log(f"warning: the run store {root} could not check its locks ({type(e).__name__}: "
            f"{e})")
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    if not ok:
        log(f"warning: the run store's filesystem ({root}) does not keep two processes apart "
            f"with flock; runs are kept apart by the lock's heartbeat alone")
    _CHECKED[key] = ok
    return ok
