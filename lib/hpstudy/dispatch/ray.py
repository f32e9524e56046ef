"""``ray``: one Ray task per run. ``address`` connects to a running cluster; without it a Ray
that listens on loopback only is started for the call and shut down after (if this process is
already connected to Ray, that connection is used and left open). A worker that dies is
retried (``RAY_MAX_RETRIES``) and the run resumes from its checkpoint. Worker output reaches
this process's stdout through Ray. Before any task, every node is checked to run this
process's hpstudy source and torch (``check_versions``)."""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from . import worker
from .worker import TEST_DIE_AFTER_EPOCH, missing, stop_reason, train_one

RAY_MAX_RETRIES = 3           # a worker that dies is retried this often (the run resumes)


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
        raise missing("ray", "ray") from None
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


def check_versions(ray, log) -> None:
    """Every alive node runs the hpstudy and torch of this process, or this is an error."""
    import torch
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ..fingerprint import source_fingerprint

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


def _ray_task(config, root, prefix, threads, die_after, expect):
    return train_one(config, root, prefix, threads=threads, die_after=die_after, expect=expect)


def run_all(todo, root, *, jobs, address, runs_per_gpu, log, record, **_):
    import shutil
    import tempfile

    from ..store import sigterm_interrupts

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
            start_local_ray(temp_dir, num_cpus=worker.cpus(), log=log)
            log(f"ray: started a local Ray on 127.0.0.1 (session files in {temp_dir})")
        check_versions(ray, log)
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
                it.config.to_dict(), str(root), it.prefix, None if on_gpu else cpus, die_after,
                it.hash)
            refs[ref] = it
        log(f"ray: {len(refs)} tasks submitted (" +
            (f"{1 / runs_per_gpu:g} GPU each" if gpus else f"{cpus} CPU each") + ")")
        pending = list(refs)
        try:
            with sigterm_interrupts():       # ray.init replaced the handler of execute
                while pending:
                    # back in Python every second: signal handlers run between waits
                    ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                    for ref in ready:
                        # a RayTaskError carries the task's own exception as its cause
                        record.settle(refs[ref], lambda: ray.get(ref),
                                      unwrap=lambda e: getattr(e, "cause", None) or e)
        except BaseException as e:      # Ctrl-C, SIGTERM, or an error here (a callback's)
            why = stop_reason(e)
            log(f"{why}: cancelling {len(pending)} Ray tasks; their runs keep their last "
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
