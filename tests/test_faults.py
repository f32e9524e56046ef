"""Faults and bad input: killed and interrupted runs, damaged and malicious files in the run
store, two runners on one run, and broken data sets.

Every test compares against one uninterrupted reference run (trained once per module): a run
that was killed, interrupted or repaired must end with exactly the same history (all but the
wall-clock ``seconds``) and weights.
"""
from __future__ import annotations

import inspect
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import hpstudy
from hpstudy import DataError, StoreError
from hpstudy import data as D
from hpstudy import store as R
from hpstudy import train as T
from hpstudy.cli import main as cli_main

from conftest import REPO_ROOT, quiet, same_history, tiny_config, write_tiny_cifar

# 4 epochs of 4 steps: long enough to be caught mid-run, short enough for a shared CPU
FAULT = tiny_config(epochs=4, n_train=400)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(scope="module")
def reference(tiny_root, tmp_path_factory) -> R.Run:
    """FAULT trained once, uninterrupted."""
    root = tmp_path_factory.mktemp("reference_store")
    r = hpstudy.run({**FAULT, "data_root": str(tiny_root)}, root=root, log=quiet)
    assert r.status == "done" and len(r.history) == 4
    return r


@pytest.fixture
def cfg(tiny_root) -> dict:
    return {**FAULT, "data_root": str(tiny_root)}


def copy_run(reference: R.Run, store: Path, status: str | None = None) -> Path:
    d = store / reference.dir.name
    shutil.copytree(reference.dir, d)
    if status is not None:             # as if the process died before finishing
        (d / "status").write_text(status + "\n")
        (d / "model.pt").unlink()
    return d


def check_final(r: R.Run, reference: R.Run) -> None:
    assert r.status == "done"
    same_history(r.history, reference.history)
    same_weights(r.model, reference.model)
    assert not list(r.dir.glob(".*.tmp"))
    # and what is on disk reads back the same
    same_history(R.read_history(r.dir / "history.csv"), reference.history)
    assert R.load_checkpoint(r.dir / "checkpoint.pt")["epoch"] == 4


# --- killed and interrupted runs -------------------------------------------------------------

def train_cmd(cfg: dict, store: Path) -> list[str]:
    return [sys.executable, "-m", "hpstudy", "train",
            *[f"{k}={v}" for k, v in cfg.items()], "--runs", str(store)]


