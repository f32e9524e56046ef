"""The GPU check's bare path, rehearsed on the CPU: ``python -m hpstudy.bench.gpu_check`` (and
``scripts/gpu_check.sh``) with ``--device cpu --sizes tiny``, from the working tree with
PYTHONPATH=lib, and once in a stripped venv that holds only what the bare GPU machine has
(the project not installed), so that the path cannot rot unnoticed. Timings are not asserted,
only what the check derives from them (best K, the projection) and what it must record."""
from __future__ import annotations

import datetime
import importlib.metadata as md
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, write_tiny_cifar

# what the GPU machine has besides the standard library (the list); the stripped
# venv holds exactly these, at the versions this project pins
BARE_PACKAGES = ["torch==2.14.1", "torchvision==0.29.1", "numpy", "pandas", "scipy",
                 "matplotlib", "seaborn", "jinja2", "pyyaml", "tqdm", "rich", "tensorboard"]
# what it lacks: none may be imported on the check's path
FORBIDDEN = {"papermill", "nbconvert", "nbformat", "nbclient", "ipykernel", "IPython",
             "jupyter_client", "ray", "submitit", "tensorboardX"}
# imported when present, skipped when not (a try/except import in a package the machine has)
OPTIONAL = {"charset_normalizer",     # numpy.f2py.crackfortran
            "defusedxml"}             # PIL.Image (XMP)
BARE_VENV = Path(os.environ.get("HPSTUDY_BARE_VENV") or REPO_ROOT / ".venv-bare")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HPSTUDY_DATA")}
    env.update(MPLBACKEND="Agg", PYTHONNOUSERSITE="1", **extra)
    return env


def _check(out: Path, *args, cmd=None, env=None, timeout=600) -> tuple[dict, subprocess.CompletedProcess]:
    cmd = cmd or [sys.executable, "-m", "hpstudy.bench.gpu_check"]
    p = subprocess.run([*cmd, "--device", "cpu", "--sizes", "tiny", "--out", str(out), *args],
                       cwd=REPO_ROOT, env=env or _env(PYTHONPATH=str(REPO_ROOT / "lib")),
                       capture_output=True, text=True, timeout=timeout)
    path = out / "gpu_check.json"
    assert path.exists(), f"no JSON (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return json.loads(path.read_text()), p


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(names) -> set[str]:
    """The distributions ``names`` need, installed here, with everything they require."""
    from packaging.requirements import Requirement

    seen, todo = set(), [_canon(re.split(r"[=<>!~ ;\[]", n)[0]) for n in names]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        try:
            dist = md.distribution(n)
        except md.PackageNotFoundError:
            continue
        seen.add(n)
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canon(req.name))
    return seen


def _startup_modules(python: str) -> set[str]:
    """Top-level modules an interpreter holds before the check imports anything (site hooks
    such as setuptools' _distutils_hack)."""
    p = subprocess.run([python, "-c", "import sys; print(' '.join(sys.modules))"],
                       capture_output=True, text=True, env=_env(), check=True)
    return {m.split(".")[0] for m in p.stdout.split()}


def assert_bare_imports(imported: list[str], python: str = sys.executable) -> None:
    """Every third-party package imported is one the GPU machine has (or a requirement of
    one); none of FORBIDDEN."""
    assert not FORBIDDEN & set(imported), FORBIDDEN & set(imported)
    allowed = _closure(BARE_PACKAGES)
    owners = md.packages_distributions()
    startup = _startup_modules(python)
    stray = {m: owners[m] for m in imported if m in owners and m not in startup | OPTIONAL
             and not any(_canon(d) in allowed for d in owners[m])}
    assert not stray, f"imported from packages the GPU machine lacks: {stray}"


def _load_make_subset():
    spec = importlib.util.spec_from_file_location("make_subset",
                                                  REPO_ROOT / "scripts" / "make_subset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_subset(tmp_path_factory) -> Path:
    """A subset written by scripts/make_subset.py from the tiny CIFAR look-alike."""
    root = write_tiny_cifar(tmp_path_factory.mktemp("subset_src"), per_class_train=50)
    out = tmp_path_factory.mktemp("subset") / "subset.npz"
    p = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_subset.py"),
                        "--data-root", str(root), "--train", "300", "--val", "100",
                        "--out", str(out)], capture_output=True, text=True, env=_env(),
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stdout
    return out


