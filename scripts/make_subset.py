#!/usr/bin/env python3
"""Write a small real CIFAR-100 subset for the GPU check's accuracy sanity run.

CIFAR-100's python files (about 160 MB) do not travel to the GPU machine; this file does:
a class-stratified draw of the report's 40,000/10,000 split of the official training file
(by default 5,000 training and 2,000 validation images, 50 and 20 per class, disjoint), as
one compressed .npz of about 19 MB (at most 40 MB; a larger one is refused).

    python scripts/make_subset.py                 # from $HPSTUDY_DATA (or ./data)
    python scripts/make_subset.py --data-root /path/to/data --out gpu-check-data/cifar100-subset.npz

``python -m hpstudy.bench.gpu_check`` (``scripts/gpu_check.sh``) finds it at the default path, or
takes ``--subset PATH``. Runs here, where the data are; needs numpy and torch only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

import numpy as np  # noqa: E402

from hpstudy import data as D  # noqa: E402

DEFAULT_OUT = ROOT / "gpu-check-data" / "cifar100-subset.npz"
MAX_BYTES = 40 * 10**6


def make_subset(data: D.CIFAR100, n_train: int, n_val: int, seed: int = 0) -> dict:
    """Arrays of the subset: stratified ``n_train`` of the 40k split, ``n_val`` of the 10k."""
    n = len(data.train)
    tr, va = D.split_indices(n, D.default_n_val(n), 0)
    tr = D.stratified_subset(tr, data.train.fine, n_train, seed)
    va = D.stratified_subset(va, data.train.fine, n_val, seed + 1)
    out = {}
    for name, idx in (("train", tr), ("val", va)):
        s = data.train.subset(idx)
        out[f"x_{name}"] = s.x.numpy().astype(np.uint8)
        out[f"fine_{name}"] = s.fine.numpy().astype(np.int16)
        out[f"coarse_{name}"] = s.coarse.numpy().astype(np.int16)
        out[f"index_{name}"] = idx.numpy().astype(np.int32)   # into the official train file
    meta = {"source": data.root, "md5": data.md5, "official": data.official,
            "split": "the report's 40,000/10,000 split of the training file (split seed 0)",
            "stratified_seed": seed, "n_train": len(tr), "n_val": len(va)}
    out["meta"] = np.array(json.dumps(meta))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None,
                   help="folder holding cifar-100-python/ (default $HPSTUDY_DATA, else ./data)")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help=f"the .npz to write (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--train", type=int, default=5000, help="training images (default 5000)")
    p.add_argument("--val", type=int, default=2000, help="validation images (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stratified draw")
    a = p.parse_args(argv)
    try:
        data = D.load_cifar100(a.data_root, download_missing=False)
        arrays = make_subset(data, a.train, a.val, a.seed)
    except (D.DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    size = tmp.stat().st_size
    if size > MAX_BYTES:
        tmp.unlink()
        print(f"error: the subset would be {size / 1e6:.1f} MB, over {MAX_BYTES / 1e6:.0f} MB: "
              "ask for fewer images", file=sys.stderr)
        return 2
    tmp.replace(out)
    sha = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    print(f"wrote {out}: {len(arrays['fine_train']):,} train + {len(arrays['fine_val']):,} val "
          f"images of {data.root}, {size / 1e6:.1f} MB (sha256 {sha}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
