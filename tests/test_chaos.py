"""Chaos (issue 17): a smoke report through the local executor while a driver SIGKILLs a random
pool worker or the report process itself at random moments, ``KILLS`` times, each followed by a
rerun; at the end every history equals a clean run's and results/*.json equal the clean
report's.

While epochs are left in the store, each kill is aimed at training (now and then at the
workers' start-up, else once the pool has stored a random share of the epochs left, within the
next epoch); a random live worker or the report, up to ``WORKER_KILLS`` workers (a worker's
kill breaks the pool, and the report renders every page before it ends). Once every epoch is
stored, the kills land at a random moment from the start: mostly in notebook rendering.

Every process of a report (the report itself, its pool workers, the resource tracker, the
notebooks' kernels) inherits ``CHAOS_TAG`` in its environment, which is how the driver finds
what a killed report left behind: once the report process is gone, none of them may outlive it
by more than ``ORPHAN_WAIT_S``.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import REPO_ROOT, same_history

psutil = pytest.importorskip("psutil")

KILLS = 10                 # kills that hit a live process
MAX_ATTEMPTS = 2 * KILLS   # reruns started under the driver (some end before their kill)
SEED = 17                  # the driver's random.Random: delays and kinds
JOBS = 2                   # the same in every report: torch threads per worker = cpus // jobs
ORPHAN_WAIT_S = 30.0       # a killed report's processes must all be gone within this
DELAY_FRACTION = 0.45      # "anywhere": uniform in [1 s, this x the clean report's duration]
STARTUP_SHARE = 0.15       # share of the kills in training aimed at the workers' start-up
WORKER_SHARE = 0.5         # share of the attempts while training is left that kill a worker,
WORKER_KILLS = 2           # up to this many: a worker's kill costs a whole (failing) report
CHAOS_TAG = "HPSTUDY_CHAOS_TAG"
# tiny data, 4 epochs a run: 14 runs x 4 epochs, so that kills often land mid-epoch
OVERRIDES = ["-p", "n_val", "null", "-p", "n_train", "200", "-p", "epochs", "4"]


def report_cmd(runs: Path, out: Path, data_root: Path) -> list[str]:
    return [sys.executable, "-m", "hpstudy", "report", "--preset", "smoke", "--executor",
            "local", "--jobs", str(JOBS), "--runs", str(runs), "--out", str(out),
            "--data-root", str(data_root), *OVERRIDES]


def start_report(cmd: list[str], log: Path, tag: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("HPSTUDY_RUNS", "HPSTUDY_DATA")}
    env.update({CHAOS_TAG: tag, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
    with open(log, "w") as f:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def tagged(tag: str) -> list:
    """Live (not zombie) processes that carry ``tag`` in their environment."""
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.environ().get(CHAOS_TAG) == tag and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
    return found


def describe(p) -> str:
    try:
        return f"pid {p.pid} ({p.status()}, ppid {p.ppid()}): {' '.join(p.cmdline())[:160]}"
    except psutil.Error as e:
        return f"pid {p.pid}: {type(e).__name__}"


def pool_workers(runner: subprocess.Popen) -> list:
    """The report's live pool workers: its spawn children."""
    try:
        children = psutil.Process(runner.pid).children()
    except psutil.Error:
        return []
    out = []
    for c in children:
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(c.cmdline())
            if ("multiprocessing.spawn" in cmd or "spawn_main" in cmd) \
                    and c.status() != psutil.STATUS_ZOMBIE:
                out.append(c)
    return out


def kernels(tag: str) -> list:
    out = []
    for p in tagged(tag):
        with contextlib.suppress(psutil.Error):
            if "ipykernel" in " ".join(p.cmdline()):
                out.append(p)
    return out