def check_record(r: dict, *, ks: list[int], subset: Path | None, python_prefix: str) -> None:
    """What every rehearsal's JSON must hold, and what follows from its own numbers."""
    assert r["status"] == "complete", r
    assert r["errors"] == [], {n: s.get("error") for n, s in r["segments"].items()}
    assert r["device"] == "cpu" and r["sizes"] == "tiny"
    assert r["device_name"] and r["cpu"] == r["device_name"]
    assert re.match(r"\d+\.\d+", r["torch"])
    datetime.datetime.fromisoformat(r["date"])
    assert Path(r["sys_prefix"]).resolve() == Path(python_prefix).resolve()
    assert r["wall_s"] < r["budget_s"]
    segs = r["segments"]
    assert list(segs) == ["plan", "paper_epoch", "runs_at_once", "bench", "accuracy",
                          "projection"]
    for name, s in segs.items():
        assert s["status"] == ("skipped" if name == "accuracy" and subset is None else "ok"), \
            (name, s)

    # the plan: paper as hpstudy.plan computes it
    plan = segs["plan"]
    assert plan["runs"] == sum(plan["runs_by_epochs"].values())
    assert plan["epochs"] == sum(int(e) * n for e, n in plan["runs_by_epochs"].items())
    assert plan["longest"]["epochs"] == max(int(e) for e in plan["runs_by_epochs"])

    # paper_epoch: four variants, each epoch the sum of its parts; every timing synthetic
    pe = segs["paper_epoch"]
    assert {(v["precision"], v["compile"]) for v in pe["variants"]} == {
        ("fp32", "on"), ("fp32", "off"), ("bf16", "on"), ("bf16", "off")}
    for v in pe["variants"]:
        assert v["status"] == "ok" and v["data"] == "synthetic", v
        assert v["epoch_s"] == pytest.approx(v["train_s"] + v["eval_s"])
        assert v["train_img_s"] == pytest.approx(v["train_images"] / v["train_s"])
        assert (v["train_images"], v["val_images"]) == (pe["train_images"], pe["val_images"])
        assert (v["compile_backend"] is not None) == (v["compile"] == "on")

    # runs_at_once: throughputs from the walls, best K from the throughputs
    rao = segs["runs_at_once"]
    rounds = rao["rounds"]
    assert [x["k"] for x in rounds] == ks
    for x in rounds:
        k = x["k"]
        assert x["status"] == "ok" and x["data"] == "synthetic", x
        assert len(x["epoch_s"]) == len(x["train_s"]) == k
        assert x["run_epochs_per_h"] == pytest.approx(k * 3600 / x["wall_s"])
        assert x["train_img_s"] == pytest.approx(k * rao["train_images"] / x["wall_s"])
        assert x["s_per_run_epoch"] == pytest.approx(x["wall_s"] / k)
        assert x["span_s"] <= x["wall_s"] + 1e-3      # each run's epoch inside the round
        assert max(x["epoch_s"]) <= x["wall_s"] + 1e-3
    top = max(x["run_epochs_per_h"] for x in rounds)
    ties = [x["k"] for x in rounds if x["run_epochs_per_h"] >= (1 - rao["tie_tolerance"]) * top]
    assert rao["best_k"] == min(ties) == r["best_k"]
    best = next(x for x in rounds if x["k"] == rao["best_k"])
    # no smaller K comes within the tolerance, and no K beats the best by more than it
    assert all(x["run_epochs_per_h"] < (1 - rao["tie_tolerance"]) * top
               for x in rounds if x["k"] < rao["best_k"])
    assert best["run_epochs_per_h"] >= (1 - rao["tie_tolerance"]) * top

    # bench: both pipelines timed on synthetic images
    b = segs["bench"]
    assert b["data"] == "synthetic" and b["data_detail"].startswith("synthetic")
    assert b["speedup"] == pytest.approx(b["ours_train_img_s"] / b["reference_train_img_s"])
    assert not any(k.endswith("paper_h") for k in b)    # bench's own epochs count is not used

    # accuracy on the real subset, against chance
    if subset is not None:
        a = segs["accuracy"]
        assert a["data"].startswith("real") and a["val_images"] == 100
        assert a["train_images"] == 300 and a["chance"] == pytest.approx(0.01)
        assert 0 <= a["val_acc"] <= 1 and a["correct"] == round(a["val_acc"] * 100)
        assert len(a["val_acc_by_epoch"]) == a["epochs"] and a["val_acc_by_epoch"][-1] == a["val_acc"]
        assert a["above_chance"] == (a["val_acc"] > 0.02 and (a["p_above_chance"] is None
                                                            or a["p_above_chance"] < 1e-3))

    # the projection: paper's epochs at the best K's time per run-epoch
    pr = r["projection"]
    assert {k: segs["projection"][k] for k in pr} == pr
    assert pr["best_k"] == r["best_k"] and pr["data"] == "synthetic"
    assert (pr["runs"], pr["epochs"]) == (plan["runs"], plan["epochs"])
    assert pr["s_per_run_epoch"] == pytest.approx(best["wall_s"] / best["k"])
    f = pr["train_fraction"]
    assert f == pytest.approx(sum(t / e for t, e in zip(best["train_s"], best["epoch_s"])) / best["k"])
    assert pr["hours"] == pytest.approx(
        (pr["epochs"] * f + pr["scored_epochs"] * (1 - f)) * pr["s_per_run_epoch"] / 3600)
    if pr["scored_epochs"] == pr["epochs"]:       # every epoch validated, as paper has it
        assert pr["hours"] == pytest.approx(pr["epochs"] * best["wall_s"] / best["k"] / 3600)
    assert pr["hours_with_start_up"] > pr["hours"]

    assert_bare_imports(r["imported_packages"])


