#!/usr/bin/env python
"""Initialisation, measured: torchvision's MobileNet init against PyTorch's layer defaults.

Trains the same small config once per (init, seed) through ``hpstudy.run`` (a run store under
--runs, so an interrupted study resumes and a finished run is not trained again) and prints,
per init, the final validation accuracy of every seed, their mean and sd, then the paired
per-seed difference pytorch - torchvision with a 95% t-interval, all from ``hpstudy.stats``
(``summary``, ``paired_difference``), as the study notebooks compute them. See
benchmarks/INIT.md.

    python benchmarks/init_study.py --seeds 0 1 2 --runs /tmp/init_runs
"""
from __future__ import annotations

import argparse
import datetime
import math
import sys

import torch

import hpstudy
from hpstudy.config import INITS
from hpstudy.stats import paired_difference, summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--runs", default="/tmp/init_runs", help="run store root (temporary)")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def config(a: argparse.Namespace, init: str, seed: int) -> hpstudy.Config:
    return hpstudy.Config.from_dict(
        width=a.width, n_train=a.n_train, n_val=a.n_val, epochs=a.epochs, batch_size=128,
        lr=0.05, schedule="cosine", weight_decay=5e-4, seed=seed, device=a.device, init=init)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"torch {torch.__version__}, cpu capability: {torch.backends.cpu.get_cpu_capability()}, "
          f"threads: {torch.get_num_threads()}")
    print(f"command: python benchmarks/init_study.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    acc: dict[str, dict[int, float]] = {i: {} for i in INITS}
    for seed in a.seeds:               # seed-major: a partial study is already paired
        for init in INITS:
            r = hpstudy.run(config(a, init, seed), root=a.runs)
            if r.status != "done":
                print(f"init={init} seed={seed}: {r.status}")
                continue
            acc[init][seed] = float(r.final["val_acc"])
            print(f"init={init} seed={seed}: final val_acc {acc[init][seed]:.4f}", flush=True)

    print()
    for init in INITS:
        v = [acc[init][s] for s in a.seeds if s in acc[init]]
        print(f"init = {init}")
        print("  seed  val_acc")
        for s in a.seeds:
            print(f"  {s:>4}  " + (f"{acc[init][s]:.4f}" if s in acc[init] else "-"))
        st = summary(v)
        sd = math.nan if st["sd"] is None else st["sd"]
        print(f"  mean  {st['mean']:.4f}  sd {sd:.4f}  (n={st['n']})" if v else "  no runs")
    paired = [s for s in a.seeds if all(s in acc[i] for i in INITS)]
    print()
    print("paired difference pytorch - torchvision (val_acc)")
    for s in paired:
        print(f"  seed {s}: {acc['pytorch'][s] - acc['torchvision'][s]:+.4f}")
    if paired:
        # the library's paired t-interval over seeds (hpstudy.stats), as the study notebooks
        d = paired_difference([acc["pytorch"][s] for s in paired],
                              [acc["torchvision"][s] for s in paired])
        lo, hi = d["ci95"] or (math.nan, math.nan)
        sd = math.nan if d["sd"] is None else d["sd"]
        print(f"  mean {d['mean']:+.4f}  sd {sd:.4f}  95% t-interval [{lo:+.4f}, {hi:+.4f}] "
              f"(n={d['n']}, df={d['n'] - 1})")
        if d["ci95"] is not None:
            print("  interval " + ("excludes" if d["detected"] else "includes") + " zero")
    return 0


if __name__ == "__main__":
    sys.exit(main())
