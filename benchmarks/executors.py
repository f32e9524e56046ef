"""Local process pool vs inline: the same report rendered both ways, one after the other, in
fresh run stores, with the ratio of wall times (and the CPU kind, since it decides the ratio).

    python benchmarks/executors.py --preset quick learning_rate schedule -p epochs 3

Each variant is a whole `hpstudy report` (plan, training, notebooks, HTML) in a subprocess,
so it pays what a user pays; the default executor should be the faster one.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from hpstudy.device import machine


def report(executor: str, args, work: str) -> float:
    cmd = [sys.executable, "-m", "hpstudy", "report", *args.studies, "--preset", args.preset,
           "--executor", executor, "--runs", os.path.join(work, f"runs-{executor}"),
           "--out", os.path.join(work, f"out-{executor}")]
    for k, v in args.param or []:
        cmd += ["-p", k, v]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{executor}: exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", nargs="*")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="hpstudy-exec-")
    try:
        out = {"inline_s": report("inline", args, work), "local_s": report("local", args, work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.update(ratio=out["inline_s"] / out["local_s"], preset=args.preset,
               studies=args.studies or "all", params=args.param or [],
               date=time.strftime("%Y-%m-%d"), **machine())
    print(f"inline {out['inline_s']:.1f} s, local {out['local_s']:.1f} s: local is "
          f"{out['ratio']:.2f}x faster ({out['cpu_capability']}, {out['cpus']} cores)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
