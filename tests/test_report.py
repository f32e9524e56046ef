"""hpstudy report (hpstudy.report) end to end: the plan trained by an executor, notebooks executed by papermill,
HTML with embedded figures, the index."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import sys
from pathlib import Path

import nbformat
import pytest

from hpstudy.studies import STUDIES

from conftest import REPO_ROOT as ROOT


def hpstudy(*args, env=None, timeout=900, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "hpstudy", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_outputs(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.output_type == "error"]


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.subprocess
def test_smoke_preset_end_to_end(real_root, tmp_path):
    out, runs = tmp_path / "reports", tmp_path / "runs"
    p = hpstudy("report", "--preset", "smoke", "--out", str(out), "--runs", str(runs),
                "--data-root", str(real_root))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    index = (out / "index.html").read_text()
    for study in STUDIES.values():
        stem = Path(study.notebook).stem
        page = out / f"{stem}.html"
        assert page.exists(), stem
        text = page.read_text()
        assert re.search(r'<img [^>]*src="data:image/png;base64,', text), f"{stem}: no embedded figure"
        assert not error_outputs(out / f"{stem}.ipynb"), stem
        assert "Traceback" not in text, stem
        assert f'href="{stem}.html"' in index
        res = json.loads((out / "results" / f"{study.name}.json").read_text())
        assert res["study"] == study.name
        # every setting of studies 01-04 and the test study: statistics over n = 2 seeds
        for label, s in (res.get("settings") or {}).items():
            assert s["seeds"] == [0, 1]
            for key in ("val_acc", "val_loss"):
                assert s[key]["n"] == 2 and len(s[key]["ci95"]) == 2
                assert s["last_k"][key]["n"] == 2
            if label != res["baseline"]:
                assert set(s["difference"]) >= {"mean", "ci95"}
            assert f"{100 * s['val_acc']['mean']:.2f} ± " in index   # mean ± sd (n) shown
        if study.name == "test":
            assert res["test"]["test_acc"]["n"] == 2
            assert all(len(r["wilson95"]) == 2 for r in res["test"]["per_seed"])
    assert "(n=2)" in index and "data:image/png;base64," in index
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["studies"]] == ["ok"] * len(STUDIES)
    lr_rows = [r for r in summary["runs"] if r["study"] == "learning_rate"]
    assert sorted((r["label"], r["seed"]) for r in lr_rows) == [
        (lab, seed) for lab in ("lr=0.01", "lr=0.05", "lr=0.5") for seed in (0, 1)]
    # hpstudy report printed the plan, prefixed run logs, which notebook ran and how long it took
    assert "14 runs, 0 finished" in p.stdout
    assert re.search(r"\[[0-9a-f]{12} learning_rate lr=0\.\d+ seed \d", p.stdout)
    assert re.search(r"\[2/6\] 01_learning_rate\.ipynb +ok +\d+\.\d+s", p.stdout)
    # the notebooks never diverge from the plan: rendered inline after the plan was trained,
    # no notebook trains anything
    p2 = hpstudy("report", "--preset", "smoke", "--executor", "inline", "--out", str(out),
                 "--runs", str(runs), "--data-root", str(real_root))
    assert p2.returncode == 0, p2.stdout[-3000:] + p2.stderr[-3000:]
    assert "14 runs, 14 finished" in p2.stdout
    assert "(from the store)" in p2.stdout and "training (" not in p2.stdout


def test_overriding_a_grid_field_is_an_error_naming_the_grid_key(tmp_path):
    p = hpstudy("report", "learning_rate", "--preset", "smoke", "-p", "lr", "0.1",
                "--out", str(tmp_path / "out"))
    assert p.returncode == 2
    assert "'lrs'" in p.stderr and "'lr'" in p.stderr
    assert not (tmp_path / "out").exists()


def test_plan_lists_each_distinct_run_once(tiny_root, tmp_path):
    p = hpstudy("plan", "--preset", "smoke", "--runs", str(tmp_path / "runs"), "--json",
                str(tmp_path / "plan.json"), "-p", "data_root", str(tiny_root), "-p", "n_val",
                "null", "-p", "n_train", "200")
    assert p.returncode == 0, p.stderr
    rows = json.loads((tmp_path / "plan.json").read_text())
    # 3 learning rates + cosine + wd 1e-4 + wd 5e-4 (= mixup 0) + mixup 0.2 (= test), 2 seeds
    assert len(rows) == 7 * 2 == len({r["hash"] for r in rows})
    shared = [r for r in rows if len(r["uses"]) > 1]
    assert any("schedule schedule=constant" in u for r in shared for u in r["uses"])
    assert all(r["state"] == "missing" for r in rows)
    assert "14 runs, 0 finished" in p.stdout


@pytest.mark.subprocess
def test_failing_study_is_reported_and_the_rest_still_run(tiny_root, tmp_path):
    preset = tmp_path / "tiny.yaml"
    preset.write_text("common: {width: 0.25, epochs: 1, device: cpu, n_val: null, n_train: 200}\n"
                      "studies:\n  data: {n_samples: 8}\n  learning_rate: {lrs: [0.05]}\n")
    out = tmp_path / "reports"
    # --no-train on an empty store: the learning-rate notebook fails naming the missing run
    p = hpstudy("report", "learning_rate", "data", "--preset", str(preset), "--out", str(out),
                "--runs", str(tmp_path / "runs"), "--data-root", str(tiny_root), "--no-train")
    assert p.returncode == 1
    summary = json.loads((out / "summary.json").read_text())
    status = {s["study"]: s for s in summary["studies"]}
    assert status["learning_rate"]["status"] == "failed"
    assert "StoreError" in status["learning_rate"]["error"]
    assert "no_train is set" in status["learning_rate"]["error"]
    assert status["data"]["status"] == "ok"       # the next study still ran
    failed_page = (out / "01_learning_rate.html").read_text()
    assert "StoreError" in failed_page             # the error is visible
    index = (out / "index.html").read_text()
    assert "failed" in index and "no_train is set" in index


@pytest.mark.subprocess
def test_mistyped_value_fails_before_anything_runs(tiny_root, tmp_path):
    p = hpstudy("report", "learning_rate", "--preset", "smoke", "--out", str(tmp_path / "o"),
                "--data-root", str(tiny_root), "-p", "schedule", "cosin")
    assert p.returncode == 2
    assert "'schedule'" in p.stderr and "constant, cosine" in p.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.subprocess
def test_bad_preset_fails_before_anything_runs(tmp_path):
    preset = tmp_path / "bad.yaml"
    preset.write_text("studies:\n  learning_rate:\n    lrs: [0.1]\n    epochs: ten\n")
    p = hpstudy("report", "--preset", str(preset), "--out", str(tmp_path / "out"))
    assert p.returncode == 2
    assert f"{preset}:4:" in p.stderr and "'epochs'" in p.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.subprocess
def test_ctrl_c_stops_the_report_and_keeps_finished_epochs(tiny_root, tmp_path):
    import signal
    import time

    preset = tmp_path / "long.yaml"
    preset.write_text("common: {width: 0.25, epochs: 60, device: cpu, n_train: null, n_val: null}\n"
                      "studies:\n  learning_rate: {lrs: [0.05], seeds: [0]}\n  data: {n_samples: 8}\n")
    out, runs = tmp_path / "reports", tmp_path / "runs"
    cmd = [sys.executable, "-m", "hpstudy", "report", "learning_rate", "data", "--preset",
           str(preset), "--out", str(out), "--runs", str(runs), "--data-root", str(tiny_root),
           "--executor", "inline"]
    # a new session, so that Ctrl-C can go to the whole process group, as a terminal sends it
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        hist = list(runs.glob("*/history.csv"))
        if hist and len(hist[0].read_text().splitlines()) >= 3:   # header + 2 epochs
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the run never got going: " + proc.communicate()[1][-2000:])
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert "run the same command again to resume" in stderr
    assert "[2/2]" not in stdout                      # the report stopped: data never ran
    run_dir = next(runs.glob("*/checkpoint.pt")).parent
    assert (run_dir / "status").read_text().strip() == "interrupted"
    kept = len((run_dir / "history.csv").read_text().splitlines()) - 1
    assert kept >= 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["studies"][0]["status"] == "interrupted"


TINY_PRESET = ("description: tiny\n"
               "common: {width: 0.25, epochs: 1, device: cpu, n_val: null, n_train: 200,"
               " seeds: [0, 1]}\nstudies:\n  data: {n_samples: 8}\n")


def engines_left() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "raylet" in line or "gcs_server" in line]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("executor, extra", [("ray", []),
                                             ("slurm", ["--slurm-cluster", "local", "--time", "30"])])
def test_report_through_an_engine_renders_every_page(tiny_root, tmp_path, executor, extra):
    """`hpstudy report --executor ray` (a local Ray on loopback, started and stopped by the
    command) and `--executor slurm` (submitit's local executor) train the plan on a fresh
    store and render every page from it."""
    pytest.importorskip("ray" if executor == "ray" else "submitit")
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY_PRESET)
    out, runs = tmp_path / "reports", tmp_path / "runs"
    # Ray's session sockets must fit AF_UNIX's 107 bytes: a short temporary folder, removed here
    short = tempfile.mkdtemp(prefix="hpr-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "HPSTUDY_RUNS"}
    try:
        # no --runs: the default store ./runs is the one of the directory the command runs
        # in, for the plan, the engine and the notebooks (which run in notebooks/) alike
        p = hpstudy("report", "--preset", str(preset), "--out", str(out),
                    "--data-root", str(tiny_root), "--executor", executor, *extra,
                    env={**env, "TMPDIR": short}, cwd=tmp_path)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["studies"]] == ["ok"] * len(STUDIES)
    for study in STUDIES.values():
        assert (out / f"{Path(study.notebook).stem}.html").exists()
    # every run was trained by the engine: the notebooks only read the store
    assert "14 runs, 0 finished" in p.stdout and "finished: 14 done" in p.stdout
    assert len(list(runs.glob("*/model.pt"))) == 14
    assert "training (" not in "".join(
        (out / f"{Path(s.notebook).stem}.ipynb").read_text() for s in STUDIES.values())
    assert not engines_left()
