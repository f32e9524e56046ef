"""Where and how a run computes: device, precision, compile, and the process-wide settings.

``Config`` says "auto" for most of these; the functions here settle it for this machine. The
run store records what they chose (``config.json``, "resolved"); see ``store.NOT_HASHED`` for
which of them enter a run's hash.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("parameter 'device': 'cuda' requested but CUDA is not available "
                           "(use 'auto' or 'cpu')")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def resolve_compile(flag: str, device: torch.device) -> bool:
    return flag == "on" or (flag == "auto" and device.type == "cuda")


def default_eval_batch_size(device: torch.device) -> int:
    # the CPU's throughput is flat from 100 to 256 images; a GPU wants large batches
    # (measurements: benchmarks/RESULTS.md, "Defaults the code cites")
    return 1024 if device.type == "cuda" else 128


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- process-wide settings -------------------------------------------------------------------

_ALLOCATOR = {"tuned": False}


def allocator_tuned() -> bool:
    """Whether ``tune_cpu_allocator`` is in effect in this process."""
    return _ALLOCATOR["tuned"]


def tune_cpu_allocator() -> bool:
    """Make glibc's malloc keep the memory of freed tensors instead of handing it back.

    By default every tensor over a few MB is its own ``mmap`` and ``munmap``: a training step
    then page-faults in (and zeroes) ~70-130 MB of fresh memory, and with two threads the
    faults and TLB shoot-downs serialise. Serving those sizes from the heap and not trimming
    it removes that (measured on the 2-core CPU: 30,000 -> 100 minor faults per step,
    +15-20% steps/s). Process-wide and one-way (glibc has no "back to default"); the process
    keeps its peak heap until it exits. Returns whether it is in effect (glibc Linux only).
    """
    if _ALLOCATOR["tuned"]:
        return True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = (libc.mallopt(m_mmap_threshold, ctypes.c_int(1 << 30)) == 1
              and libc.mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1)) == 1)
    except (OSError, AttributeError):
        ok = False
    _ALLOCATOR["tuned"] = ok
    return ok


@contextlib.contextmanager
def run_settings(device: torch.device, *, tune_allocator: bool = True):
    """The process-wide settings a run trains under (``train.fit`` and the benchmark use this).

    CPU: deterministic algorithms (warn only) so that a run is reproducible, without the
    NaN-filling of every fresh tensor that deterministic mode adds by default (a debugging aid
    that costs ~7% of a CPU step; our kernels never read uninitialised memory, which the
    determinism tests check); and ``tune_cpu_allocator()`` (one-way, see there).
    Everything but the allocator is restored on exit.
    """
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.utils.deterministic.fill_uninitialized_memory)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        if tune_allocator:
            tune_cpu_allocator()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.utils.deterministic.fill_uninitialized_memory = saved[2]


def cpu_name() -> str:
    """The CPU's model name, for the record of a measurement."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What a recorded speed depends on: CPU, its kernel kind (``get_cpu_capability``: AVX2
    and AVX-512 machines differ in speed and float results), cores, torch, GPU."""
    return {"cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
