"""The unit of work every executor runs: ``train_one``, which calls ``store.run`` (train,
resume, or look up) and returns small values only. Shared by the executors, imported by their
workers (a local pool's processes, Ray tasks, SLURM jobs)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

# Test hook: a Ray task whose run had not reached this epoch when it started kills its own
# worker (SIGKILL) once that epoch is stored, to show that Ray's retry resumes the run.
TEST_DIE_AFTER_EPOCH = "HPSTUDY_TEST_DIE_AFTER_EPOCH"

RUNNING = False               # whether this process is inside store.run (a watchdog asks)
_LOG_QUEUE = None             # set in local-pool workers: their log lines go to the parent


def _emit(line: str) -> None:
    if _LOG_QUEUE is not None:
        _LOG_QUEUE.put(line)
    else:
        print(line, flush=True)


def train_one(config: dict, root: str, prefix: str, *, threads: int | None = None,
              die_after: int | None = None, log=None, expect: str | None = None) -> dict:
    """Train (or resume, or look up) one run; what a worker of every executor calls.

    ``expect``: the run's hash in the head's plan. A worker that names the run otherwise (its
    'auto' settles differently: bf16 on a GPU worker, fp32 on a CPU head) refuses before
    training anything, so that nothing is stored where the head never looks.
    Returns small values only: the run's hash, its status and the epochs it holds.
    """
    from .. import store

    if expect is not None:
        check_identity(config, root, expect)

    if threads:
        import torch
        torch.set_num_threads(threads)
    out = log or _emit

    def prefixed(line: str) -> None:
        out(f"{prefix} {line}")

    if die_after:
        # the test hook (see TEST_DIE_AFTER_EPOCH): knows the run folder from its prefix
        started_at = store.RunDir(Path(root) / prefix.strip("[]").split()[0]).progress()[0]

        def prefixed(line: str, _log=prefixed) -> None:   # noqa: F811
            _log(line)
            # "epoch k/n" is logged before epoch k is stored: epoch k-1 is on disk now
            if (started_at < die_after and line.startswith("epoch ")
                    and int(line.split()[1].split("/")[0]) > die_after):
                _log(f"test hook: killing this worker (pid {os.getpid()}) after epoch "
                     f"{die_after}")
                os.kill(os.getpid(), signal.SIGKILL)

    global RUNNING
    RUNNING = True
    try:
        r = store.run(config, root=root, log=prefixed)
    finally:
        RUNNING = False
    return {"hash": r.hash, "status": r.status, "epochs": len(r.history),
            "trained": r.trained, "resumed_from": r.resumed_from}


def check_identity(config: dict, root: str, expect: str) -> None:
    """Refuse a run whose hash on this machine is not the plan's (see ``train_one``)."""
    from .. import store
    from ..config import Config
    from ..device import resolve_device

    cfg = Config.from_dict(config)
    here = store.locate(cfg, root).name
    if here != expect:
        dev = resolve_device(cfg.device).type
        resolved = store.resolved_config(cfg)
        raise store.StoreError(
            f"run {expect} of the plan is run {here} on this worker ({store.HOST}, {dev}: "
            f"precision {cfg.precision} -> {resolved['precision']} here): the head planned for "
            f"another machine class. Nothing was trained. Give hpstudy report --worker-device "
            f"{dev}, or name the precision (-p precision {resolved['precision']}).")


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def stop_reason(e: BaseException) -> str:
    """How an executor says why it stops its workers: Ctrl-C/SIGTERM, or an error here."""
    return "interrupted" if isinstance(e, KeyboardInterrupt) else \
        f"stopping on an error ({type(e).__name__}: {e})"


def missing(package: str, extra: str) -> ImportError:
    return ImportError(f"the {extra!r} executor needs {package}, which is not installed: "
                       f"pip install -e '.[{extra}]'")
