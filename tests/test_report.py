"""The runner end to end: notebooks executed by papermill, HTML with embedded figures, index."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from hpstudy.studies import STUDIES

ROOT = Path(__file__).resolve().parents[1]


def hpstudy(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "hpstudy", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_outputs(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.output_type == "error"]


@pytest.mark.realdata
@pytest.mark.slow
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
        assert f'href="{stem}.html"' in index or f"href='{stem}.html'" in index
        assert json.loads((out / "results" / f"{study.name}.json").read_text())["study"] == study.name
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["studies"]] == ["ok"] * len(STUDIES)
    # every run of the learning-rate study is in the index, with its final val accuracy
    lr_rows = [r for r in summary["runs"] if r["study"] == "learning_rate"]
    assert sorted(r["label"] for r in lr_rows) == ["lr=0.01", "lr=0.05", "lr=0.5"]
    for r in lr_rows:
        assert f"{100 * r['final']['val_acc']:.2f}%" in index
    # the runner says which notebook runs and how long each took
    assert re.search(r"\[2/6\] 01_learning_rate\.ipynb +ok +\d+\.\d+s", p.stdout)
    # a second report reuses every run from the store: nothing is trained again
    p2 = hpstudy("report", "learning_rate", "--preset", "smoke", "--out", str(out),
                 "--runs", str(runs), "--data-root", str(real_root))
    assert p2.returncode == 0
    assert "(from the store)" in p2.stdout and "training (" not in p2.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_failing_study_is_reported_and_the_rest_still_run(tiny_root, tmp_path):
    preset = tmp_path / "tiny.yaml"
    preset.write_text("common: {width: 0.25, epochs: 1, device: cpu}\n"
                      "studies:\n  data: {n_samples: 8}\n  learning_rate: {lrs: [0.05]}\n")
    out = tmp_path / "reports"
    # a mistyped value given papermill-style: only the notebooks see it
    p = hpstudy("report", "learning_rate", "data", "--preset", str(preset), "--out", str(out),
                "--runs", str(tmp_path / "runs"), "--data-root", str(tiny_root),
                "-p", "schedule", "cosin")
    assert p.returncode == 1
    summary = json.loads((out / "summary.json").read_text())
    status = {s["study"]: s for s in summary["studies"]}
    assert status["learning_rate"]["status"] == "failed"
    assert "'schedule'" in status["learning_rate"]["error"]
    assert "constant, cosine" in status["learning_rate"]["error"]
    assert status["data"]["status"] == "ok"       # the next study still ran
    failed_page = (out / "01_learning_rate.html").read_text()
    assert "cosin" in failed_page and "ConfigError" in failed_page   # the error is visible
    index = (out / "index.html").read_text()
    assert "failed" in index and "allowed values: constant, cosine" in index


def test_bad_preset_fails_before_anything_runs(tmp_path):
    preset = tmp_path / "bad.yaml"
    preset.write_text("studies:\n  learning_rate:\n    lrs: [0.1]\n    epochs: ten\n")
    p = hpstudy("report", "--preset", str(preset), "--out", str(tmp_path / "out"))
    assert p.returncode == 2
    assert f"{preset}:4:" in p.stderr and "'epochs'" in p.stderr
    assert not (tmp_path / "out").exists()


def test_ctrl_c_stops_the_report_and_keeps_finished_epochs(tiny_root, tmp_path):
    import signal
    import time

    preset = tmp_path / "long.yaml"
    preset.write_text("common: {width: 0.25, epochs: 60, device: cpu, n_train: null, n_val: null}\n"
                      "studies:\n  learning_rate: {lrs: [0.05]}\n  data: {n_samples: 8}\n")
    out, runs = tmp_path / "reports", tmp_path / "runs"
    cmd = [sys.executable, "-m", "hpstudy", "report", "learning_rate", "data", "--preset",
           str(preset), "--out", str(out), "--runs", str(runs), "--data-root", str(tiny_root)]
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
