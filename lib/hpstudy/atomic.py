"""Atomic files, for the run store and the report folder alike: written under a temporary name
unique to the writer (host, process, thread), fsynced, then renamed over the real name. A
crash, a kill or a full disk never leaves a half-written file under a real name, and two
writers (two processes, or two hosts on a shared folder) never share a temporary file."""
from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

HOST = socket.gethostname()
TEMP_SUFFIX = ".tmp"           # temporaries are ".<name>.<host>.<pid>...tmp" beside the file


def atomic_write(path: str | os.PathLike, payload: bytes | str) -> None:
    """Write ``payload`` to ``path`` atomically. An ``OSError`` (a full disk, a lost mount)
    removes the temporary file and is raised again naming ``path``; the file under the real
    name is then the previous one, untouched."""
    path = Path(path)
    data = payload.encode() if isinstance(payload, str) else payload
    tmp = path.with_name(f".{path.name}.{HOST}.{os.getpid()}.{threading.get_ident()}."
                         f"{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if e.filename == str(path):
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