def check_log(out: Path, r: dict) -> None:
    assert (out / "stderr.log").exists()
    log = (out / "gpu_check.log").read_text()
    assert f"best K = {r['best_k']}" in log
    assert "projection: paper" in log and f"{r['projection']['hours']:.1f} h" in log
    assert "synthetic" in log and r["device_name"] in log
    for v in r["segments"]["paper_epoch"]["variants"]:
        assert f"{v['precision']} compile {v['compile']}" in log
    for x in r["segments"]["runs_at_once"]["rounds"]:
        assert f"K={x['k']}:" in log


# --- fast: the working tree's venv, PYTHONPATH=lib --------------------------------------------

def test_check_path_imports_nothing_the_gpu_machine_lacks():
    """What the check imports (the bench and the plan included) in a fresh interpreter with
    PYTHONPATH=lib: no papermill, nbconvert, ray, submitit; nothing outside the machine's list."""
    code = ("import sys, json; import hpstudy.bench.gpu_check, hpstudy.bench.throughput, hpstudy.bench.report_pipeline, "
            "hpstudy.plan, hpstudy.presets, hpstudy.studies; "
            "from hpstudy.bench.gpu_check import installed_packages; "
            "print(json.dumps(installed_packages()))")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                       text=True, env=_env(PYTHONPATH=str(REPO_ROOT / "lib")), timeout=120)
    assert p.returncode == 0, p.stderr
    imported = json.loads(p.stdout.strip().splitlines()[-1])
    assert "torch" in imported and "pandas" in imported
    assert_bare_imports(imported)


def test_choose_best_prefers_the_smaller_k_within_the_tolerance():
    from hpstudy.bench.gpu_check import choose_best

    rounds = lambda *v: [{"k": k, "run_epochs_per_h": x} for k, x in zip((1, 2, 4, 8), v)]  # noqa: E731
    assert choose_best(rounds(100, 180, 200, 150)) == 4
    assert choose_best(rounds(100, 195, 200, 150)) == 2          # within 3% of the best
    assert choose_best(rounds(100, 195, 200, 150), tolerance=0) == 4
    assert choose_best(rounds(100, 90, 80, 70)) == 1