def start(cmd: list[str], tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.log"
    # SIGINT may be ignored by whatever started pytest (a background job); the child must
    # get Python's default Ctrl-C handling, as in a terminal
    p = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=open(out, "wb"), stderr=subprocess.STDOUT,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return p, out


def history_rows(d: Path) -> int:
    try:
        return max(len((d / "history.csv").read_text().splitlines()) - 1, 0)
    except FileNotFoundError:
        return 0


def wait_mid_run(p: subprocess.Popen, log: Path, store: Path, timeout: float = 240) -> Path:
    """Poll until the run folder holds >= 1 finished epoch while its status is 'running'."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for d in store.glob("*"):
            status = (d / "status").read_text().strip() if (d / "status").exists() else ""
            if status == "running" and history_rows(d) >= 1:
                return d
        if p.poll() is not None:
            pytest.fail(f"the run ended (rc {p.returncode}) before it could be caught mid-run:\n"
                        + log.read_text())
        time.sleep(0.01)
    p.kill()
    pytest.fail("no epoch finished in time:\n" + log.read_text())


@pytest.mark.slow
@pytest.mark.subprocess
def test_resume_after_sigkill(reference, cfg, store, tmp_path):
    p, log = start(train_cmd(cfg, store), tmp_path, "killed")
    d = wait_mid_run(p, log, store)
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=60) == -signal.SIGKILL
    done_before = R.load_checkpoint(d / "checkpoint.pt")["epoch"]
    assert 1 <= done_before < 4
    assert (d / "status").read_text().strip() == "running"      # nobody could say otherwise
    assert not (d / "model.pt").exists()
    # a temporary file a kill mid-write leaves behind
    (d / f".checkpoint.pt.{p.pid}.tmp").write_bytes(b"half a checkpoint")

    logs = []
    r = hpstudy.run(cfg, root=store, log=logs.append)
    assert r.dir == d and r.trained
    assert r.resumed_from >= done_before >= 1
    assert any(f"resuming after epoch {r.resumed_from}" in s for s in logs)
    assert sum(s.startswith("epoch ") for s in logs) == 4 - r.resumed_from
    check_final(r, reference)


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigint_exits_cleanly_and_resumes(reference, cfg, store, tmp_path):
    p, log = start(train_cmd(cfg, store), tmp_path, "interrupted")
    d = wait_mid_run(p, log, store)
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=120)
    out = log.read_text()
    assert rc == 130, out
    assert "Traceback" not in out
    assert "run the same command again to resume" in out
    assert f"interrupted: run {d.name} is kept at epoch" in out
    assert (d / "status").read_text().strip() == "interrupted"
    kept = R.load_checkpoint(d / "checkpoint.pt")["epoch"]
    assert 1 <= kept < 4
    assert f"kept at epoch {kept}" in out

    logs = []
    r = hpstudy.run(cfg, root=store, log=logs.append)
    assert r.resumed_from == kept
    assert any(f"resuming after epoch {kept}" in s for s in logs)
    check_final(r, reference)


CONTENDER = r"""
import sys, time
from pathlib import Path
import hpstudy.cli, hpstudy.store, hpstudy.data
hpstudy.data.load_cifar100(sys.argv[1])          # warm: imports and data are not the race
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.01)
sys.exit(hpstudy.cli.main(sys.argv[4:]))
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_runners_on_one_run(reference, cfg, tiny_root, store, tmp_path):
    data = D.load_cifar100(tiny_root)
    h = R.run_hash(R.resolved_config(hpstudy.Config.from_dict(cfg)), data.identity)
    d = store / h
    procs = {}
    for name in ("first", "second"):
        cmd = [sys.executable, "-c", CONTENDER, str(tiny_root), str(tmp_path / f"{name}.ready"),
               str(tmp_path / f"{name}.go"), *train_cmd(cfg, store)[3:]]
        procs[name] = start(cmd, tmp_path, name)
    t0 = time.monotonic()
    while not all((tmp_path / f"{n}.ready").exists() for n in procs):
        assert time.monotonic() - t0 < 120 and all(p.poll() is None for p, _ in procs.values())
        time.sleep(0.01)
    (tmp_path / "first.go").touch()
    while not ((d / "status").exists() and (d / "status").read_text().strip() == "running"):
        assert time.monotonic() - t0 < 180 and procs["first"][0].poll() is None
        time.sleep(0.005)
    (tmp_path / "second.go").touch()                    # the first one holds the run now
    outs = {}
    for name, (p, log) in procs.items():
        assert p.wait(timeout=300) == 0, log.read_text()
        outs[name] = log.read_text()
    assert f"run {h}: training" in outs["first"]
    assert "busy" not in outs["first"]
    holder = f"pid {procs['first'][0].pid} on {R.HOST}"      # the lock names process and host
    assert f"run {h} is busy (held by {holder} for " in outs["second"]
    assert f"run {h}: done, 4 epochs (from the store)" in outs["second"]
    assert "epoch 1/4" not in outs["second"]
    for out in outs.values():
        assert out.strip().endswith(f"done: {d}") and "Traceback" not in out

    # one clean folder, and both processes reported the same run
    names = sorted(p.name for p in d.iterdir())
    assert names == ["checkpoint.prev.pt", "checkpoint.pt", "config.json", "history.csv",
                     "lock", "model.pt", "status"]
    check_final(R.Run.load(d), reference)
    r = hpstudy.run(cfg, root=store, log=quiet)
    assert not r.trained
    check_final(r, reference)


# --- damaged files in the store --------------------------------------------------------------

