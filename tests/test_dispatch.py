"""Executors (hpstudy.dispatch): inline, a local process pool, Ray, SLURM through submitit.

Every executor must end with the histories ``hpstudy.run`` gives when called directly, on the
same machine and with the same number of torch threads (the thread count changes the last
bits of a CPU reduction, and a few steps amplify them); a second ``execute`` trains nothing.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hpstudy
from hpstudy import dispatch
from hpstudy import store as R
from hpstudy.dispatch import ray as ray_engine, slurm as slurm_engine
from hpstudy.plan import plan_configs

from conftest import REPO_ROOT as REPO, quiet, same_history, tiny_config

SHORT = tiny_config(n_train=200)                      # 2 epochs of 2 steps
LONG = tiny_config(n_train=200, epochs=4, lr=0.1)     # long enough to be caught mid-run


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tiny_root, tmp_path_factory):
    """cfg, threads -> the run ``hpstudy.run`` trains in this process (cached)."""
    cache = {}

    def get(cfg: dict, threads: int = 1) -> R.Run:
        key = (tuple(sorted(cfg.items())), threads)
        if key not in cache:
            with torch_threads(threads):
                cache[key] = hpstudy.run(cfg, root=tmp_path_factory.mktemp("ref"), log=quiet)
        return cache[key]

    return get


@pytest.fixture
def cfgs(tiny_root) -> list[dict]:
    return [{**c, "data_root": str(tiny_root)} for c in (SHORT, LONG)]


def check_against_reference(results: dict, cfgs: list[dict], store: Path, reference,
                            threads: int) -> None:
    assert len(results) == len(cfgs)
    for cfg in cfgs:
        ref = reference(cfg, threads)
        assert results[ref.hash] == "done"
        r = R.Run.load(store / ref.hash)
        assert r.status == "done"
        same_history(r.history, ref.history)


def execute(cfgs, executor, *, root, labels=None, **kw) -> dict:
    """``dispatch.execute`` of bare configs: planned first (the engines never hash)."""
    return dispatch.execute(plan_configs(cfgs, root, labels), executor, root=root, **kw)


def labels_for(cfgs, reference) -> dict:
    return {reference(c).hash: f"lr={c['lr']} epochs {c['epochs']}" for c in cfgs}


def check_second_execute_trains_nothing(cfgs, executor, store, **kw) -> None:
    logs = []
    again = execute(cfgs, executor, root=store, log=logs.append, **kw)
    assert set(again.values()) == {"done"}
    assert logs == [f"2 runs: 2 finished in the store, 0 to train ({executor})"]


def our_ray_processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()[1:]
            if marker in line and ("raylet" in line or "gcs_server" in line)]


@pytest.fixture(autouse=True)
def no_ray_left_behind(request):
    """No raylet or GCS of ours outlives a test (the module's Ray: its last test)."""
    yield
    if "local_ray" in request.fixturenames:
        return
    try:
        import psutil
    except ImportError:
        return
    left = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.name() in ("raylet", "gcs_server"):
                left.append(p)
    assert not left, f"Ray processes left running: {left}"


# --- inline and local ------------------------------------------------------------------------

@pytest.mark.slow
def test_inline(cfgs, store, reference):
    labels = labels_for(cfgs, reference)
    logs = []
    with torch_threads(1):
        results = execute(cfgs + [dict(cfgs[0])], "inline", root=store, labels=labels,
                          log=logs.append)
    check_against_reference(results, cfgs, store, reference, threads=1)
    assert logs[0] == "2 runs: 0 finished in the store, 2 to train (inline)"
    # longest first, and every line of a run carries its hash and label
    long_hash, short_hash = reference(cfgs[1]).hash, reference(cfgs[0]).hash
    run_lines = [s for s in logs if s.startswith("[")]
    assert run_lines[0].startswith(f"[{long_hash} {labels[long_hash]}] run {long_hash}: training")
    assert sum(s.startswith(f"[{short_hash} {labels[short_hash]}] epoch ") for s in logs) == 2
    assert sum(s.startswith(f"[{long_hash} {labels[long_hash]}] epoch ") for s in logs) == 4
    check_second_execute_trains_nothing(cfgs, "inline", store)


@pytest.mark.slow
@pytest.mark.subprocess
def test_local_pool(cfgs, store, reference):
    labels = labels_for(cfgs, reference)
    logs = []
    results = execute(cfgs, "local", root=store, jobs=2, labels=labels, log=logs.append)
    threads = max(1, dispatch.cpus() // 2)
    check_against_reference(results, cfgs, store, reference, threads=threads)
    assert f"local pool: 2 processes, {threads} torch threads each" in logs
    # the workers' lines reach this process's log, prefixed
    for h, label in labels.items():
        assert any(s.startswith(f"[{h} {label}] epoch 1/") for s in logs), logs
        assert f"[{h} {label}] done ({R.Run.load(store / h).config.epochs} epochs, trained)" in logs
    check_second_execute_trains_nothing(cfgs, "local", store, jobs=2)


def test_unknown_executor_and_missing_engines(cfgs, store, monkeypatch):
    with pytest.raises(ValueError, match="allowed values: inline, local, ray, slurm"):
        execute(cfgs, "dask", root=store)
    monkeypatch.setitem(sys.modules, "ray", None)          # as if not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[ray\]'"):
        execute(cfgs, "ray", root=store, log=quiet)
    monkeypatch.setitem(sys.modules, "submitit", None)
    monkeypatch.setattr(slurm_engine, "_SLURM_RUN", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[slurm\]'"):
        execute(cfgs, "slurm", root=store, log=quiet)
    assert not list(store.glob("*/status"))                # nothing was started


# --- SLURM through submitit, and SIGTERM -----------------------------------------------------

@pytest.mark.slow
@pytest.mark.subprocess
def test_slurm_through_submitit_local(cfgs, store, reference):
    pytest.importorskip("submitit")
    cfg = cfgs[0]
    ref = reference(cfg, 1)
    logs = []
    results = execute([cfg], "slurm", root=store, log=logs.append,
                               slurm={"cluster": "local", "time": 10, "cpus_per_task": 1})
    assert results == {ref.hash: "done"}, logs
    same_history(R.Run.load(store / ref.hash).history, ref.history)
    assert (store / ".submitit").is_dir()
    assert any(s.startswith(f"[{ref.hash}] submitted: job ") for s in logs)
    # the job's output (prefixed) is in submitit's log files
    out = "".join(p.read_text() for p in (store / ".submitit").rglob("*_log.out"))
    assert f"[{ref.hash}] epoch 2/2" in out
    assert R.list_runs(store)["hash"].tolist() == [ref.hash]     # .submitit is no run


def history_rows(d: Path) -> int:
    try:
        return max(len((d / "history.csv").read_text().splitlines()) - 1, 0)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigterm_leaves_the_run_interrupted_and_it_resumes(cfgs, store, reference, tmp_path):
    cfg = cfgs[1]
    ref = reference(cfg, 1)
    d = store / ref.hash
    log = tmp_path / "train.log"
    cmd = [sys.executable, "-m", "hpstudy", "train", *[f"{k}={v}" for k, v in cfg.items()],
           "--runs", str(store)]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                         env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    t0 = time.monotonic()
    while not ((d / "status").exists() and (d / "status").read_text().strip() == "running"
               and history_rows(d) >= 1):
        if p.poll() is not None or time.monotonic() - t0 > 240:
            p.kill()
            pytest.fail("the run could not be caught mid-run:\n" + log.read_text())
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)        # what SLURM sends at the time limit, or scancel
    rc = p.wait(timeout=120)
    out = log.read_text()
    assert rc >= 0, f"killed by the signal rather than stopped by it (rc {rc}):\n{out}"
    assert "Traceback" not in out
    assert f"interrupted: run {ref.hash} is kept at epoch" in out
    assert (d / "status").read_text().strip() == "interrupted"
    kept = R.load_checkpoint(d / "checkpoint.pt")["epoch"]
    assert 1 <= kept < 4

    logs = []
    with torch_threads(1):
        r = hpstudy.run(cfg, root=store, log=logs.append)
    assert r.resumed_from == kept and r.status == "done"
    same_history(r.history, ref.history)


def test_sigterm_handler_is_restored_after_training():
    """In this process: SIGTERM is handled during training only, then the previous handler
    is back (here a custom one)."""
    calls = []

    def custom(*a):
        calls.append(a)

    previous = signal.signal(signal.SIGTERM, custom)
    try:
        with pytest.raises(R.Terminated):
            with R.sigterm_interrupts():
                assert signal.getsignal(signal.SIGTERM) is not custom
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)          # the handler raises before this ends
        assert signal.getsignal(signal.SIGTERM) is custom
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert len(calls) == 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert issubclass(R.Terminated, KeyboardInterrupt)


# --- Ray -------------------------------------------------------------------------------------

def fake_ray(**node_reports):
    """A Ray with one alive node (10.0.0.7) whose probe reports ``node_reports`` over what
    this process would report."""

    class FakeRemote:
        def __init__(self, fn):
            self.fn = fn

        def options(self, **_):
            return self

        def remote(self):
            return {**self.fn(), **node_reports}

    class FakeRay:
        def remote(self, **_):
            return FakeRemote

        def nodes(self):
            return [{"Alive": True, "NodeID": "ab" * 28, "NodeManagerAddress": "10.0.0.7"}]

        def get(self, refs):
            return refs

    return FakeRay()


def test_ray_version_mismatch_is_an_error(monkeypatch):
    """The check itself, against a fake Ray: a worker with another torch is named."""

    pytest.importorskip("ray")
    with pytest.raises(RuntimeError, match=re.escape(
            f"(10.0.0.7) runs torch 1.0.0, this process torch {torch.__version__}")):
        ray_engine.check_versions(fake_ray(torch="1.0.0"), quiet)


def test_workers_are_compared_by_source_not_by_version_number(tmp_path):
    """hpstudy.__version__ stays 0.1.0 while the code changes: a Ray node or a SLURM job with
    other hpstudy source is refused, both fingerprints named."""
    import shutil

    from hpstudy import fingerprint

    pkg = tmp_path / "hpstudy"
    shutil.copytree(fingerprint.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    assert fingerprint.source_fingerprint(pkg) == fingerprint.source_fingerprint()
    (pkg / "train.py").write_text((pkg / "train.py").read_text() + "\n# changed\n")
    other = fingerprint.source_fingerprint(pkg)
    assert other != fingerprint.source_fingerprint()

    pytest.importorskip("ray")
    with pytest.raises(RuntimeError, match=re.escape(
            f"(10.0.0.7) runs hpstudy source {other}, this process hpstudy source "
            f"{fingerprint.source_fingerprint()}")):
        ray_engine.check_versions(fake_ray(hpstudy=other), quiet)
    pytest.importorskip("submitit")
    with pytest.raises(RuntimeError, match=f"the head {other}"):
        slurm_engine.SlurmRun()({}, str(tmp_path / "runs"), "[x]", 1, other)


LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A Ray started by this module on loopback, with 2 CPUs; shut down at the end."""
    ray = pytest.importorskip("ray")
    temp = tmp_path_factory.mktemp("ray")          # short: Ray's socket paths live below it
    try:
        ray_engine.start_local_ray(temp, num_cpus=2, num_gpus=0)
        yield ray, temp
    finally:
        ray.shutdown()
        t0 = time.monotonic()
        while our_ray_processes(str(temp)) and time.monotonic() - t0 < 30:
            time.sleep(0.2)
    assert not our_ray_processes(str(temp)), "raylet/gcs_server left running"


def listening(pids) -> list[tuple[str, int, str]]:
    psutil = pytest.importorskip("psutil")
    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.append((c.laddr.ip, c.laddr.port, p.name()))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


@pytest.mark.slow
@pytest.mark.subprocess
def test_ray_trains_every_run_on_loopback(local_ray, cfgs, store, reference):
    psutil = pytest.importorskip("psutil")
    ray, temp = local_ray
    # every server this Ray started (GCS, raylet, agents, workers) listens on loopback only
    ours = [p.pid for p in psutil.Process().children(recursive=True)]
    sockets = listening(ours)
    assert any(name.startswith("gcs_server") for _, _, name in sockets), sockets
    assert all(ip in LOOPBACK for ip, _, _ in sockets), sockets
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}

    labels = labels_for(cfgs, reference)
    logs = []
    results = execute(cfgs, "ray", root=store, jobs=2, labels=labels, log=logs.append)
    check_against_reference(results, cfgs, store, reference, threads=1)   # 2 CPUs / 2 jobs
    assert "ray: 2 tasks submitted (1 CPU each)" in logs
    assert any(s.startswith("ray: 1 node(s), hpstudy ") for s in logs)
    check_second_execute_trains_nothing(cfgs, "ray", store, jobs=2)
    assert ray.is_initialized()        # a connection execute did not open stays open


@pytest.mark.slow
@pytest.mark.subprocess
def test_ray_retries_a_killed_worker(local_ray, cfgs, store, reference, monkeypatch):
    # the task SIGKILLs its own worker once epoch 1 is stored, on its first attempt only
    monkeypatch.setenv(dispatch.TEST_DIE_AFTER_EPOCH, "1")
    cfg = cfgs[1]
    ref = reference(cfg, 1)
    logs = []
    results = execute([cfg], "ray", root=store, jobs=2, log=logs.append)
    assert results == {ref.hash: "done"}
    # Ray's retry picked the run up where the killed worker left it
    assert f"[{ref.hash}] done (4 epochs, resumed after epoch 1)" in logs, logs
    r = R.Run.load(store / ref.hash)
    same_history(r.history, ref.history)
    assert R.load_checkpoint(store / ref.hash / "checkpoint.pt")["epoch"] == 4
