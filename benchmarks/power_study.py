#!/usr/bin/env python
"""The pilot behind the CPU presets: in which regime do the studies' effects exist, how large
are they, how much do they vary over seeds, and how many seeds would detect them?

A *regime* is a scale (training images, validation images, epochs, width, scoring interval).
In each, the comparisons the studies make are trained on pilot seeds (disjoint from every
preset's) through the library's run store and the default executor, so the pilot's runs are
the same code path as a report's and a rerun resumes or reuses them. Per regime and
comparison it prints the paired per-seed differences (final-epoch validation accuracy), their
mean, sd and 95% interval, the power of the seed counts a preset might use, the minimum
detectable difference at those counts, and the seeds that would detect the measured effect;
per regime the time per run and the baseline's training and validation accuracy (is it in the
regime the later studies are about: training above validation?). ``--json`` keeps it all.
See benchmarks/POWER.md.

    python benchmarks/power_study.py --regimes r2000x20 r1000x40 --seeds 1000 1001 1002 \
        --comparisons lr schedule --runs /tmp/pilot_runs --json pilot.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import torch

from hpstudy import stats
from hpstudy.config import Config
from hpstudy.device import machine
from hpstudy.dispatch import execute
from hpstudy.plan import plan_configs
from hpstudy.store import find_run

# name -> the scale; every regime: width 0.25, batch 128, 100 classes (no proxy)
REGIMES = {
    "quick-old": dict(n_train=5000, n_val=2000, epochs=10, eval_every=1),
    "r3000x10": dict(n_train=3000, n_val=2000, epochs=10, eval_every=5),
    "r2000x15": dict(n_train=2000, n_val=2000, epochs=15, eval_every=5),
    "r1000x30": dict(n_train=1000, n_val=2000, epochs=30, eval_every=10),
    "r500x60": dict(n_train=500, n_val=2000, epochs=60, eval_every=20),
    "r2000x30": dict(n_train=2000, n_val=2000, epochs=30, eval_every=10),
    "r2000x60": dict(n_train=2000, n_val=2000, epochs=60, eval_every=10),
    "r1000x80": dict(n_train=1000, n_val=2000, epochs=80, eval_every=20),
    "r1000x150": dict(n_train=1000, n_val=2000, epochs=150, eval_every=25),
}
# comparison -> (label, the setting, its baseline): the studies' own baselines
BASE = dict(lr=0.05, schedule="constant", weight_decay=0.0, mixup_alpha=0.0)
COSINE_WD = dict(BASE, schedule="cosine", weight_decay=5e-4)
COMPARISONS = {
    "lr": ("lr 0.01 - lr 0.05", dict(BASE, lr=0.01), BASE),
    "lr_high": ("lr 0.5 - lr 0.05", dict(BASE, lr=0.5), BASE),
    "schedule": ("cosine - constant", dict(BASE, schedule="cosine"), BASE),
    "weight_decay": ("wd 1e-4 - wd 5e-4", dict(COSINE_WD, weight_decay=1e-4), COSINE_WD),
    "mixup": ("mixup 0.2 - none", dict(COSINE_WD, mixup_alpha=0.2), COSINE_WD),
    "mixup1": ("mixup 1 - none", dict(COSINE_WD, mixup_alpha=1.0), COSINE_WD),
}
SEED_COUNTS = (3, 5, 8, 10)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--regimes", nargs="+", default=["r2000x20"], choices=sorted(REGIMES))
    p.add_argument("--comparisons", nargs="+", default=["lr", "schedule"],
                   choices=sorted(COMPARISONS))
    p.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002],
                   help="pilot seeds: disjoint from every preset's")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--runs", default="/tmp/pilot_runs", help="run store of the pilot")
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def config(regime: str, setting: dict, seed: int, width: float) -> Config:
    return Config.from_dict(width=width, seed=seed, device="cpu", **REGIMES[regime], **setting)


def measure(a) -> dict:
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "seeds": a.seeds, "width": a.width, "regimes": {}}
    for regime in a.regimes:
        settings = {}
        for c in a.comparisons:
            _, s, b = COMPARISONS[c]
            settings[json.dumps(s, sort_keys=True)] = s
            settings[json.dumps(b, sort_keys=True)] = b
        configs = [config(regime, s, seed, a.width) for s in settings.values() for seed in a.seeds]
        t0 = time.perf_counter()
        execute(plan_configs(configs, a.runs), "local", root=a.runs, jobs=a.jobs, log=lambda line: None)
        wall = time.perf_counter() - t0
        runs = {k: [find_run(config(regime, s, seed, a.width), root=a.runs) for seed in a.seeds]
                for k, s in settings.items()}
        seconds = [float(r.history["seconds"].sum()) for rs in runs.values() for r in rs]
        base = runs[json.dumps(BASE, sort_keys=True)]
        rec = {**REGIMES[regime], "steps": REGIMES[regime]["epochs"]
               * -(-REGIMES[regime]["n_train"] // 128),
               "wall_s": wall, "runs": len(configs), "run_s_mean": sum(seconds) / len(seconds),
               "baseline_train_acc": [r.final["train_acc"] for r in base],
               "baseline_val_acc": [r.final["val_acc"] for r in base], "comparisons": {}}
        for c in a.comparisons:
            name, s, b = COMPARISONS[c]
            va = [r.final["val_acc"] for r in runs[json.dumps(s, sort_keys=True)]]
            vb = [r.final["val_acc"] for r in runs[json.dumps(b, sort_keys=True)]]
            d = stats.paired_difference(va, vb)
            sd = d.get("sd")
            d["per_seed"] = [x - y for x, y in zip(va, vb)]
            rec["comparisons"][c] = {
                "name": name, "setting": va, "baseline": vb, "difference": d,
                "power": {n: stats.power(d["mean"], sd, n) for n in SEED_COUNTS},
                "mdd": {n: stats.min_detectable(sd, n) for n in SEED_COUNTS},
                "seeds_needed": stats.seeds_needed(d["mean"], sd)}
        out["regimes"][regime] = rec
        print(report_regime(regime, rec), flush=True)
    return out


def pt(v):
    return "-" if v is None else f"{100 * v:+.2f}"


def report_regime(regime: str, r: dict) -> str:
    tr = sum(r["baseline_train_acc"]) / len(r["baseline_train_acc"])
    va = sum(r["baseline_val_acc"]) / len(r["baseline_val_acc"])
    lines = [f"\n## {regime}: {r['n_train']} train / {r['n_val']} val images, {r['epochs']} "
             f"epochs ({r['steps']} steps), scored every {r['eval_every']}; {r['runs']} runs in "
             f"{r['wall_s']:.0f} s wall, {r['run_s_mean']:.1f} s per run (epoch seconds summed)",
             f"baseline (lr 0.05 constant, no wd): train acc {100 * tr:.2f}%, val acc "
             f"{100 * va:.2f}% (mean over seeds)",
             "| comparison | per-seed differences (pt) | mean | sd | 95% CI | power at n=3/5/8/10 "
             "| MDD at n=3/5/8/10 | seeds needed |", "|---|---|---|---|---|---|---|---|"]
    for c in r["comparisons"].values():
        d = c["difference"]
        per = ", ".join(pt(x) for x in d.get("per_seed", []))
        ci = d.get("ci95") or [None, None]
        lines.append(
            f"| {c['name']} | {per} | {pt(d['mean'])} | {pt(d.get('sd'))} | "
            f"[{pt(ci[0])}, {pt(ci[1])}] | "
            + "/".join("-" if c["power"][n] is None else f"{c['power'][n]:.2f}"
                       for n in SEED_COUNTS)
            + " | " + "/".join(pt(c["mdd"][n]) for n in SEED_COUNTS)
            + f" | {c['seeds_needed'] if c['seeds_needed'] is not None else '-'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    out = measure(a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
