"""What a run is: its config resolved for the machine that trains it, and the hash that names
its folder. Everything that finds a run (the plan, a worker, a notebook) goes through here."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..config import Config
from ..device import resolve_compile, resolve_device, resolve_precision

# 2: "device" and "compile" left the hash (version 1 hashed them).
HASH_VERSION = 2
# Keys that change speed, location or the machine but not the numbers a run produces. A run is
# found by its hash on whatever machine asks: a CPU head rendering the runs a GPU worker
# trained must compute the same hash, though "device" resolves to "cpu" there and "cuda" on
# the worker, and torch.compile ("auto") is on for CUDA only. Different CPU kinds round
# differently in the last bits too, and were never hashed either. What a run actually used
# stays recorded in its config.json ("resolved"). The resolved precision is hashed: bf16 and
# fp32 give different numbers (so "auto", bf16 on CUDA and fp32 elsewhere, matches across
# machines only where it resolves alike; a study meant for both names its precision).
NOT_HASHED = ("data_root", "eval_batch_size", "device", "compile")


def store_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("HPSTUDY_RUNS") or "runs").expanduser().resolve()


def resolved_config(cfg: Config) -> dict:
    """The config with 'auto' settled for this machine: what the run actually does."""
    device = resolve_device(cfg.device)
    d = cfg.to_dict()
    d["device"] = device.type
    d["precision"] = resolve_precision(cfg.precision, device)
    d["compile"] = "on" if resolve_compile(cfg.compile, device) else "off"
    return d


def run_hash(resolved: dict, data_identity: str) -> str:
    key = {k: v for k, v in resolved.items() if k not in NOT_HASHED}
    if key.get("eval_every", 1) == 1:
        # added after HASH_VERSION 2: every-epoch scoring keeps the hashes stored runs have
        key.pop("eval_every", None)
    key["data"] = data_identity
    key["hash_version"] = HASH_VERSION
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def for_machine(cfg: Config, machine: str) -> Config:
    """``cfg`` with ``precision: auto`` settled as it is on ``machine`` (a device type: "cpu",
    "cuda"), the machine class that trains the run. The precision is hashed, so a head that
    plans for workers of another class (a CPU head, GPU workers) pins it: the head, every
    worker and the notebooks then name the run by one hash."""
    if cfg.precision != "auto":
        return cfg
    return cfg.replace(precision=resolve_precision("auto", torch.device(machine)))
