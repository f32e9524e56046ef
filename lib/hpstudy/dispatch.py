"""Train many runs at once: in this process, a local process pool, a Ray cluster, or SLURM.

The engines only schedule; the run store (``runs.run``) stays the single source of results.
Every unit of work is ``runs.run(config)``, which trains, resumes from the last finished epoch,
or returns a finished run, under the run folder's lock. So a task that is retried (Ray) or
requeued (SLURM) simply resumes, and two engines pointed at one store cannot train a run twice
at the same time.

``execute(configs, executor)``:

- deduplicates the configs by run hash and skips runs the store already holds as done or
  diverged (read from ``runs/<hash>/status``);
- submits the others longest first (cost = epochs * n_train, n_train None counting 40,000);
- returns run hash -> final status for every distinct config;
- prefixes every log line of a run with ``[<hash> <label>]``.

Executors:

``inline``  one run after another in this process.
``local``   a process pool (spawn) on this machine; ``jobs`` processes (default: one per run, at
            most one per CPU), torch threads split between them; worker logs reach ``log``.
``ray``     one Ray task per run. ``address`` connects to a running cluster; without it a Ray
            that listens on loopback only is started for the call and shut down after (if this
            process is already connected to Ray, that connection is used and left open). A
            worker that dies is retried (``max_retries``) and the run resumes from its
            checkpoint. Worker output reaches this process's stdout through Ray.
``slurm``   one submitit job per run (a job array); ``slurm`` holds partition, time (minutes),
            gpus_per_node, cpus_per_task, mem_gb, and ``cluster`` ("slurm", or "local" / "debug"
            to run the jobs on this machine); other keys go to submitit unchanged
            (``slurm_account``, ``slurm_qos``, ...). A job that is preempted or reaches its time
            limit is requeued and resumes. submitit's files go to ``<store>/.submitit/``.

Ray and SLURM workers must see the run store (and the data set) at the same path as this
process: a shared file system.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import Config
from .plan import cost

EXECUTORS = ("inline", "local", "ray", "slurm")
DEFAULT_EXECUTOR = "local"
RAY_MAX_RETRIES = 3           # a worker that dies is retried this often (the run resumes)
# Test hook: a Ray task whose run had not reached this epoch when it started kills its own
# worker (SIGKILL) once that epoch is stored, to show that Ray's retry resumes the run.
TEST_DIE_AFTER_EPOCH = "HPSTUDY_TEST_DIE_AFTER_EPOCH"


def _missing(package: str, extra: str) -> ImportError:
    return ImportError(f"the {extra!r} executor needs {package}, which is not installed: "
                       f"pip install -e '.[{extra}]'")


# --- planning --------------------------------------------------------------------------------

@dataclass
class Item:
    config: Config
    hash: str                 # the run hash (a provisional key where this machine cannot say)
    known: bool               # whether ``hash`` is the run's hash
    status: str               # in the store now
    prefix: str

    @property
    def cost(self) -> int:
        return cost(self.config)


def _plan(configs, root: Path, labels: dict | None) -> list[Item]:
    from . import data as D
    from . import runs

    labels = labels or {}
    items: dict[str, Item] = {}
    datasets = {}
    for i, c in enumerate(configs):
        cfg = c if isinstance(c, Config) else Config.from_dict(c)
        if cfg.data_root not in datasets:
            datasets[cfg.data_root] = D.load_cifar100(cfg.data_root)
        data = datasets[cfg.data_root]
        runs.subset_indices(cfg, data)     # a subset the data cannot give fails here, not later
        try:
            h, known = runs.run_hash(runs.resolved_config(cfg), data.identity), True
        except RuntimeError:
            # e.g. device="cuda" planned on a machine without CUDA: the worker knows the hash
            h, known = f"config{i}", False
        if h in items:
            continue
        status_file = root / h / "status"
        status = status_file.read_text().strip() if known and status_file.exists() else "new"
        label = labels.get(h)
        items[h] = Item(cfg, h, known, status, f"[{h} {label}]" if label else f"[{h}]")
    return list(items.values())


def execute(configs: list[Config], executor: str = "local", *, root=None, jobs: int | None = None,
            address: str | None = None, runs_per_gpu: int = 1, slurm: dict | None = None,
            labels: dict[str, str] | None = None, log=print,
            on_done: Callable[[str, str], None] | None = None) -> dict[str, str]:
    """Train every config (deduplicated by run hash; unfinished ones only), longest first
    (cost = epochs * n_train, None meaning 40,000). Returns run hash -> final status.

    ``on_done(hash, status)`` is called in this thread as each submitted run ends (what it
    raises, KeyboardInterrupt included, stops the dispatch as Ctrl-C would).
    """
    from . import runs

    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: allowed values: {', '.join(EXECUTORS)}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1 (got {jobs})")
    if runs_per_gpu < 1:
        raise ValueError(f"runs_per_gpu must be >= 1 (got {runs_per_gpu})")
    root = runs.store_root(root)
    items = _plan(configs, root, labels)
    results = {it.hash: it.status for it in items if it.status in runs.FINAL}
    todo = sorted((it for it in items if it.status not in runs.FINAL),
                  key=lambda it: it.cost, reverse=True)
    skipped = len(items) - len(todo)
    log(f"{len(items)} runs: {skipped} finished in the store, {len(todo)} to train ({executor})")
    if not todo:
        return results
    run_all = {"inline": _inline, "local": _local, "ray": _ray, "slurm": _slurm}[executor]
    record = Recorder(root, log, on_done)
    # SIGTERM stops a dispatch as Ctrl-C does (workers interrupted, their runs kept)
    with runs._sigterm_interrupts():
        run_all(todo, root, jobs=jobs, address=address, runs_per_gpu=runs_per_gpu,
                slurm=slurm, log=log, record=record)
    results.update(record.results)
    counts = {}
    for s in results.values():
        counts[s] = counts.get(s, 0) + 1
    log("finished: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return results


# --- the unit of work ------------------------------------------------------------------------

_LOG_QUEUE = None             # set in local-pool workers: their log lines go to the parent


def _emit(line: str) -> None:
    if _LOG_QUEUE is not None:
        _LOG_QUEUE.put(line)
    else:
        print(line, flush=True)


def _history_rows(path: Path) -> int:
    try:
        return max(len(path.read_text().splitlines()) - 1, 0)
    except OSError:
        return 0


def train_one(config: dict, root: str, prefix: str, *, threads: int | None = None,
              die_after: int | None = None, log=None) -> dict:
    """Train (or resume, or look up) one run; what a worker of every executor calls.

    Returns small values only: the run's hash, its status and the epochs it holds.
    """
    from . import runs

    if threads:
        import torch
        torch.set_num_threads(threads)
    out = log or _emit

    def prefixed(line: str) -> None:
        out(f"{prefix} {line}")

    if die_after:
        # the test hook (see TEST_DIE_AFTER_EPOCH): knows the run folder from its prefix
        d = Path(root) / prefix.strip("[]").split()[0]
        started_at = _history_rows(d / "history.csv")

        def prefixed(line: str, _log=prefixed) -> None:   # noqa: F811
            _log(line)
            # "epoch k/n" is logged before epoch k is stored: epoch k-1 is on disk now
            if (started_at < die_after and line.startswith("epoch ")
                    and int(line.split()[1].split("/")[0]) > die_after):
                _log(f"test hook: killing this worker (pid {os.getpid()}) after epoch "
                     f"{die_after}")
                os.kill(os.getpid(), signal.SIGKILL)

    r = runs.run(config, root=root, log=prefixed)
    return {"hash": r.hash, "status": r.status, "epochs": len(r.history),
            "trained": r.trained, "resumed_from": r.resumed_from}


class Recorder:
    """Takes each task's end: logs it, keeps hash -> status, calls ``on_done``."""

    def __init__(self, root: Path, log, on_done=None):
        self.root, self.log, self.on_done = root, log, on_done
        self.results: dict[str, str] = {}

    def __call__(self, it: Item, res: dict | None, error: BaseException | None = None) -> None:
        from . import runs

        if res is not None:
            how = ("from the store" if not res["trained"] else
                   f"resumed after epoch {res['resumed_from']}" if res["resumed_from"]
                   else "trained")
            self.log(f"{it.prefix} {res['status']} ({res['epochs']} epochs, {how})")
            h, status = res["hash"], res["status"]
        else:   # reported with the store's status where that says more than "failed"
            h, status = it.hash, "failed"
            p = self.root / it.hash / "status"
            if it.known and p.exists():
                stored = p.read_text().strip()
                if stored in runs.FINAL or stored == "interrupted":
                    status = stored
            self.log(f"{it.prefix} {status}: {type(error).__name__}: {error}")
        self.results[h] = status
        if self.on_done is not None:
            self.on_done(h, status)

    def settle(self, it: Item, result: Callable[[], dict], unwrap=None) -> None:
        """Record ``it`` from ``result()`` (a task's, future's or job's result): its value, or
        the exception it raises (``unwrap(e)``, where given, digs out the task's own)."""
        try:
            res = result()
        except Exception as e:
            self(it, None, unwrap(e) if unwrap else e)
        else:
            self(it, res)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- inline ----------------------------------------------------------------------------------

