"""``inline``: one run after another in this process."""
from __future__ import annotations

from .worker import train_one


def run_all(todo, root, *, log, record, **_):
    for it in todo:
        record.settle(it, lambda: train_one(it.config.to_dict(), str(root), it.prefix, log=log,
                                            expect=it.hash))