def test_time_limits_nest():
    from hpstudy.bench.gpu_check import SegmentTimeout, time_limit

    t = time.monotonic()
    with pytest.raises(SegmentTimeout):
        with time_limit(0.6):
            with time_limit(0.1):        # the inner one fires first ...
                time.sleep(5)
            pytest.fail("the inner limit did not fire")
    with pytest.raises(SegmentTimeout):
        with time_limit(0.4):
            try:
                with time_limit(0.1):
                    time.sleep(5)
            except SegmentTimeout:
                pass
            time.sleep(5)                # ... and the outer one still runs
    assert time.monotonic() - t < 3
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_make_subset_is_stratified_disjoint_and_small(tmp_path):
    import numpy as np

    ms = _load_make_subset()
    root = write_tiny_cifar(tmp_path / "src", per_class_train=50)
    out = tmp_path / "s.npz"
    assert ms.main(["--data-root", str(root), "--train", "300", "--val", "100",
                    "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert z["x_train"].shape == (300, 3, 32, 32) and z["x_train"].dtype == np.uint8
        assert z["x_val"].shape == (100, 3, 32, 32)
        assert (np.bincount(z["fine_train"], minlength=100) == 3).all()
        assert (np.bincount(z["fine_val"], minlength=100) == 1).all()
        assert not set(z["index_train"]) & set(z["index_val"])
        assert (z["coarse_train"] == z["fine_train"] // 5).all()     # the tiny set's coarse labels
        meta = json.loads(str(z["meta"]))
    assert meta["n_train"] == 300 and meta["n_val"] == 100 and "md5" in meta
    # too large is refused, and nothing is left behind
    ms.MAX_BYTES = 1000
    big = tmp_path / "big.npz"
    assert ms.main(["--data-root", str(root), "--out", str(big), "--train", "300",
                    "--val", "100"]) == 2
    assert not big.exists() and not list(tmp_path.glob("big*"))


def test_budget_is_kept_and_skips_are_recorded(tmp_path):
    """With no time left every segment is skipped with its reason; through the shell script,
    with python3 the venv's own."""
    env = _env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    r, p = _check(tmp_path / "out", "--budget", "0", cmd=["bash", "scripts/gpu_check.sh"],
                  env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert r["status"] == "complete" and r["errors"] == []
    assert Path(r["sys_prefix"]).resolve() == Path(sys.prefix).resolve()
    for name, s in r["segments"].items():
        assert s["status"] == "skipped" and s["reason"], (name, s)
    assert "over budget" in r["segments"]["paper_epoch"]["reason"]
    assert "make_subset.py" in r["segments"]["accuracy"]["reason"]
    assert "skipped" in (tmp_path / "out" / "gpu_check.log").read_text()


def test_a_failing_segment_is_recorded_and_the_rest_runs(tmp_path):
    """Compiling fails (as it might with torch 2.11 on the GPU machine): the two compiled
    variants record the error, the others and the projection still run, the exit code is 1."""
    r, p = _check(tmp_path / "out", "--compile-backend", "no_such_backend", "--skip",
                  "runs_at_once", "bench", timeout=300)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert r["status"] == "complete"
    variants = {(v["precision"], v["compile"]): v for v in r["segments"]["paper_epoch"]["variants"]}
    for key, v in variants.items():
        assert v["status"] == ("error" if key[1] == "on" else "ok"), (key, v)
        if key[1] == "on":
            assert "no_such_backend" in v["error"] and v["traceback"]
    assert sorted(r["errors"]) == ["paper_epoch bf16/on", "paper_epoch fp32/on"]
    pr = r["projection"]            # from the one-run-at-a-time fp32 epoch: K = 1
    assert pr["best_k"] == 1 and pr["basis"].startswith("paper_epoch (fp32, compile off)")
    assert pr["s_per_run_epoch"] == pytest.approx(variants["fp32", "off"]["epoch_s"])
    assert "FAILED" in (tmp_path / "out" / "gpu_check.log").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_cuda_requested_without_cuda_is_an_error_in_the_json(tmp_path):
    p = subprocess.run([sys.executable, "-m", "hpstudy.bench.gpu_check", "--out", str(tmp_path)],
                       cwd=REPO_ROOT, env=_env(PYTHONPATH=str(REPO_ROOT / "lib")),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    r = json.loads((tmp_path / "gpu_check.json").read_text())
    assert r["status"] == "error" and "CUDA is not available" in r["error"]


@pytest.mark.subprocess
def test_tiny_check_on_cpu(tmp_path, tiny_subset, tiny_env):
    """The whole check, tiny, on the CPU: every segment runs, the JSON holds what it must and
    the best K and the projection follow from its own per-K numbers."""
    ks = [1, 2, 4]          # K = 8 as well in the stripped venv below
    r, p = _check(tmp_path / "out", "--ks", ",".join(map(str, ks)), "--subset", str(tiny_subset))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    check_record(r, ks=ks, subset=tiny_subset, python_prefix=sys.prefix)
    check_log(tmp_path / "out", r)
    # the check counted paper's runs without CIFAR-100 (the GPU machine has none) as
    # hpstudy.plan counts them with it (here: the tiny look-alike, HPSTUDY_DATA of tiny_env)
    from hpstudy.plan import plan, study_parameters
    from hpstudy.presets import load_preset
    from hpstudy.studies import STUDIES

    planned = plan(study_parameters(load_preset("paper"), list(STUDIES), {},
                                    {"runs_root": str(tmp_path / "runs")}), tmp_path / "runs")
    assert r["projection"]["runs"] == len(planned)
    assert r["projection"]["epochs"] == sum(x.epochs for x in planned)
    longest = max(planned, key=lambda x: x.cost).config
    assert all(r["segments"]["plan"]["longest"][k] == getattr(longest, k)
               for k in ("width", "batch_size", "epochs", "precision", "compile", "n_train"))


# --- slow: a stripped venv, as bare as the GPU machine ---------------------------------------

def _bare_python() -> Path:
    """BARE_VENV with exactly BARE_PACKAGES (built once, reused while its record matches)."""
    py = BARE_VENV / "bin" / "python"
    record = BARE_VENV / "hpstudy-bare.json"
    want = {"packages": BARE_PACKAGES, "python": sys.version.split()[0]}
    if py.exists() and record.exists():
        have = json.loads(record.read_text())
        if {k: have.get(k) for k in want} == want:
            return py
    shutil.rmtree(BARE_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(BARE_VENV)], check=True, env=_env())
    pip = [str(py), "-m", "pip", "--disable-pip-version-check"]
    # can pip reach the packages at all? (a resolve of the small torchvision wheel, no install)
    probe = subprocess.run([*pip, "install", "--dry-run", "--no-deps", "-q", BARE_PACKAGES[1]],
                           capture_output=True, text=True, env=_env(), timeout=600)
    if probe.returncode != 0:
        shutil.rmtree(BARE_VENV, ignore_errors=True)
        pytest.skip(f"pip cannot reach the package registry here: {probe.stderr.strip()[-400:]}")
    t = time.monotonic()
    p = subprocess.run([*pip, "install", "-q", "--no-compile", *BARE_PACKAGES],
                       capture_output=True, text=True, env=_env(), timeout=1800)
    assert p.returncode == 0, f"pip install into the bare venv failed:\n{p.stderr[-3000:]}"
    # bytecode of what the check imports, once, rather than by eight workers at once
    subprocess.run([str(py), "-c", "import torch, torchvision, numpy, pandas, scipy, yaml"],
                   check=True, env=_env(), timeout=600)
    record.write_text(json.dumps({**want, "build_s": round(time.monotonic() - t, 1)}) + "\n")
    print(f"built {BARE_VENV} in {time.monotonic() - t:.0f} s")
    return py


@pytest.mark.slow
@pytest.mark.subprocess
def test_check_runs_in_a_stripped_venv(tmp_path, tiny_subset):
    """scripts/gpu_check.sh in a venv with only the GPU machine's packages, the project not
    installed, python3 the venv's own: the check completes, K = 1, 2, 4, 8 included."""
    py = _bare_python()
    bare = _env(PATH=f"{py.parent}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(BARE_VENV))
    bare.pop("PYTHONHOME", None)
    # bare indeed: hpstudy is not installed there and papermill is not importable
    for mod in ("hpstudy", "papermill", "nbconvert"):
        p = subprocess.run(["python3", "-c", f"import {mod}"], cwd=tmp_path, env=bare,
                           capture_output=True, text=True)
        assert p.returncode != 0 and "ModuleNotFoundError" in p.stderr, (mod, p.stderr)
    r, p = _check(tmp_path / "out", "--subset", str(tiny_subset),
                  cmd=["bash", str(REPO_ROOT / "scripts" / "gpu_check.sh")], env=bare)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    check_record(r, ks=[1, 2, 4, 8], subset=tiny_subset, python_prefix=str(BARE_VENV))
    assert Path(r["python_executable"]).parent == py.parent
    check_log(tmp_path / "out", r)
