"""``local``: a process pool (spawn) on this machine; ``jobs`` processes (default: one per run,
at most one per CPU), torch threads split between them; worker logs reach ``log``.

A worker dies with its parent: killed with -9, the parent can neither tell it nor reap it, so
each worker watches its parent itself and, once orphaned, stops as on SIGTERM (its run is kept
``interrupted`` at its last finished epoch). An error in this process (a callback's, say)
stops the workers the same way as Ctrl-C does, instead of waiting for their runs to end.
"""
from __future__ import annotations

import os
import signal
import threading
import time

from . import worker
from .worker import stop_reason


def _interrupt_once(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _pool_init(queue, threads: int, parent: int) -> None:
    worker._LOG_QUEUE = queue
    # Ctrl-C interrupts a run (status "interrupted"), even where the parent ignores SIGINT;
    # only the first: the parent passes a SIGINT on to its workers, which a terminal's Ctrl-C
    # has reached already, and a second one must not cut short the first one's bookkeeping
    signal.signal(signal.SIGINT, _interrupt_once)
    # the parent's pid comes from the parent: a worker orphaned while it was still starting
    # would otherwise take its new parent (init) for the one to watch
    threading.Thread(target=_die_with, args=(parent,), name="hpstudy-parent-watch",
                     daemon=True).start()
    import torch
    torch.set_num_threads(threads)


PARENT_POLL_S = 1.0      # how often a worker checks that its parent is alive
ORPHAN_EXIT_S = 60.0     # an orphan still alive this long after SIGTERM exits hard


def _die_with(parent: int) -> None:
    """In a worker: once the parent is gone (this process re-parented), SIGTERM to itself,
    which ``store.run`` turns into an interrupted run kept at its last finished epoch."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    # the run's bookkeeping (status "interrupted") ends store.run; then nothing is left to do
    # (the pool's queues lead to the dead parent), so the process exits
    deadline = time.monotonic() + ORPHAN_EXIT_S
    while worker.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    os._exit(1)


def _task(config: dict, root: str, prefix: str, expect: str) -> dict:
    """``train_one`` in a pool worker. A SIGTERM (the pool's terminate() when another worker
    died, or this worker's parent gone) ends the process once ``store.run`` has kept the run
    interrupted: left alive, the worker would wait for work on the pool's queues forever, and
    the pool's shutdown would wait for it."""
    from ..store import Terminated

    try:
        return worker.train_one(config, root, prefix, expect=expect)
    except Terminated:
        os._exit(128 + signal.SIGTERM)


def run_all(todo, root, *, jobs, log, record, **_):
    import concurrent.futures as cf
    import multiprocessing as mp

    cpus = worker.cpus()
    # the threads follow the jobs asked for, not the runs left: a run resumed when it is the
    # last one must compute with the threads it started with (they change the last bits)
    threads = max(1, cpus // (jobs or min(len(todo), cpus)))
    jobs = min(jobs or min(len(todo), cpus), len(todo))
    log(f"local pool: {jobs} processes, {threads} torch threads each")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()

    def drain():
        while (line := queue.get()) is not None:
            log(line)

    drainer = threading.Thread(target=drain, name="hpstudy-log", daemon=True)
    drainer.start()
    pool = cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_pool_init,
                                  initargs=(queue, threads, os.getpid()))
    try:
        futures = {pool.submit(_task, it.config.to_dict(), str(root), it.prefix, it.hash): it
                   for it in todo}
        for fut in cf.as_completed(futures):
            record.settle(futures[fut], fut.result)
    except BaseException as e:          # Ctrl-C, SIGTERM, or an error here (a callback's)
        why = stop_reason(e)
        log(f"{why}: stopping the workers; their runs keep their last finished epoch")
        # a terminal's Ctrl-C reached them already; a SIGINT sent to this process alone did not
        for p in list((getattr(pool, "_processes", None) or {}).values()):
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        queue.put(None)
        drainer.join(timeout=10)
