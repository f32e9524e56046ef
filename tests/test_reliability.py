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


# --- 4. a report folder is safe to share -----------------------------------------------------

def test_a_second_report_on_one_folder_refuses_naming_the_holder(tiny_env, store, tmp_path,
                                                                 capsys):
    from hpstudy import report_folder
    from hpstudy.cli import main as cli_main

    out = tmp_path / "reports"
    with report_folder.claim(out, "abc", log=quiet):
        rc = cli_main(["report", "data", "--preset", "smoke", "--out", str(out),
                       "--runs", str(store)])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{out} is being written by another hpstudy report (pid {os.getpid()} on " \
           f"{socket.gethostname()} since" in err


def test_a_folder_holds_one_parameter_set(tmp_path):
    from hpstudy import report_folder
    from hpstudy.studies import write_json

    out = tmp_path / "reports"
    logs = []
    with report_folder.claim(out, "first", log=logs.append):
        write_json(out / "results" / "learning_rate.json", {"report_id": "first"})
        write_json(out / "summary.json", {"report_id": "first"})
        (out / "01_learning_rate.html").write_text("first")
    with report_folder.claim(out, "first", log=logs.append):       # the same: kept
        assert (out / "01_learning_rate.html").read_text() == "first"
    assert logs == []
    with report_folder.claim(out, "second", log=logs.append):      # another: moved aside
        assert sorted(p.name for p in out.iterdir()) == [".report.lock", "previous"]
        assert (out / "previous" / "01_learning_rate.html").read_text() == "first"
        assert (out / "previous" / "results" / "learning_rate.json").exists()
    assert len(logs) == 1 and "report first" in logs[0] and "previous" in logs[0]


def test_a_page_cites_only_results_of_its_own_parameter_set(tmp_path):
    from hpstudy.notebook import Session
    from hpstudy.studies import validate, write_json

    results = tmp_path / "results"
    write_json(results / "learning_rate.json",
               {"report_id": "A", "winner": {"label": "lr=0.05", "detected": True}})
    (results / "mixup.json").write_text('{"report_id": "A", "winner": {"lab')   # cut short

    def session(rid):
        return Session(validate("schedule", {"results_path": str(results / "schedule.json"),
                                             "report_id": rid}))

    assert session("A").upstream("learning_rate") == {"label": "lr=0.05", "detected": True}
    assert session("B").upstream("learning_rate") is None     # another -p variant's winner
    assert session(None).upstream("learning_rate") is None
    assert session("A").upstream("mixup") is None              # half-written: not a crash


def test_a_half_written_results_json_fails_its_study_not_the_report(tmp_path, monkeypatch):
    from hpstudy import report

    def fake_execute(source, out_nb, params, kernel, cell_timeout=None):
        Path(params["results_path"]).write_text('{"study": "schedule", "sett')

    monkeypatch.setattr(report, "execute_notebook", fake_execute)
    o = report.run_study("schedule", {}, tmp_path, "python3", False)
    assert o["status"] == "failed" and "schedule.json: unreadable" in o["error"]


def test_concurrent_writers_of_one_json_never_collide(tmp_path):
    """Two reports (threads here) writing one results file: each write is whole; no writer
    trips over another's temporary file (the old fixed name ``<file>.tmp`` did)."""
    import threading

    from hpstudy.studies import write_json

    path = tmp_path / "results" / "x.json"
    errors = []
    payload = {"values": list(range(20000))}

    def writer(tag):
        try:
            for i in range(60):
                write_json(path, {**payload, "writer": tag, "i": i})
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(path.read_text())["i"] == 59
    assert not list(path.parent.glob("*.tmp"))


# --- 5. watchdogs ----------------------------------------------------------------------------

def test_a_hung_cell_fails_its_notebook_within_the_timeout(tmp_path, monkeypatch):
    import nbformat

    from hpstudy import report

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time\ntime.sleep(600)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    src = tmp_path / "hang.ipynb"
    nbformat.write(nb, src)
    kernel = report.ensure_kernel()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        report.execute_notebook(src, tmp_path / "out.ipynb", {}, kernel, cell_timeout=3)
    assert time.monotonic() - t0 < 120


def test_the_preset_key_cell_timeout_is_checked(tmp_path):
    from hpstudy.presets import DEFAULT_CELL_TIMEOUT, PresetError, load_preset

    assert load_preset("paper").cell_timeout == DEFAULT_CELL_TIMEOUT >= 8 * 24 * 3600
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\ncell_timeout: 0\n")
    with pytest.raises(PresetError, match=r"bad.yaml:2: 'cell_timeout' must be a number of "
                                          r"seconds >= 1"):
        load_preset(str(bad))
    bad.write_text("description: x\ncell_timeout: soon\n")
    with pytest.raises(PresetError, match="'cell_timeout' must be a int"):
        load_preset(str(bad))


def long_config(tiny_root, **kw) -> dict:
    return {**tiny_config(epochs=60, n_train=400, lr=0.01), "data_root": str(tiny_root), **kw}


@pytest.mark.slow
@pytest.mark.subprocess
def test_pool_workers_die_with_a_killed_runner(tiny_root, store, tmp_path):
    """kill -9 of the process that dispatches: its pool worker stops within seconds, its run
    kept interrupted at its last finished epoch, instead of training on as an orphan."""
    import signal
    import subprocess
    import sys

    import psutil

    cfg = long_config(tiny_root)
    script = tmp_path / "dispatch.py"
    script.write_text(
        "import json, sys\nfrom hpstudy import dispatch\nfrom hpstudy.plan import plan_configs\n"
        "if __name__ == '__main__':\n"
        f"    cfg = json.loads({json.dumps(json.dumps(cfg))})\n"
        f"    dispatch.execute(plan_configs([cfg], {str(store)!r}), 'local', "
        f"root={str(store)!r}, jobs=1, log=lambda line: print(line, flush=True))\n")
    log = tmp_path / "dispatch.log"
    p = subprocess.Popen([sys.executable, str(script)], stdout=open(log, "wb"),
                         stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        while not any((d / "history.csv").exists() for d in store.glob("*")):
            assert p.poll() is None and time.monotonic() - t0 < 240, log.read_text()
            time.sleep(0.2)
        workers = psutil.Process(p.pid).children(recursive=True)
        workers = [w for w in workers if "multiprocessing" in " ".join(w.cmdline())
                   and "resource_tracker" not in " ".join(w.cmdline())]
        assert workers, log.read_text()
        p.send_signal(signal.SIGKILL)
        p.wait()
        gone, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, f"orphaned workers still running: {alive}"
    finally:
        if p.poll() is None:
            p.kill()
    (d,) = [d for d in store.glob("*") if (d / "history.csv").exists()]
    assert R.RunDir(d).status == "interrupted"
    kept = len(R.read_history(d / "history.csv"))
    assert 1 <= kept < 60
    r = hpstudy.run(cfg, root=store, log=quiet)
    assert r.status == "done" and r.resumed_from == kept


@pytest.mark.slow
@pytest.mark.subprocess
def test_an_error_in_a_callback_ends_the_dispatch_promptly(tiny_root, store):
    """``on_done`` raising (the report's index.write failing, say) stops the other workers
    at once; the old pool waited for every running run to end (shutdown(wait=True))."""
    from hpstudy import dispatch
    from hpstudy.plan import plan_configs

    short = {**tiny_config(epochs=1, n_train=200), "data_root": str(tiny_root)}
    planned = plan_configs([long_config(tiny_root), short], store)
    t0 = time.monotonic()

    def on_done(h, status):
        raise RuntimeError("index.html: the disk is full")

    with pytest.raises(RuntimeError, match="the disk is full"):
        dispatch.execute(planned, "local", root=store, jobs=2, log=quiet, on_done=on_done)
    assert time.monotonic() - t0 < 240
    long_run = next(r for r in planned if r.config.epochs == 60)
    assert R.RunDir(long_run.dir).status == "interrupted"
    assert R.RunDir(long_run.dir).progress()[0] < 60


# --- a full disk -----------------------------------------------------------------------------

def full_disk_after(monkeypatch, name: str, allowed: int) -> list:
    """Writes of files called ``name`` fail with ENOSPC after ``allowed`` have succeeded (at
    the first write of data, as a full filesystem refuses)."""
    from hpstudy import atomic

    calls = []
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        if "w" in mode and Path(path).name.startswith(f".{name}."):
            calls.append(path)
            if len(calls) > allowed:
                return Full(f)
        return f

    monkeypatch.setattr(atomic, "open", fake_open, raising=False)
    return calls


def test_a_full_disk_during_a_checkpoint_loses_at_most_that_epoch(reference, cfg, store,
                                                                  monkeypatch):
    full_disk_after(monkeypatch, "checkpoint.pt", allowed=1)
    logs = []
    with pytest.raises(OSError) as e:
        hpstudy.run(cfg, root=store, log=logs.append)
    d = store / reference.hash
    assert e.value.errno == errno.ENOSPC and str(d / "checkpoint.pt") in str(e.value)
    assert any(line.startswith("error: ") and "kept at epoch 1" in line for line in logs)
    assert not list(d.glob(".*.tmp"))                         # no half-written temporary
    assert len(R.read_history(d / "history.csv")) == 1
    monkeypatch.undo()
    r = hpstudy.run(cfg, root=store, log=quiet)               # space again: it resumes
    assert r.resumed_from == 1 and r.status == "done"
    same_history(r.history, reference.history)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_full_disk_during_a_report_ends_it_naming_the_file(tiny_root, tmp_path, monkeypatch,
                                                              capsys):
    """The index cannot be written: the command ends with the path in its message, the
    trained runs stay done, and the next report renders from them without training."""
    from hpstudy.cli import main as cli_main

    preset = tmp_path / "tiny.yaml"
    preset.write_text("description: tiny\ncommon: {width: 0.25, epochs: 1, device: cpu, "
                      "n_val: null, n_train: 200, seeds: [0]}\n"
                      "studies:\n  learning_rate: {lrs: [0.05, 0.1]}\n")
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["report", "learning_rate", "--preset", str(preset), "--out", str(out), "--runs",
            str(runs), "--data-root", str(tiny_root), "--jobs", "1"]
    full_disk_after(monkeypatch, "index.html", allowed=0)
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out / "index.html") in err
    assert sorted(R.RunDir(d).status for d in runs.iterdir() if d.is_dir()
                  and not d.name.startswith(".")) == ["done", "done"]
    monkeypatch.undo()
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" not in printed                 # rendered from the store: no training
    assert (out / "index.html").exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_killed_pool_worker_does_not_hang_the_dispatch(tiny_root, store):
    """kill -9 of one pool worker breaks the pool; the pool terminates the others, which keep
    their runs interrupted and exit (before, a worker that turned SIGTERM into an interrupted
    run stayed alive and the pool's shutdown waited for it forever)."""
    import signal
    import threading

    import psutil

    from hpstudy import dispatch
    from hpstudy.plan import plan_configs

    planned = plan_configs([long_config(tiny_root), long_config(tiny_root, lr=0.02)], store)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=dispatch.execute(
        planned, "local", root=store, jobs=2, log=quiet)), daemon=True)
    t0 = time.monotonic()
    t.start()
    while not all(R.RunDir(r.dir).progress()[0] >= 1 for r in planned):
        assert time.monotonic() - t0 < 240 and t.is_alive()
        time.sleep(0.2)
    workers = [p for p in psutil.Process().children()
               if "multiprocessing" in " ".join(p.cmdline())
               and "resource_tracker" not in " ".join(p.cmdline())]
    assert len(workers) == 2
    workers[0].send_signal(signal.SIGKILL)
    t.join(timeout=120)
    assert not t.is_alive(), "the dispatch hung after a worker was killed"
    assert set(out["r"].values()) <= {"failed", "interrupted"}
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    # the killed worker's run stays "running" (nothing could record it), the other one was
    # interrupted by the pool's terminate(); both resume from their last finished epoch
    assert sorted(R.RunDir(r.dir).status for r in planned) == ["interrupted", "running"]
    assert all(1 <= R.RunDir(r.dir).progress()[0] < 60 for r in planned)