def wait_gone(tag: str, timeout: float) -> list:
    """Poll until no process carries ``tag``; what is still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = tagged(tag)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.25)


def kill_all(tag: str) -> None:
    for p in tagged(tag):
        with contextlib.suppress(psutil.Error):
            p.kill()


def epochs_stored(runs: Path) -> int:
    n = 0
    for h in runs.glob("*/history.csv"):
        with contextlib.suppress(OSError):
            n += max(0, len(h.read_text().splitlines()) - 1)
    return n


def last_line(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in log.read_text(errors="replace").splitlines()
                 if ln.strip() and "IPKernelApp" not in ln]
        return lines[-1][:140] if lines else ""
    return ""


def tail(log: Path, n: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    return ""


STORE_OR_CLOCK = ("dir", "seconds", "report_id")   # the store's path, wall time, both hashed


def strip_wallclock(obj):
    """``obj`` without any key that names the store (``dir``; ``report_id``, which hashes the
    store's path among the parameters) or the wall clock (``seconds``)."""
    if isinstance(obj, dict):
        return {k: strip_wallclock(v) for k, v in obj.items() if k not in STORE_OR_CLOCK}
    if isinstance(obj, list):
        return [strip_wallclock(v) for v in obj]
    return obj


def differences(a, b, path: str = "") -> list[str]:
    """Where two JSON values differ, as ``path: a != b``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'B' if k not in a else 'A'}")
            else:
                out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path or '/'}: {a!r:.60} != {b!r:.60}"]


def wait_for_pool(proc: subprocess.Popen, log: Path, timeout: float) -> float | None:
    """The time (``time.time()``) the report's log said its pool started; None when it ended
    without one. (Pages whose runs are all finished render before the pool starts.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if "local pool:" in log.read_text(errors="replace"):
                return time.time()
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def run_hashes(runs: Path) -> list[str]:
    return sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.slow
@pytest.mark.subprocess
def test_report_survives_random_sigkills_and_reruns_to_the_clean_result(tiny_root, tmp_path):
    from hpstudy.store import Run

    rng = random.Random(SEED)
    tag = f"chaos-{uuid.uuid4().hex[:12]}"
    logs = tmp_path / "logs"
    logs.mkdir()
    runs_a, out_a = tmp_path / "runs_a", tmp_path / "out_a"
    runs_b, out_b = tmp_path / "runs_b", tmp_path / "out_b"
    t_test = time.monotonic()
    problems: list[str] = []
    kills = {"runner": 0, "worker": 0}
    proc = None

    def note(line: str) -> None:
        print(f"[chaos {time.monotonic() - t_test:6.1f}s] {line}", flush=True)

    try:
        # --- the clean report: its length and when its pool trained ------------------------
        t0, t_clean_start = time.monotonic(), time.time()
        proc = start_report(report_cmd(runs_a, out_a, tiny_root), logs / "clean.log", tag)
        pool_at = wait_for_pool(proc, logs / "clean.log", timeout=900)
        first_epoch_at = None       # the workers' start-up: until the first epoch is stored
        while proc.poll() is None and first_epoch_at is None:
            if epochs_stored(runs_a) if runs_a.exists() else 0:
                first_epoch_at = time.time()
            time.sleep(0.05)
        rc = proc.wait(timeout=900)
        t_clean = time.monotonic() - t0
        assert rc == 0, tail(logs / "clean.log", 80)
        left = wait_gone(tag, ORPHAN_WAIT_S)
        assert not left, "after a clean report: " + "; ".join(map(describe, left))
        n_epochs = epochs_stored(runs_a)
        trained_at = max(p.stat().st_mtime for p in runs_a.glob("*/model.pt"))
        pool_at = pool_at or t_clean_start
        t_startup = max(0.5, (first_epoch_at or pool_at) - pool_at)
        t_epochs = max(1.0, trained_at - (first_epoch_at or pool_at))
        t_epoch = t_epochs * JOBS / n_epochs        # one epoch of one worker, checkpoint included
        note(f"clean report: rc 0 in {t_clean:.1f}s; its pool started up in {t_startup:.1f}s "
             f"and trained {n_epochs} epochs in {t_epochs:.1f}s ({t_epoch:.2f}s an epoch)")
        max_delay = max(2.0, DELAY_FRACTION * t_clean)
        finish_timeout = max(120.0, 2 * t_clean)     # a report after a worker's kill

        # --- kills, each followed by a rerun ---------------------------------------------
        attempt = 0
        while sum(kills.values()) < KILLS and attempt < MAX_ATTEMPTS:
            attempt += 1
            # every draw made on every attempt, whatever is used: the sequence is the seed's
            u_kind, u_epochs, u_delay, u_victim = (rng.random() for _ in range(4))
            stored = epochs_stored(runs_b)
            remaining = n_epochs - stored
            kind = "worker" if (remaining and kills["worker"] < WORKER_KILLS
                                and u_kind < WORKER_SHARE) else "runner"
            # While epochs are left, each kill lands in training (a delay drawn from the start
            # would let one rerun finish all the training): now and then in the workers'
            # start-up; else once the pool has stored a share of the epochs left, somewhere
            # within the next epoch. Once all are stored: anywhere, mostly rendering.
            aim = "training" if remaining else "anywhere"
            if aim == "training" and u_epochs < STARTUP_SHARE:
                wait_epochs, delay = 0, u_delay * t_startup
            elif aim == "training":
                share = 0.25 + 0.35 * (u_epochs - STARTUP_SHARE) / (1 - STARTUP_SHARE)
                wait_epochs, delay = max(1, round(share * remaining)), u_delay * t_epoch
            else:
                delay = 1.0 + u_delay * (max_delay - 1.0)
            log = logs / f"chaos-{attempt:02d}.log"
            t0 = time.monotonic()
            proc = start_report(report_cmd(runs_b, out_b, tiny_root), log, tag)
            anchor = time.time()
            if aim == "training" and wait_for_pool(proc, log, timeout=finish_timeout):
                while proc.poll() is None and epochs_stored(runs_b) < stored + wait_epochs:
                    time.sleep(0.02)
                anchor = time.time()
            while proc.poll() is None and time.time() - anchor < delay:
                time.sleep(0.02)
            at = f"{time.monotonic() - t0:.1f}s (" + (
                f"training: {delay:.2f}s after the pool stored {wait_epochs} more epochs"
                if aim == "training" else f"anywhere: {delay:.1f}s after the start") + ")"
            if proc.poll() is not None:
                note(f"#{attempt}: the report ended (rc {proc.returncode}) before its kill at "
                     f"{at}")
                if proc.returncode != 0:
                    problems.append(f"#{attempt}: a rerun with no kill ended with rc "
                                    f"{proc.returncode}:\n{tail(log)}")
                # the rest of the reruns render only: fit the delays to this one's length
                max_delay = max(2.0, min(max_delay, 0.9 * (time.monotonic() - t0)))
                continue
            workers = pool_workers(proc)
            phase = (f"{epochs_stored(runs_b)}/{n_epochs} epochs stored, {len(workers)} "
                     f"workers, {len(kernels(tag))} kernels; log: {last_line(log)!r}")
            if kind == "worker" and not workers:
                kind = "runner"
            if kind == "worker":
                victim = workers[int(u_victim * len(workers))]
                try:
                    victim.send_signal(signal.SIGKILL)
                    hit = True
                except psutil.Error:
                    hit = False
                kills["worker"] += hit
                note(f"#{attempt}: {'SIGKILL' if hit else 'missed'} worker {victim.pid} at "
                     f"{at}; {phase}")
                try:
                    rc = proc.wait(timeout=finish_timeout)
                except subprocess.TimeoutExpired:
                    problems.append(f"#{attempt}: the report did not end within "
                                    f"{finish_timeout:.0f}s of a worker's SIGKILL; processes: "
                                    + "; ".join(map(describe, tagged(tag))) + f"\n{tail(log)}")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    rc = proc.wait(timeout=60)
                else:
                    note(f"#{attempt}: the report went on and ended with rc {rc} after "
                         f"{time.monotonic() - t0:.1f}s")
                    if rc not in (0, 1):
                        problems.append(f"#{attempt}: after a worker's SIGKILL the report "
                                        f"ended with rc {rc}:\n{tail(log)}")
            else:
                proc.send_signal(signal.SIGKILL)
                rc = proc.wait(timeout=60)
                if rc == -signal.SIGKILL:
                    kills["runner"] += 1
                    note(f"#{attempt}: SIGKILL runner at {at}; {phase}")
                else:
                    note(f"#{attempt}: missed the runner: it ended by itself (rc {rc})")
            t_end = time.monotonic()
            left = wait_gone(tag, ORPHAN_WAIT_S)
            if left:
                problems.append(f"#{attempt}: {len(left)} process(es) of the report still "
                                f"alive {ORPHAN_WAIT_S:.0f}s after it ended ({kind} killed): "
                                + "; ".join(map(describe, left)) + f"\n{tail(log)}")
                kill_all(tag)
                wait_gone(tag, 10)
            else:
                note(f"#{attempt}: every process of it gone {time.monotonic() - t_end:.1f}s "
                     f"after it ended")

        # --- the final rerun, no kill ------------------------------------------------------
        t0 = time.monotonic()
        proc = start_report(report_cmd(runs_b, out_b, tiny_root), logs / "final.log", tag)
        rc = proc.wait(timeout=900)
        note(f"final rerun: rc {rc} in {time.monotonic() - t0:.1f}s")
        left = wait_gone(tag, ORPHAN_WAIT_S)
        if left:
            problems.append("after the final rerun: " + "; ".join(map(describe, left)))
        survived = (f"{sum(kills.values())} kills survived ({kills['runner']} runner, "
                    f"{kills['worker']} worker) in {attempt} reruns; test "
                    f"{time.monotonic() - t_test:.0f}s")
        note(survived)
        assert rc == 0, f"{survived}\nfinal rerun rc {rc}:\n{tail(logs / 'final.log', 80)}"
        assert sum(kills.values()) == KILLS, survived

        # --- B equals A --------------------------------------------------------------------
        hashes = run_hashes(runs_a)
        assert run_hashes(runs_b) == hashes, survived
        for h in hashes:
            a, b = Run.load(runs_a / h), Run.load(runs_b / h)
            assert (a.status, b.status) == ("done", "done"), f"{survived}: run {h}"
            try:
                same_history(a.history, b.history)
            except AssertionError as e:
                problems.append(f"run {h}: history differs from the clean run's: {e}")
        names = sorted(p.name for p in (out_a / "results").glob("*.json"))
        assert sorted(p.name for p in (out_b / "results").glob("*.json")) == names, survived
        rid_b = json.loads((out_b / "summary.json").read_text()).get("report_id")
        for name in names:
            a = json.loads((out_a / "results" / name).read_text())
            b = json.loads((out_b / "results" / name).read_text())
            # every page of B is of B's last report (report_id names the store: A's differs)
            if b.get("report_id", rid_b) != rid_b:
                problems.append(f"results/{name}: report_id {b.get('report_id')}, the "
                                f"summary's {rid_b}")
            diffs = differences(strip_wallclock(a), strip_wallclock(b))
            if diffs:
                problems.append(f"results/{name} differs from the clean report's: "
                                + "; ".join(diffs[:10]))
        assert not problems, survived + "\n" + "\n\n".join(problems)
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.wait(timeout=30)
        kill_all(tag)
