"""The throughput benchmark runs end to end and reports sane numbers (no timing assertions)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from hpstudy.bench import throughput as bench

from conftest import REPO_ROOT


def _tiny_args(tmp_path, *extra):
    return ["--steps", "2", "--segments", "2", "--width", "0.25", "--batch-size", "32",
            "--device", "cpu", "--data-root", str(tmp_path / "no-data-here"),
            "--json", str(tmp_path / "bench.json"), *extra]


def test_bench_writes_sane_json(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HPSTUDY_DATA", raising=False)
    assert bench.main(_tiny_args(tmp_path)) == 0
    table = capsys.readouterr().out
    r = json.loads((tmp_path / "bench.json").read_text())

    for key in ("reference_train_img_s", "ours_train_img_s", "speedup", "device",
                "reference_eval_img_s", "ours_eval_img_s", "reference_peak_mem_mb",
                "ours_peak_mem_mb", "reference_epoch_s", "ours_epoch_s", "reference_paper_h",
                "ours_paper_h", "speedup_segments_median", "date", "device_name"):
        assert key in r, key
    assert r["device"] == "cpu" and r["data"].startswith("synthetic")
    assert (r["width"], r["batch_size"], r["steps"], r["segments"]) == (0.25, 32, 2, 2)
    for k in ("reference", "ours"):
        for key in ("train_img_s", "eval_img_s", "epoch_s", "paper_h"):
            v = r[f"{k}_{key}"]
            assert isinstance(v, float) and math.isfinite(v) and v > 0, (k, key, v)
        assert len(r[f"{k}_train_img_s_segments"]) == 2
        assert r[f"{k}_peak_mem_mb"] >= 0
        # the epoch time follows from the throughputs, the preset's hours from the epoch time
        assert r[f"{k}_epoch_s"] == pytest.approx(40000 / r[f"{k}_train_img_s"]
                                                  + 10000 / r[f"{k}_eval_img_s"])
        assert r[f"{k}_paper_h"] == pytest.approx(r[f"{k}_epoch_s"] * 3 * (6 * 300 + 3 * 15) / 3600)
    assert r["speedup"] == pytest.approx(r["ours_train_img_s"] / r["reference_train_img_s"])
    assert r["ours_channels_last"] is True and r["ours_precision"] == "fp32"
    assert "train img/s" in table and "ours/ref" in table and "paper preset" in table


@pytest.mark.subprocess
def test_bench_script_and_cli_route_to_it():
    """benchmarks/bench.py and ``python -m hpstudy bench`` reach the same main()."""
    def run(*args):
        out = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    script = run(str(REPO_ROOT / "benchmarks" / "bench.py"), "--help")
    cli = run("-m", "hpstudy", "bench", "--help")
    for out in (script, cli):
        assert out.startswith("usage: hpstudy bench")
        assert "--segments" in out and "--json" in out and "--steps" in out
    assert script == cli                      # one parser: the same main() behind both


def test_bench_rejects_bad_options(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--steps", "0"])


def test_bench_reference_runs_untouched_in_its_own_process(tmp_path, monkeypatch):
    """By default the reference trains in an interpreter of its own: the library's malloc
    tuning (process-wide) does not reach it, where ``--reference inline`` shares it."""
    monkeypatch.delenv("HPSTUDY_DATA", raising=False)
    assert bench.main(_tiny_args(tmp_path, "--quiet")) == 0
    r = json.loads((tmp_path / "bench.json").read_text())
    assert r["reference_process"].startswith("its own interpreter")
    assert r["reference_allocator_tuned"] is False
    from hpstudy.device import allocator_tuned
    if allocator_tuned():           # glibc Linux: ours tuned it in this process
        assert "reference: default" in r["allocator"]


def test_bench_plan_times_the_plan_both_ways(tiny_root, tmp_path, capsys):
    """``--plan``: every run of the preset's plan through the report's pipeline and through an
    executor; both sides train the same runs (same images, finite accuracies)."""
    out = tmp_path / "plan.json"
    assert bench.main(["--plan", "smoke", "--studies", "learning_rate", "--executor", "inline",
                       "-p", "data_root", str(tiny_root), "-p", "n_train", "200",
                       "-p", "n_val", "null", "-p", "seeds", "[0]", "--quiet",
                       "--json", str(out)]) == 0
    table = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert (r["runs"], r["epochs"], r["executor"]) == (3, 3, "inline")     # lr 0.5, 0.05, 0.01
    assert r["train_images"] == 3 * 200
    assert r["cpu_capability"] and r["cpus"] >= 1
    assert r["ratio"] == pytest.approx(r["reference_s"] / r["ours_s"])
    assert sorted(x["label"] for x in r["per_run"]) == [
        f"learning_rate lr={lr} seed 0" for lr in ("0.01", "0.05", "0.5")]
    for x in r["per_run"]:
        assert x["train_images"] == 200
        assert 0 <= x["reference_final_val_acc"] <= 1 and 0 <= x["ours_final_val_acc"] <= 1
        assert x["reference_wall_s"] > 0
    d = r["val_acc_difference"]                 # ours - reference, paired by run
    assert d["n"] == 3 and d["mean"] == pytest.approx(
        sum(x["ours_final_val_acc"] - x["reference_final_val_acc"] for x in r["per_run"]) / 3)
    assert "plan wall time s" in table and r["cpu_capability"] in table
    assert "ours - reference, paired by run" in table


def test_bench_plan_rejects_an_unknown_study(capsys):
    assert bench.main(["--plan", "smoke", "--studies", "learnig_rate"]) == 2
    assert "'learnig_rate'" in capsys.readouterr().err


def test_the_difference_sentence_follows_the_interval():
    from hpstudy.bench.study import difference_sentence

    none = {"mean": 0.002, "n": 16, "ci95": [-0.004, 0.009], "detected": False}
    some = {"mean": -0.03, "n": 16, "ci95": [-0.05, -0.01], "detected": True}
    assert difference_sentence(none).endswith("[-0.40, +0.90] over 16 runs: no difference detected")
    assert difference_sentence(some).endswith("[-5.00, -1.00] over 16 runs: a difference")
    assert "+0.20 points (n = 1)" in difference_sentence({"mean": 0.002, "n": 1, "ci95": None,
                                                          "detected": False})
