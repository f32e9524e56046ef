"""Train many runs at once: in this process, a local process pool, a Ray cluster, or SLURM.

The engines only schedule; the run store (``store.run``) stays the single source of results.
Every unit of work is ``store.run(config)`` (``worker.train_one``), which trains, resumes from
the last finished epoch, or returns a finished run, under the run folder's lock. So a task that
is retried (Ray) or requeued (SLURM) simply resumes, and two engines pointed at one store cannot
train a run twice at the same time.

``execute(planned, executor)`` takes the plan's rows (``plan.PlannedRun``: hash, folder,
config, label, cost; ``plan.plan_configs`` makes them for bare configs) and never hashes a run
again:

- skips runs the store holds as done or diverged (asking the store, ``store.RunDir``);
- submits the others in the order given (the plan's: longest first);
- returns run hash -> final status for every row;
- prefixes every log line of a run with ``[<hash> <label>]``.

One module per executor, each with ``run_all(todo, root, ...)``: ``inline`` (one run after
another in this process), ``local`` (a process pool), ``ray``, ``slurm`` (submitit); ``worker``
holds what they share. Ray and SLURM workers must see the run store (and the data set) at the
same path as this process: a shared file system.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import Config
from ..schema import FINAL
from ..store import RunDir, sigterm_interrupts, store_root
from .worker import TEST_DIE_AFTER_EPOCH, cpus, train_one  # noqa: F401

EXECUTORS = ("inline", "local", "ray", "slurm")
DEFAULT_EXECUTOR = "local"
__all__ = ["DEFAULT_EXECUTOR", "EXECUTORS", "Recorder", "TEST_DIE_AFTER_EPOCH", "Task", "cpus",
           "execute", "train_one"]


@dataclass
class Task:
    """A planned run as an executor sees it."""
    config: Config
    hash: str
    dir: Path
    prefix: str


def execute(planned, executor: str = "local", *, root=None, jobs: int | None = None,
            address: str | None = None, runs_per_gpu: int = 1, slurm: dict | None = None,
            log=print, on_done: Callable[[str, str], None] | None = None) -> dict[str, str]:
    """Train every unfinished run of ``planned`` (the plan's rows, in their order: the plan's
    is longest first). Returns run hash -> final status.

    ``on_done(hash, status)`` is called in this thread as each submitted run ends (what it
    raises, KeyboardInterrupt included, stops the dispatch as Ctrl-C would).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: allowed values: {', '.join(EXECUTORS)}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1 (got {jobs})")
    if runs_per_gpu < 1:
        raise ValueError(f"runs_per_gpu must be >= 1 (got {runs_per_gpu})")
    root = store_root(root)
    results, todo = {}, []
    for r in planned:
        if r.hash in results or any(t.hash == r.hash for t in todo):
            continue
        status = RunDir(r.dir).state
        if status in FINAL:
            results[r.hash] = status
        else:
            label = r.label()
            todo.append(Task(r.config, r.hash, Path(r.dir),
                             f"[{r.hash} {label}]" if label else f"[{r.hash}]"))
    log(f"{len(results) + len(todo)} runs: {len(results)} finished in the store, {len(todo)} "
        f"to train ({executor})")
    if not todo:
        return results
    engine = importlib.import_module(f"{__name__}.{executor}")
    record = Recorder(root, log, on_done)
    # SIGTERM stops a dispatch as Ctrl-C does (workers interrupted, their runs kept)
    with sigterm_interrupts():
        engine.run_all(todo, root, jobs=jobs, address=address, runs_per_gpu=runs_per_gpu,
                       slurm=slurm, log=log, record=record)
    results.update(record.results)
    counts = {}
    for s in results.values():
        counts[s] = counts.get(s, 0) + 1
    log("finished: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return results


class Recorder:
    """Takes each task's end: logs it, keeps hash -> status, calls ``on_done``."""

    def __init__(self, root: Path, log, on_done=None):
        self.root, self.log, self.on_done = root, log, on_done
        self.results: dict[str, str] = {}

    def __call__(self, it: "Task", res: dict | None, error: BaseException | None = None) -> None:
        if res is not None:
            how = ("from the store" if not res["trained"] else
                   f"resumed after epoch {res['resumed_from']}" if res["resumed_from"]
                   else "trained")
            self.log(f"{it.prefix} {res['status']} ({res['epochs']} epochs, {how})")
            h, status = res["hash"], res["status"]
        else:   # reported with the store's status where that says more than "failed"
            h, status = it.hash, "failed"
            stored = RunDir(it.dir).state
            if stored in FINAL or stored == "interrupted":
                status = stored
            self.log(f"{it.prefix} {status}: {type(error).__name__}: {error}")
        self.results[h] = status
        if self.on_done is not None:
            self.on_done(h, status)

    def settle(self, it: "Task", result: Callable[[], dict], unwrap=None) -> None:
        """Record ``it`` from ``result()`` (a task's, future's or job's result): its value, or
        the exception it raises (``unwrap(e)``, where given, digs out the task's own)."""
        try:
            res = result()
        except Exception as e:
            self(it, None, unwrap(e) if unwrap else e)
        else:
            self(it, res)
