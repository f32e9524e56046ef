"""Study-level speed: what a preset's whole plan costs through the report's pipeline, run after
run, against the library through one of its executors (``hpstudy bench --plan quick``).

The segment benchmark (``bench``) compares one training step; a study is many runs of small
models, where the library's lever is running them side by side (the ``local`` executor) as
well as its faster step. This times both whole:

* **reference**: every run of the plan, one after another, each in a fresh interpreter
  (``python -m hpstudy.bench.report_pipeline CONFIG``), as a user runs the report's script once per
  setting: the same images, model, optimizer settings, schedule, augmentation and mixup;
* **ours**: ``dispatch.execute`` of the same configs into a fresh run store, as
  ``hpstudy report`` trains them (notebooks not rendered: the reference has none).

Wall time includes what a user pays: interpreter and torch start-up, data loading, worker
processes, evaluation every epoch. Both sides' final validation accuracies are kept, so a
ratio can be read beside evidence that both trained the same thing.
"""
from __future__ import annotations

import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import dispatch
from ..device import machine
from ..plan import parse_overrides, plan, study_parameters
from ..presets import load_preset
from ..stats import paired_difference
from ..studies import STUDIES


def reference_run(config: dict) -> dict:
    """One run through the report's pipeline in a fresh interpreter; its JSON result plus the
    wall time the user waits (start-up included)."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "hpstudy.bench.report_pipeline", json.dumps(config)],
                       capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"the report's pipeline failed on {config} (exit {p.returncode}):\n"
                           f"{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_s"] = seconds
    return out


def measure(preset_name: str, *, studies: list[str] | None = None, overrides=None,
        executor: str = dispatch.DEFAULT_EXECUTOR, jobs: int | None = None, log=print) -> dict:
    """Time the preset's plan both ways, each into a fresh store; returns the record."""
    unknown = [s for s in studies or [] if s not in STUDIES]
    if unknown:
        raise ValueError(f"unknown study {unknown[0]!r}; studies: {', '.join(STUDIES)}")
    preset = load_preset(preset_name)
    work = Path(tempfile.mkdtemp(prefix="hpstudy-bench-plan-"))
    try:
        store = work / "runs"
        params = study_parameters(preset, list(studies or STUDIES), parse_overrides(overrides),
                                  {"runs_root": str(store)})
        planned = plan(params, store)
        n = len(planned)
        epochs = sum(r.epochs for r in planned)
        log(f"{preset_name}: {n} runs, {epochs} epochs; the report's pipeline first, one run "
            "after another")
        ref_rows = []
        t0 = time.perf_counter()
        for i, r in enumerate(planned, 1):
            res = reference_run(r.config.to_dict())
            ref_rows.append(res)
            log(f"[{i}/{n}] reference {r.label()}: {res['wall_s']:.1f} s, final val acc "
                f"{100 * res['final_val_acc']:.2f}%")
        reference_s = time.perf_counter() - t0

        log(f"ours: the same {n} runs through the {executor} executor")
        t0 = time.perf_counter()
        status = dispatch.execute(planned, executor, root=store, jobs=jobs, log=log)
        ours_s = time.perf_counter() - t0
        bad = {h: s for h, s in status.items() if s != "done"}
        if bad:
            raise RuntimeError(f"ours did not finish every run: {bad}")
        after = {r.hash: r.refresh() for r in planned}     # the same rows, read again
    finally:
        shutil.rmtree(work, ignore_errors=True)

    per_run = [{"hash": r.hash, "label": r.label(), "epochs": r.epochs,
                "train_images": ref["train_images"], "reference_wall_s": ref["wall_s"],
                "reference_final_val_acc": ref["final_val_acc"],
                "ours_final_val_acc": after[r.hash].last_val_acc}
               for r, ref in zip(planned, ref_rows)]
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        **machine(),
        "preset": preset_name, "studies": studies or "all", "params": overrides or [],
        "runs": n, "epochs": epochs,
        "train_images": sum(r["epochs"] * r["train_images"] for r in per_run),
        "executor": executor, "jobs": jobs,
        "reference_s": reference_s, "ours_s": ours_s, "ratio": reference_s / ours_s,
        "reference_mean_final_val_acc": statistics.fmean(r["reference_final_val_acc"]
                                                         for r in per_run),
        "ours_mean_final_val_acc": statistics.fmean(r["ours_final_val_acc"] for r in per_run),
        # paired by run: whether the two pipelines train to different accuracies
        "val_acc_difference": paired_difference([r["ours_final_val_acc"] for r in per_run],
                                                [r["reference_final_val_acc"] for r in per_run]),
        "per_run": per_run,
    }


def difference_sentence(d: dict) -> str:
    """The paired difference of final validation accuracy, ours - reference, in words."""
    if d["ci95"] is None:
        return f"final val acc, ours - reference: {100 * d['mean']:+.2f} points (n = {d['n']})"
    lo, hi = (100 * v for v in d["ci95"])
    verdict = "a difference" if d["detected"] else "no difference detected"
    return (f"final val acc, ours - reference, paired by run: {100 * d['mean']:+.2f} points, "
            f"95% interval [{lo:+.2f}, {hi:+.2f}] over {d['n']} runs: {verdict}")


def table(r: dict) -> str:
    def row(label, a, b, fmt, ratio=None):
        ratio = f"{ratio:7.2f}x" if ratio is not None else ""
        return f"{label:<28}{format(a, fmt):>12}{format(b, fmt):>12}{ratio:>10}"

    return "\n".join([
        f"hpstudy bench --plan {r['preset']}: {r['runs']} runs, {r['epochs']} epochs, "
        f"{r['train_images']:,} training images",
        f"machine: {r['cpu']} ({r['cpu_capability']}, {r['cpus']} cores)"
        + (f", {r['gpu']}" if r["gpu"] else "") + f", torch {r['torch']}",
        f"reference: the report's pipeline, one run after another, each a fresh process; "
        f"ours: the {r['executor']} executor",
        "",
        f"{'':<28}{'reference':>12}{'ours':>12}{'ref/ours':>10}",
        row("plan wall time s", r["reference_s"], r["ours_s"], ".1f", r["ratio"]),
        row("mean final val acc %", 100 * r["reference_mean_final_val_acc"],
            100 * r["ours_mean_final_val_acc"], ".2f"),
        difference_sentence(r["val_acc_difference"]),
    ])