class Evil:
    """A pickle that runs a shell command when loaded by an unrestricted unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def damage(p: Path, how: str, tmp_path: Path) -> None:
    raw = p.read_bytes()
    if how == "truncated":             # the disk filled mid-write
        p.write_bytes(raw[: len(raw) * 2 // 3])
    elif how == "garbage":
        p.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    elif how == "empty":
        p.write_bytes(b"")
    elif how == "malicious":
        torch.save({"format": 1, "epoch": 4, "model": Evil(tmp_path / "pwned")}, p)
    else:
        raise ValueError(how)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "malicious"])
def test_damaged_checkpoint_resumes_from_the_previous_one(reference, cfg, store, tmp_path, how):
    d = copy_run(reference, store, status="running")
    damage(d / "checkpoint.pt", how, tmp_path)
    logs = []
    r = hpstudy.run(cfg, root=store, log=logs.append)
    warnings = [s for s in logs if s.startswith("warning:")]
    assert len(warnings) == 1 and str(d / "checkpoint.pt") in warnings[0]
    assert (d / "checkpoint.pt.corrupt").exists()             # never loaded again
    assert r.resumed_from == 3 and any("resuming after epoch 3" in s for s in logs)
    check_final(r, reference)
    assert not (tmp_path / "pwned").exists()


def test_both_checkpoints_damaged_trains_from_scratch(reference, cfg, store, tmp_path):
    d = copy_run(reference, store, status="interrupted")
    damage(d / "checkpoint.pt", "truncated", tmp_path)
    damage(d / "checkpoint.prev.pt", "garbage", tmp_path)
    logs = []
    r = hpstudy.run(cfg, root=store, log=logs.append)
    warned = " ".join(s for s in logs if s.startswith("warning:"))
    assert str(d / "checkpoint.pt") in warned and str(d / "checkpoint.prev.pt") in warned
    assert r.resumed_from == 0 and any(f"run {d.name}: training" in s for s in logs)
    check_final(r, reference)


@pytest.mark.parametrize("how", ["cut_mid_row", "cut_mid_number", "rows_missing", "garbage"])
def test_damaged_history_of_a_finished_run_is_rebuilt(reference, cfg, store, how):
    d = copy_run(reference, store)
    p = d / "history.csv"
    raw = p.read_bytes()
    p.write_bytes({"cut_mid_row": raw[: raw.rindex(b"\n4,") + 12],
                   "cut_mid_number": raw[:-3],
                   "rows_missing": raw[: raw.rindex(b"\n3,") + 1],
                   "garbage": raw[:60] + b"\x00\xff" * 40}[how])
    logs = []
    r = hpstudy.run(cfg, root=store, log=logs.append)
    warnings = [s for s in logs if s.startswith("warning:")]
    assert len(warnings) == 1
    assert str(p) in warnings[0] and "rebuilt it from checkpoint.pt" in warnings[0]
    assert not r.trained                                  # nothing retrained
    check_final(r, reference)


def test_damaged_history_and_final_checkpoint_resume(reference, cfg, store, tmp_path):
    d = copy_run(reference, store)
    (d / "history.csv").write_bytes((d / "history.csv").read_bytes()[:-20])
    damage(d / "checkpoint.pt", "truncated", tmp_path)
    logs = []
    r = hpstudy.run(cfg, root=store, log=logs.append)
    assert r.resumed_from == 3
    check_final(r, reference)


@pytest.mark.parametrize("how", ["truncated", "malicious", "missing"])
def test_damaged_model_of_a_finished_run_is_rebuilt(reference, cfg, store, tmp_path, how):
    d = copy_run(reference, store)
    p = d / "model.pt"
    if how == "truncated":
        p.write_bytes(p.read_bytes()[:1000])
    elif how == "malicious":
        p.write_bytes(pickle.dumps(Evil(tmp_path / "pwned"), protocol=2))
    else:
        p.unlink()
    logs = []
    r = hpstudy.run(cfg, root=store, log=logs.append)
    warnings = [s for s in logs if s.startswith("warning:")]
    assert len(warnings) == 1 and str(p) in warnings[0]
    assert "rebuilt model.pt from checkpoint.pt" in warnings[0]
    assert not r.trained
    check_final(r, reference)
    assert not (tmp_path / "pwned").exists()


def test_damaged_config_json_is_named_and_rewritten(reference, cfg, store):
    d = copy_run(reference, store)
    (d / "config.json").write_bytes((d / "config.json").read_bytes()[:100])
    logs = []
    r = hpstudy.run(cfg, root=store, log=logs.append)
    assert any(str(d / "config.json") in s for s in logs if s.startswith("warning:"))
    assert not r.trained and R.Run.load(d).config == r.config
    check_final(r, reference)


# A run that diverges in epoch 2: the checkpoint holds epoch 1 only, so "rebuilding" the
# history from it would silently drop the diverged epoch; the store resumes it instead, and it
# diverges again at the same epoch. Where a large lr diverges depends on rounding: lr=20
# (measured, torchvision init) diverged in epoch 2 with AVX-512 kernels and 2 threads, in
# epoch 4 with AVX2 kernels and 2 threads, and not at all with AVX-512 and 1 thread. So a
# tame lr trains, and the weights are set to NaN when epoch 2 starts: the loop's own check
# stops the run there, on every machine.
DIVERGES = tiny_config(lr=0.02, epochs=4, n_train=400)


def nan_weights_in_epoch_2(m: pytest.MonkeyPatch) -> None:
    real = T.train_one_epoch
    signature = inspect.signature(real)

    def patched(*args, **kwargs):
        arg = signature.bind(*args, **kwargs).arguments
        if arg["epoch"] == 1:                      # 0-based: the second epoch
            with torch.no_grad():
                for w in arg["model"].parameters():
                    w.fill_(float("nan"))
        return real(*args, **kwargs)

    m.setattr(T, "train_one_epoch", patched)


@pytest.fixture(scope="module")
def diverged(tiny_root, tmp_path_factory) -> R.Run:
    root = tmp_path_factory.mktemp("diverged_store")
    with pytest.MonkeyPatch.context() as m:
        nan_weights_in_epoch_2(m)
        r = hpstudy.run({**DIVERGES, "data_root": str(tiny_root)}, root=root, log=quiet)
    assert r.status == "diverged" and list(r.history["epoch"]) == [1, 2]
    assert R.load_checkpoint(r.dir / "checkpoint.pt")["epoch"] == 1
    return r


@pytest.mark.parametrize("how", ["cut", "garbage"])
def test_damaged_history_of_a_diverged_run_is_not_made_up(diverged, tiny_env, store, how,
                                                          monkeypatch):
    first = R.Run.load(copy_run(diverged, store))
    cfg = DIVERGES
    p = first.dir / "history.csv"
    p.write_bytes(p.read_bytes()[:-10] if how == "cut" else b"\x00garbage\n")
    logs = []
    nan_weights_in_epoch_2(monkeypatch)            # what made it diverge, again on resuming
    again = hpstudy.run(cfg, log=logs.append)
    assert any(str(p) in s for s in logs if s.startswith("warning:"))
    assert again.status == "diverged"
    same_history(again.history, first.history)
    same_history(R.read_history(p), first.history)


# --- weights_only: a pickle in the store cannot run code -------------------------------------

@pytest.mark.subprocess          # the liveness check runs the payload's shell
def test_malicious_pickles_are_refused(reference, tmp_path):
    marker = tmp_path / "pwned"
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps(Evil(marker), protocol=2))
    zipped = tmp_path / "zipped.pt"
    torch.save({"format": 1, "model": Evil(marker)}, zipped)

    for p in (legacy, zipped):
        with pytest.raises(StoreError, match=str(p)):
            R.load_weights(p)
        with pytest.raises(StoreError, match=str(p)):
            R.load_checkpoint(p)
    d = tmp_path / "run"
    shutil.copytree(reference.dir, d)
    shutil.copy(legacy, d / "model.pt")
    with pytest.raises(StoreError, match="model.pt: cannot be loaded"):
        R.Run.load(d).model
    assert not marker.exists()

    # the payload is live: an unrestricted load does run it (so the test above can fail)
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(Evil(live)))
    assert live.exists()


# --- broken data sets: each an error naming the file, before anything is trained ------------

def rewrite(path: Path, change) -> None:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    d = change(d)
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def set_key(key, value):
    def change(d):
        d[key] = value(d) if callable(value) else value
        return d
    return change


def bad_root(tmp_path: Path, file: str, change) -> Path:
    root = write_tiny_cifar(tmp_path / "data")
    change(root / "cifar-100-python" / file)
    return root


BROKEN = {
    "missing_test": ("test", lambda p: p.unlink(), "test: missing"),
    "truncated_train": ("train", lambda p: p.write_bytes(p.read_bytes()[:200_000]),
                        "is corrupt or truncated"),
    "not_a_pickle": ("train", lambda p: p.write_bytes(b"<html>404 Not Found</html>"),
                     "cannot be read as a CIFAR-100 pickle"),
    "not_a_dict": ("train", lambda p: p.write_bytes(pickle.dumps([1, 2, 3])), "expected a dict"),
    "missing_key": ("train", lambda p: rewrite(p, lambda d: {k: v for k, v in d.items()
                                                             if k != "fine_labels"}),
                    "missing key 'fine_labels'"),
    "labels_out_of_range": ("train", lambda p: rewrite(p, set_key(
        "fine_labels", lambda d: [100] + d["fine_labels"][1:])),
                            "'fine_labels' out of range"),
    "negative_coarse": ("test", lambda p: rewrite(p, set_key(
        "coarse_labels", lambda d: [-1] + d["coarse_labels"][1:])), "'coarse_labels' out of range"),
    "float_pixels": ("train", lambda p: rewrite(p, set_key(
        "data", lambda d: d["data"].astype(np.float32))), "must be a uint8 array"),
    "image_shaped": ("train", lambda p: rewrite(p, set_key(
        "data", lambda d: d["data"].reshape(-1, 3, 32, 32))), "of shape (N, 3072)"),
    "float_labels": ("train", lambda p: rewrite(p, set_key(
        "fine_labels", lambda d: np.asarray(d["fine_labels"], dtype=np.float64))),
                     "'fine_labels' must be integers"),
    "label_count": ("train", lambda p: rewrite(p, set_key(
        "fine_labels", lambda d: d["fine_labels"][:-1])), "'fine_labels' has 999 entries"),
    "unbalanced": ("train", lambda p: rewrite(p, set_key(
        "fine_labels", lambda d: [0 if i < 5 else v for i, v in enumerate(d["fine_labels"])])),
                   "classes are not balanced"),
    "meta_names": ("meta", lambda p: rewrite(p, set_key(
        "fine_label_names", lambda d: d["fine_label_names"][:99])),
                   "'fine_label_names' must list 100 names"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_data_is_an_error_naming_the_file(tmp_path, store, case):
    file, change, expected = BROKEN[case]
    root = bad_root(tmp_path, file, change)
    with pytest.raises(DataError) as e:
        hpstudy.run(tiny_config(data_root=str(root)), root=store, log=quiet)
    msg = str(e.value)
    assert str(root / "cifar-100-python" / file) in msg and expected in msg
    assert not store.exists() or not any(store.iterdir())        # nothing was started


def test_malicious_data_pickle_is_refused(tmp_path, store):
    marker = tmp_path / "pwned"
    root = bad_root(tmp_path, "train", lambda p: p.write_bytes(pickle.dumps(
        {"data": Evil(marker), "fine_labels": [], "coarse_labels": []}, protocol=2)))
    with pytest.raises(DataError, match="refusing to load posix.system"):
        hpstudy.run(tiny_config(data_root=str(root)), root=store, log=quiet)
    assert not marker.exists()


def test_missing_data_and_no_download(tmp_path, store, monkeypatch):
    import torchvision.datasets.utils as tvu

    calls = []

    def offline(url, *a, **kw):
        calls.append(url)
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as e:
        hpstudy.run(tiny_config(data_root=str(empty)), root=store, log=quiet)
    msg = str(e.value)
    assert calls == [D.ARCHIVE_URL]
    assert str(empty / "cifar-100-python") in msg and "download failed" in msg
    assert "name resolution" in msg and "HPSTUDY_DATA" in msg
    assert not store.exists()

    with pytest.raises(DataError, match=f"no folder {empty / 'cifar-100-python'}"):
        D.load_cifar100(empty, download_missing=False)
    assert len(calls) == 1


def test_cli_reports_data_errors_without_traceback(tmp_path, store, capsys):
    root = bad_root(tmp_path, "test", lambda p: p.unlink())
    rc = cli_main(["train", f"data_root={root}", "width=0.25", "epochs=1", "device=cpu"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and str(root / "cifar-100-python" / "test") in err
