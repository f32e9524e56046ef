"""Which hpstudy a process runs, by content.

``__version__`` stays 0.1.0 while the code changes under it, so two machines that report the
same version can still train differently (or hash runs differently). The fingerprint is a hash
of the package's own source files and templates: a head and its workers (Ray nodes, SLURM
jobs) agree on it exactly when they run the same code.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def source_fingerprint(package: str | Path | None = None) -> str:
    """sha256 (first 16 hex digits) over every ``*.py`` and ``*.j2`` of the package, by
    relative path and content."""
    root = Path(package) if package is not None else PACKAGE
    if package is None:
        return _cached()
    return _compute(root)


@functools.lru_cache(maxsize=1)
def _cached() -> str:
    return _compute(PACKAGE)


def _compute(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(list(root.rglob("*.py")) + list(root.rglob("*.j2"))):
        if "__pycache__" in p.parts:
            continue
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def check_same(theirs: str | None, where: str) -> None:
    """An error naming both fingerprints when ``theirs`` (the head's) is not this process's."""
    mine = source_fingerprint()
    if theirs is not None and theirs != mine:
        raise RuntimeError(f"{where} runs hpstudy source {mine}, the head {theirs}: install the "
                           f"same hpstudy code on every node (a version number alone does not "
                           f"tell them apart)")
