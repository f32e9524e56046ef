"""Faults a real deployment meets (issue 17): an I/O error is not damage, locks with a heartbeat,
one run identity from head to worker, a full disk, report folders that are safe to share, and
watchdogs. Each test here fails on the code before these were built (4740810)."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

import hpstudy
from hpstudy import store as R
from hpstudy.store import files as F

from conftest import quiet, same_history, tiny_config

FAULT = tiny_config(epochs=3, n_train=400)


@pytest.fixture(scope="module")
def reference(tiny_root, tmp_path_factory) -> R.Run:
    root = tmp_path_factory.mktemp("reference_store")
    r = hpstudy.run({**FAULT, "data_root": str(tiny_root)}, root=root, log=quiet)
    assert r.status == "done"
    return r


@pytest.fixture
def cfg(tiny_root) -> dict:
    return {**FAULT, "data_root": str(tiny_root)}


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(F, "RETRY_DELAYS", (0.0, 0.0))


def copy_run(reference: R.Run, store: Path, status: str | None = None) -> Path:
    d = store / reference.dir.name
    shutil.copytree(reference.dir, d)
    if status is not None:
        (d / "status").write_text(status + "\n")
        (d / "model.pt").unlink()
    return d


def digest(d: Path) -> dict[str, str]:
    def content(p: Path) -> bytes:
        with open(p, "rb") as f:          # not Path.read_bytes, which tests make fail
            return f.read()
    return {p.name: hashlib.sha256(content(p)).hexdigest() for p in sorted(d.iterdir())
            if p.is_file() and p.name != "lock"}


def failing_reads(monkeypatch, name: str, error: BaseException, times: int | None = None):
    """``Path.read_bytes`` of files called ``name`` raises ``error`` (``times`` times, or
    always); returns the list of failed calls."""
    calls = []
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == name and (times is None or len(calls) < times):
            calls.append(self)
            raise error
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return calls


# --- 2. an I/O error is not damage -----------------------------------------------------------

@pytest.mark.parametrize("name", ["model.pt", "history.csv", "config.json"])
@pytest.mark.parametrize("error", [OSError(errno.EIO, "Input/output error"), MemoryError()],
                         ids=["EIO", "MemoryError"])
def test_an_io_error_on_a_finished_run_is_raised_naming_the_file(reference, cfg, store,
                                                                 monkeypatch, name, error):
    d = copy_run(reference, store)
    before = digest(d)
    calls = failing_reads(monkeypatch, name, error)
    logs = []
    with pytest.raises(R.StoreUnavailable, match=f"{d / name}: could not be read"):
        hpstudy.run(cfg, root=store, log=logs.append)
    assert len(calls) == len(F.RETRY_DELAYS) + 1          # tried again before giving up
    assert digest(d) == before                              # nothing moved, deleted, rewritten
    assert not any(line.startswith("epoch") for line in logs)
    assert R.RunDir(d).status == "done"


def test_an_io_error_on_a_checkpoint_does_not_restart_the_run(reference, cfg, store,
                                                               monkeypatch):
    d = copy_run(reference, store, status="interrupted")
    before = digest(d)
    failing_reads(monkeypatch, "checkpoint.pt", OSError(errno.ESTALE, "Stale file handle"))
    with pytest.raises(R.StoreUnavailable, match="checkpoint.pt: could not be read"):
        hpstudy.run(cfg, root=store, log=quiet)
    assert digest(d) == before and not list(d.glob("*.corrupt*"))


def test_a_transient_error_is_retried(reference, cfg, store, monkeypatch):
    d = copy_run(reference, store)
    calls = failing_reads(monkeypatch, "model.pt", OSError(errno.EIO, "Input/output error"),
                          times=1)
    logs = []
    r = hpstudy.run(cfg, root=store, log=logs.append)
    assert len(calls) == 1 and r.status == "done" and not r.trained
    assert not any("warning" in line for line in logs)
    same_history(r.history, reference.history)
    assert not list(d.glob("*.corrupt*"))


def test_damaged_files_moved_aside_are_numbered_never_overwritten(reference, cfg, store):
    d = copy_run(reference, store, status="interrupted")
    for i in range(3):
        (d / "checkpoint.pt").write_bytes(b"garbage %d" % i)
        (d / "checkpoint.prev.pt").unlink(missing_ok=True)
        (d / "status").write_text("interrupted\n")
        r = hpstudy.run(cfg, root=store, log=quiet)
        assert r.status == "done"
    kept = sorted(p.name for p in d.glob("checkpoint.pt.corrupt*"))
    assert kept == ["checkpoint.pt.corrupt", "checkpoint.pt.corrupt.1", "checkpoint.pt.corrupt.2"]
    assert [(d / k).read_bytes() for k in kept] == [b"garbage 0", b"garbage 1", b"garbage 2"]


# --- 3. locks with a heartbeat ---------------------------------------------------------------

@pytest.fixture
def fast_locks(monkeypatch):
    from hpstudy.store import lock as L
    monkeypatch.setattr(L, "POLL_S", 0.1)
    monkeypatch.setattr(L, "REPORT_EVERY_S", 0.5)
    monkeypatch.setattr(L, "STALE_AFTER_S", 2.0)
    monkeypatch.setattr(L, "HEARTBEAT_S", 0.2)
    return L


def foreign_record(age: float, host: str = "other-host", pid: int = 4242) -> str:
    now = time.time()
    return json.dumps({"host": host, "pid": pid, "since": now - age - 100,
                       "heartbeat": now - age})


def test_a_fresh_heartbeat_of_another_host_is_waited_for(reference, cfg, store, fast_locks):
    """Where flock is host-local (NFS local_lock), a second host gets the flock at once: the
    other host's fresh heartbeat keeps it out until it goes stale."""
    d = copy_run(reference, store, status="interrupted")
    (d / "lock").write_text(foreign_record(age=0.0))          # nobody holds the flock
    logs = []
    t0 = time.monotonic()
    r = hpstudy.run(cfg, root=store, log=logs.append)
    waited = time.monotonic() - t0
    assert r.status == "done"
    assert waited >= 1.5, "trained beside another host's live run"
    busy = [line for line in logs if "is busy (held by pid 4242 on other-host" in line]
    assert busy and "heartbeat 0 s ago" in busy[0]
    assert any("takes the run over" in line for line in logs)


