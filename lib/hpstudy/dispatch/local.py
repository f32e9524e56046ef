"""``local``: a process pool (spawn) on this machine; ``jobs`` processes (default: one per run,
at most one per CPU), torch threads split between them; worker logs reach ``log``."""
from __future__ import annotations

import os
import signal
import threading

from . import worker


def _interrupt_once(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _pool_init(queue, threads: int) -> None:
    worker._LOG_QUEUE = queue
    # Ctrl-C interrupts a run (status "interrupted"), even where the parent ignores SIGINT;
    # only the first: the parent passes a SIGINT on to its workers, which a terminal's Ctrl-C
    # has reached already, and a second one must not cut short the first one's bookkeeping
    signal.signal(signal.SIGINT, _interrupt_once)
    import torch
    torch.set_num_threads(threads)


def run_all(todo, root, *, jobs, log, record, **_):
    import concurrent.futures as cf
    import multiprocessing as mp

    cpus = worker.cpus()
    jobs = min(jobs or min(len(todo), cpus), len(todo))
    threads = max(1, cpus // jobs)
    log(f"local pool: {jobs} processes, {threads} torch threads each")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()

    def drain():
        while (line := queue.get()) is not None:
            log(line)

    drainer = threading.Thread(target=drain, name="hpstudy-log", daemon=True)
    drainer.start()
    pool = cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_pool_init,
                                  initargs=(queue, threads))
    try:
        futures = {pool.submit(worker.train_one, it.config.to_dict(), str(root), it.prefix,
                               expect=it.hash): it
                   for it in todo}
        for fut in cf.as_completed(futures):
            record.settle(futures[fut], fut.result)
    except KeyboardInterrupt:
        log("interrupted: stopping the workers; their runs keep their last finished epoch")
        # a terminal's Ctrl-C reached them already; a SIGINT sent to this process alone did not
        for p in list((getattr(pool, "_processes", None) or {}).values()):
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        queue.put(None)
        drainer.join(timeout=10)
