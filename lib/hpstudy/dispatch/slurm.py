"""``slurm``: one submitit job per run (a job array). ``slurm`` holds partition, time (minutes),
gpus_per_node, cpus_per_task, mem_gb, and ``cluster`` ("slurm", or "local" / "debug" to run the
jobs on this machine); other keys go to submitit unchanged (``slurm_account``, ``slurm_qos``,
...). A job that is preempted or reaches its time limit is requeued and resumes; a job on a
node with other hpstudy source refuses to train. submitit's files go to
``<store>/.submitit/``."""
from __future__ import annotations

import os
import socket
import sys
import time

from .worker import cpus, missing, stop_reason, train_one


def _slurm_run_class():
    try:
        import submitit
    except ImportError:
        raise missing("submitit", "slurm") from None

    class SlurmRun(submitit.helpers.Checkpointable):
        """One run as a SLURM job. On preemption or the time-limit signal submitit calls
        ``checkpoint()``, which requeues the same call: the run resumes from its last
        finished epoch. SIGTERM (scancel, the time limit itself) leaves it ``interrupted``."""

        def __call__(self, config: dict, root: str, prefix: str,
                     threads: int | None = None, fingerprint: str | None = None,
                     expect: str | None = None) -> dict:
            # a job on a node with other hpstudy code would train (and hash) differently
            from ..fingerprint import check_same
            check_same(fingerprint, f"SLURM job {os.environ.get('SLURM_JOB_ID', '?')} on "
                                    f"{socket.gethostname()}")
            # torch would use every core of the node, not the job's share
            threads = threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or 0) or cpus()
            return train_one(config, root, prefix, threads=threads, expect=expect)

        def checkpoint(self, config: dict, root: str, prefix: str, threads: int | None = None,
                       fingerprint: str | None = None, expect: str | None = None):
            print(f"{prefix} requeued: the run resumes from its last finished epoch",
                  flush=True)
            return submitit.helpers.DelayedSubmission(self, config, root, prefix, threads,
                                                      fingerprint, expect)

    SlurmRun.__module__, SlurmRun.__qualname__ = __name__, "SlurmRun"
    return SlurmRun


_SLURM_RUN = None


def __getattr__(name: str):
    # ``SlurmRun`` exists once submitit is importable; defined lazily so that pickles of it
    # refer to hpstudy.dispatch.slurm.SlurmRun rather than carry the class
    global _SLURM_RUN
    if name == "SlurmRun":
        if _SLURM_RUN is None:
            _SLURM_RUN = _slurm_run_class()
        return _SLURM_RUN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SLURM_KEYS = {"partition": "slurm_partition", "time": "timeout_min",
              "gpus_per_node": "gpus_per_node", "cpus_per_task": "cpus_per_task",
              "mem_gb": "mem_gb"}


def run_all(todo, root, *, jobs, slurm, log, record, **_):
    job_class = __getattr__("SlurmRun")
    import submitit

    opts = dict(slurm or {})
    cluster = opts.pop("cluster", None)
    params = {"name": "hpstudy", "timeout_min": 240}
    for k, v in opts.items():
        params[SLURM_KEYS.get(k, k)] = v
    if jobs:
        params["slurm_array_parallelism"] = jobs
    folder = root / ".submitit"
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    executor.update_parameters(**params)
    fn = job_class()
    threads = params.get("cpus_per_task")
    from ..fingerprint import source_fingerprint

    submitted = executor.map_array(fn, [it.config.to_dict() for it in todo],
                                   [str(root)] * len(todo), [it.prefix for it in todo],
                                   [threads] * len(todo), [source_fingerprint()] * len(todo),
                                   [it.hash for it in todo])
    for job, it in zip(submitted, todo):
        log(f"{it.prefix} submitted: job {job.job_id} ({executor.cluster}; logs in "
            f"{folder / str(job.job_id)})")
    waiting = dict(zip(submitted, todo))
    try:
        while waiting:
            for job in [j for j in waiting if j.done()]:
                record.settle(waiting.pop(job), job.result)
            if waiting:
                time.sleep(1 if executor.cluster in ("local", "debug") else 15)
    except BaseException as e:          # Ctrl-C, SIGTERM, or an error here (a callback's)
        why = stop_reason(e)
        log(f"{why}: cancelling {len(waiting)} jobs; their runs keep their last finished "
            f"epoch")
        for job in waiting:
            try:
                job.cancel(check=False)
            except Exception as e:     # noqa: BLE001 - the others are still cancelled
                print(f"could not cancel job {job.job_id}: {e}", file=sys.stderr)
        raise