def test_a_stale_holder_is_taken_over_though_its_flock_is_held(reference, cfg, store,
                                                               fast_locks):
    """A dead NFS client's lock the server still keeps: its heartbeat stops, the run is taken
    over after the limit instead of waiting forever."""
    import fcntl
    import threading

    d = copy_run(reference, store, status="interrupted")
    (d / "lock").write_text(foreign_record(age=0.5))
    held = open(d / "lock", "a+")
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)       # as the dead client's lock
    out, logs = {}, []
    worker = threading.Thread(target=lambda: out.update(r=hpstudy.run(cfg, root=store,
                                                                     log=logs.append)))
    try:
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive(), "waited forever behind a stale lock"
    finally:
        held.close()
    assert out["r"].status == "done"
    assert any("has not refreshed its heartbeat" in line and "other-host" in line
               for line in logs)


def test_the_holder_refreshes_its_heartbeat_and_a_waiter_names_it(tmp_path, fast_locks):
    d = tmp_path / "run"
    with R.run_lock(d, log=quiet):
        first = fast_locks.parse_holder((d / "lock").read_text())
        time.sleep(0.7)
        later = fast_locks.parse_holder((d / "lock").read_text())
        assert (first["host"], first["pid"]) == (socket.gethostname(), os.getpid())
        assert later["heartbeat"] > first["heartbeat"] and later["since"] == first["since"]
        holder = R.lock_holder(d)          # this process's other open file counts as another
        assert holder.startswith(f"pid {os.getpid()} on {socket.gethostname()} for ")
        assert "heartbeat 0 s ago" in holder
    assert (d / "lock").read_text() == "" and R.lock_holder(d) == ""


def test_the_self_check_says_when_flock_does_not_lock(tmp_path, monkeypatch):
    from hpstudy.store import lock as L

    assert L.check_locking(tmp_path / "a", log=quiet) is True
    logs = []
    # a filesystem whose flock never conflicts: the child gets the lock this process holds
    monkeypatch.setattr(L, "_PROBE", "import sys; sys.exit(0)")
    assert L.check_locking(tmp_path / "b", log=logs.append) is False
    assert logs and "does not keep two processes apart with flock" in logs[0]
    assert str(tmp_path / "b") in logs[0]


# --- 1. one run identity from head to worker -------------------------------------------------

@pytest.fixture
def cuda_worker(monkeypatch):
    """This process resolves ``precision: auto`` as a CUDA worker does (bf16); the device
    stays the CPU, where bf16 autocast runs too (slowly)."""
    from hpstudy.store import identity

    real = identity.resolve_precision

    def enter():
        monkeypatch.setattr(identity, "resolve_precision",
                            lambda p, device: "bf16" if p == "auto" else p)

    def leave():
        monkeypatch.setattr(identity, "resolve_precision", real)

    return enter, leave


def test_a_worker_that_names_a_run_otherwise_refuses_it(cfg, store, cuda_worker):
    from hpstudy import dispatch
    from hpstudy.plan import plan_configs

    planned = plan_configs([cfg], store)                    # the CPU head: auto -> fp32
    enter, leave = cuda_worker
    enter()
    logs = []
    results = dispatch.execute(planned, "inline", root=store, log=logs.append)
    leave()
    assert results == {planned[0].hash: "failed"}
    refusal = next(line for line in logs if "of the plan is run" in line)
    assert "--worker-device" in refusal and "Nothing was trained" in refusal
    assert not list(store.glob("*/history.csv")), "a run was stored where the head never looks"


def test_a_cpu_head_renders_what_gpu_workers_trained(tiny_env, store, cuda_worker):
    """The head plans for the workers' machine class (``--worker-device cuda``): workers
    that settle 'auto' as bf16 train exactly the planned runs, and the head, which settles it
    as fp32, finds every run its notebooks ask for."""
    from hpstudy import dispatch
    from hpstudy.plan import pin_precision, plan, study_parameters
    from hpstudy.presets import load_preset

    params = study_parameters(load_preset("smoke"), ["learning_rate"],
                              {"lrs": [0.05, 0.1], "seeds": [0], "n_train": 200, "n_val": None},
                              {"runs_root": str(store)})
    assert params["learning_rate"].base.precision == "auto"
    pinned = pin_precision(params, "cuda")
    assert pinned["learning_rate"].base.precision == "bf16"
    planned = plan(pinned, store)
    enter, leave = cuda_worker
    enter()
    results = dispatch.execute(planned, "inline", root=store, log=quiet)
    leave()
    assert set(results.values()) == {"done"} and len(results) == 2
    for cfg in pinned["learning_rate"].run_configs().values():     # what the notebook asks
        r = R.find_run(cfg, root=store)
        assert r.status == "done" and R.RunDir(r.dir).resolved()["precision"] == "bf16"
    # and a plan for this machine's own class leaves the parameters alone
    assert pin_precision(params, "cpu") is params
