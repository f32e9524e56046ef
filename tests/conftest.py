"""Shared fixtures and helpers: a tiny CIFAR-100 in the official layout, an isolated run
store, the repository root, a silent log function and the bit-for-bit history comparison."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REAL_DATA = os.environ.get("HPSTUDY_DATA")
REPO_ROOT = Path(__file__).resolve().parents[1]


# Fixtures that start a Jupyter kernel or a process: a test that uses one is marked
# ``subprocess`` here, once, rather than by hand in each file (pyproject.toml registers it).
STARTS_PROCESSES = {"execute", "executed"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if STARTS_PROCESSES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.subprocess)


def quiet(_message: str) -> None:
    """A ``log`` function that drops everything (for ``hpstudy.run(..., log=quiet)``)."""


def same_history(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Identical, bit for bit, in every column but the wall-clock ``seconds``.

    Only for two runs on the same machine: float results differ between CPU kinds (AVX2 and
    AVX-512 kernels round differently), so no test compares a history with stored numbers."""
    from hpstudy.schema import HISTORY_COLUMNS

    cols = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True),
                                  check_exact=True)


def write_tiny_cifar(root: Path, per_class_train: int = 10, per_class_test: int = 2,
                     seed: int = 0) -> Path:
    """A CIFAR-100 look-alike: 100 classes, each a fixed colour pattern plus noise, so that a
    model can learn it in a few steps. Written exactly as the official pickles are laid out."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    protos = rng.integers(40, 216, size=(100, 3, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)

    def make(per_class, name):
        fine = np.repeat(np.arange(100), per_class)
        rng.shuffle(fine)
        noise = rng.normal(0, 25, size=(len(fine), 3, 32, 32))
        x = np.clip(protos[fine] + noise, 0, 255).astype(np.uint8).reshape(len(fine), 3072)
        d = {"filenames": [f"{name}_{i:05d}.png" for i in range(len(fine))],
             "batch_label": f"{name} batch", "fine_labels": fine.tolist(),
             "coarse_labels": (fine // 5).tolist(), "data": x}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)

    make(per_class_train, "train")
    make(per_class_test, "test")
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{i:02d}" for i in range(100)],
                     "coarse_label_names": [f"super{i:02d}" for i in range(20)]}, f, protocol=2)
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return write_tiny_cifar(tmp_path_factory.mktemp("tiny_cifar"))


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """An empty run store for this test."""
    root = tmp_path / "runs"
    monkeypatch.setenv("HPSTUDY_RUNS", str(root))
    return root


@pytest.fixture
def tiny_env(tiny_root, store, monkeypatch):
    """HPSTUDY_DATA pointing at the tiny data set, HPSTUDY_RUNS at an empty store."""
    monkeypatch.setenv("HPSTUDY_DATA", str(tiny_root))
    return tiny_root


def tiny_config(**kw) -> dict:
    """A config that trains in about a second on the tiny data set."""
    return {"width": 0.25, "epochs": 2, "batch_size": 100, "lr": 0.05, "device": "cpu", **kw}


@pytest.fixture
def real_root() -> Path:
    if not REAL_DATA or not (Path(REAL_DATA) / "cifar-100-python" / "train").exists():
        pytest.skip("real CIFAR-100 not available (set HPSTUDY_DATA)")
    return Path(REAL_DATA)


@pytest.fixture(scope="module")
def trained_once(tiny_root, tmp_path_factory) -> Path:
    """One finished 2-epoch tiny run, trained once for this module (the 2 cores are shared)."""
    root = tmp_path_factory.mktemp("template_store")
    import hpstudy

    return hpstudy.run(tiny_config(data_root=str(tiny_root)), root=root, log=quiet).dir


@pytest.fixture
def done_run(trained_once, tiny_env, store):
    """A copy of that run in this test's own store (data_root is not part of the hash)."""
    import shutil

    from hpstudy.store import Run

    d = store / trained_once.name
    shutil.copytree(trained_once, d)
    return Run.load(d)