def _inline(todo, root, *, log, record, **_):
    for it in todo:
        record.settle(it, lambda: train_one(it.config.to_dict(), str(root), it.prefix, log=log))


# --- local process pool ----------------------------------------------------------------------

def _interrupt_once(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _pool_init(queue, threads: int) -> None:
    global _LOG_QUEUE
    _LOG_QUEUE = queue
    # Ctrl-C interrupts a run (status "interrupted"), even where the parent ignores SIGINT;
    # only the first: the parent passes a SIGINT on to its workers, which a terminal's Ctrl-C
    # has reached already, and a second one must not cut short the first one's bookkeeping
    signal.signal(signal.SIGINT, _interrupt_once)
    import torch
    torch.set_num_threads(threads)


def _local(todo, root, *, jobs, log, record, **_):
    import concurrent.futures as cf
    import multiprocessing as mp

    cpus = _cpus()
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
        futures = {pool.submit(train_one, it.config.to_dict(), str(root), it.prefix): it
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


# --- Ray -------------------------------------------------------------------------------------

def _import_ray():
    # Ray folds log lines that look alike ("epoch 1/4 ...", "epoch 2/4 ...") into one by
    # default; every epoch line of every run is shown here unless the user chose otherwise
    user_choice = "RAY_DEDUP_LOGS" in os.environ
    imported = "ray" in sys.modules
    if not user_choice and not imported:
        os.environ["RAY_DEDUP_LOGS"] = "0"       # read once, when ray is imported
    try:
        import ray
    except ImportError:
        raise _missing("ray", "ray") from None
    finally:
        if not user_choice and not imported:
            os.environ.pop("RAY_DEDUP_LOGS", None)
    if not user_choice and imported:
        ray_logging = sys.modules.get("ray._private.ray_logging")
        if ray_logging is not None and hasattr(ray_logging, "RAY_DEDUP_LOGS"):
            ray_logging.RAY_DEDUP_LOGS = False
    return ray


def start_local_ray(temp_dir: str | os.PathLike, num_cpus: int | None = None,
                    num_gpus: int | None = None, *, attempts: int = 2, log=print):
    """Start a single-node Ray in this process that listens on loopback (127.0.0.1) only.

    Ray resolves a node address given as 127.0.0.1 to the machine's outward address unless
    multi-node clusters are disabled (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read by Ray's
    ``get_node_ip_address``); with that, the GCS, raylet, workers and agents bind 127.0.0.1,
    on ports the system picks. No dashboard, no usage statistics; session files under
    ``temp_dir``. The caller shuts it down (``ray.shutdown()``).

    On a machine too busy for Ray's fixed 15 s wait for its dashboard agent, the raylet gives
    up and ``ray.init`` fails with "node timed out during startup" (ray-project/ray#65983);
    the start is then tried again, ``attempts`` times in all.
    """
    ray = _import_ray()
    from ray._private import ray_constants

    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           # the metrics servers of the autoscaler monitor and the dashboard head: a free
           # port rather than their fixed defaults (44217, 44227)
           "AUTOSCALER_METRIC_PORT": "0", "DASHBOARD_METRIC_PORT": "0"}
    saved = {k: os.environ.get(k) for k in env}
    cluster_flag = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    # the children (GCS, raylet, agents, workers) read these from the environment they
    # inherit ...
    os.environ.update(env)
    # ... this process read it when ray was imported
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        for attempt in range(1, attempts + 1):
            try:
                ctx = ray.init(_node_ip_address="127.0.0.1", include_dashboard=False,
                               _temp_dir=str(Path(temp_dir).resolve()), num_cpus=num_cpus,
                               num_gpus=num_gpus, object_store_memory=256 * 1024 ** 2,
                               log_to_driver=True, configure_logging=False)
                break
            except Exception as e:
                ray.shutdown()                  # what did start, stops
                if attempt == attempts or "timed out during startup" not in str(e):
                    raise
                log(f"ray: the local Ray did not start in time ({e}); trying again")
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_flag
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    addresses = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    if addresses != {"127.0.0.1"}:
        ray.shutdown()
        raise RuntimeError(f"the local Ray did not bind to loopback (nodes at {addresses})")
    return ctx


def _check_ray_versions(ray, log) -> None:
    """Every alive node runs the hpstudy and torch of this process, or this is an error."""
    import torch
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .fingerprint import source_fingerprint

    def probe():        # a local function: pickled by value, runs without hpstudy
        import importlib
        import socket
        out = {"host": socket.gethostname()}
        for name, get in (("hpstudy", lambda: importlib.import_module(
                              "hpstudy.fingerprint").source_fingerprint()),
                          ("torch", lambda: importlib.import_module("torch").__version__)):
            try:
                out[name] = get()
            except Exception as e:       # noqa: BLE001 - reported below
                out[name] = f"unavailable ({type(e).__name__})"
        return out

    remote = ray.remote(num_cpus=0, max_retries=1)(probe)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    refs = [remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote() for n in nodes]
    head = {"hpstudy": source_fingerprint(), "torch": torch.__version__}
    for node, got in zip(nodes, ray.get(refs)):
        for name, want in head.items():
            if got[name] != want:
                what = "hpstudy source" if name == "hpstudy" else name
                raise RuntimeError(
                    f"Ray worker {got['host']} ({node['NodeManagerAddress']}) runs {what} "
                    f"{got[name]}, this process {what} {want}: install the same code on "
                    f"every node")
    log(f"ray: {len(nodes)} node(s), hpstudy source {head['hpstudy']}, torch {head['torch']}")


def _ray_task(config, root, prefix, threads, die_after):
    return train_one(config, root, prefix, threads=threads, die_after=die_after)


def _ray(todo, root, *, jobs, address, runs_per_gpu, log, record, **_):
    import shutil
    import tempfile

    from . import runs

    ray = _import_ray()
    own = not ray.is_initialized()
    temp_dir = None
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None   # ray.init replaces it
    try:
        if own and address:
            ray.init(address=address, log_to_driver=True, configure_logging=False)
            log(f"ray: connected to {address}")
        elif own:
            temp_dir = tempfile.mkdtemp(prefix="hpstudy-ray-")
            start_local_ray(temp_dir, num_cpus=_cpus(), log=log)
            log(f"ray: started a local Ray on 127.0.0.1 (session files in {temp_dir})")
        _check_ray_versions(ray, log)
        resources = ray.cluster_resources()
        nodes = [n for n in ray.nodes() if n["Alive"]]
        node_cpus = max(int(n["Resources"].get("CPU", 1)) for n in nodes)
        total = int(resources.get("CPU", 1))
        n_jobs = jobs or min(len(todo), total)
        cpus = max(1, min(node_cpus, total // n_jobs))
        gpus = resources.get("GPU", 0) > 0
        die_after = int(os.environ.get(TEST_DIE_AFTER_EPOCH) or 0) or None
        task = ray.remote(max_retries=RAY_MAX_RETRIES)(_ray_task)
        refs = {}
        for it in todo:
            on_gpu = gpus and it.config.device in ("auto", "cuda")
            opts = {"num_gpus": 1 / runs_per_gpu, "num_cpus": 1} if on_gpu else {"num_cpus": cpus}
            ref = task.options(**opts, name=f"hpstudy {it.hash}").remote(
                it.config.to_dict(), str(root), it.prefix, None if on_gpu else cpus, die_after)
            refs[ref] = it
        log(f"ray: {len(refs)} tasks submitted (" +
            (f"{1 / runs_per_gpu:g} GPU each" if gpus else f"{cpus} CPU each") + ")")
        pending = list(refs)
        try:
            with runs._sigterm_interrupts():       # ray.init replaced the handler of execute
                while pending:
                    # back in Python every second: signal handlers run between waits
                    ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                    for ref in ready:
                        # a RayTaskError carries the task's own exception as its cause
                        record.settle(refs[ref], lambda: ray.get(ref),
                                      unwrap=lambda e: getattr(e, "cause", None) or e)
        except KeyboardInterrupt:
            log(f"interrupted: cancelling {len(pending)} Ray tasks; their runs keep their last "
                f"finished epoch")
            for ref in pending:
                ray.cancel(ref)             # a KeyboardInterrupt in the task: "interrupted"
            ray.wait(pending, num_returns=len(pending), timeout=60)
            raise
    finally:
        if own:
            ray.shutdown()
            if main and sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


# --- SLURM (submitit) ------------------------------------------------------------------------

def _slurm_run_class():
    try:
        import submitit
    except ImportError:
        raise _missing("submitit", "slurm") from None

    class SlurmRun(submitit.helpers.Checkpointable):
        """One run as a SLURM job. On preemption or the time-limit signal submitit calls
        ``checkpoint()``, which requeues the same call: the run resumes from its last
        finished epoch. SIGTERM (scancel, the time limit itself) leaves it ``interrupted``."""

        def __call__(self, config: dict, root: str, prefix: str,
                     threads: int | None = None, fingerprint: str | None = None) -> dict:
            # a job on a node with other hpstudy code would train (and hash) differently
            from .fingerprint import check_same
            check_same(fingerprint, f"SLURM job {os.environ.get('SLURM_JOB_ID', '?')} on "
                                    f"{socket.gethostname()}")
            # torch would use every core of the node, not the job's share
            threads = threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or 0) or _cpus()
            return train_one(config, root, prefix, threads=threads)

        def checkpoint(self, config: dict, root: str, prefix: str, threads: int | None = None,
                       fingerprint: str | None = None):
            print(f"{prefix} requeued: the run resumes from its last finished epoch",
                  flush=True)
            return submitit.helpers.DelayedSubmission(self, config, root, prefix, threads,
                                                      fingerprint)

    SlurmRun.__module__, SlurmRun.__qualname__ = __name__, "SlurmRun"
    return SlurmRun


_SLURM_RUN = None


def __getattr__(name: str):
    # ``SlurmRun`` exists once submitit is importable; defined lazily so that pickles of it
    # refer to hpstudy.dispatch.SlurmRun rather than carry the class
    global _SLURM_RUN
    if name == "SlurmRun":
        if _SLURM_RUN is None:
            _SLURM_RUN = _slurm_run_class()
        return _SLURM_RUN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SLURM_KEYS = {"partition": "slurm_partition", "time": "timeout_min",
              "gpus_per_node": "gpus_per_node", "cpus_per_task": "cpus_per_task",
              "mem_gb": "mem_gb"}


def _slurm(todo, root, *, jobs, slurm, log, record, **_):
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
    from .fingerprint import source_fingerprint

    submitted = executor.map_array(fn, [it.config.to_dict() for it in todo],
                                   [str(root)] * len(todo), [it.prefix for it in todo],
                                   [threads] * len(todo), [source_fingerprint()] * len(todo))
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
    except KeyboardInterrupt:
        log(f"interrupted: cancelling {len(waiting)} jobs; their runs keep their last finished "
            f"epoch")
        for job in waiting:
            try:
                job.cancel(check=False)
            except Exception as e:     # noqa: BLE001 - the others are still cancelled
                print(f"could not cancel job {job.job_id}: {e}", file=sys.stderr)
        raise
