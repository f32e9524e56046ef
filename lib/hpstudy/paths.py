"""Where the study notebooks and presets live.

They are files of the project, beside ``lib/`` in a clone (``pip install -e .``). A
non-editable install copies only the package, so instead of guessing we say what to do.
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The folder that holds ``notebooks/`` and ``params/``: ``$HPSTUDY_PROJECT``, else the
    clone this package was installed from (editable install)."""
    env = os.environ.get("HPSTUDY_PROJECT")
    root = Path(env).expanduser().resolve() if env else Path(__file__).resolve().parents[2]
    if (root / "notebooks").is_dir() and (root / "params").is_dir():
        return root
    where = f"HPSTUDY_PROJECT={env}" if env else f"{root} (next to the installed package)"
    raise FileNotFoundError(
        f"hpstudy's notebooks/ and params/ folders were not found in {where}. They are files of "
        f"the project, not of the package: install from a clone with `pip install -e .`, or set "
        f"HPSTUDY_PROJECT to the folder of a clone.")


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def params_dir() -> Path:
    return project_root() / "params"
