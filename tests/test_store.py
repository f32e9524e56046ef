"""The run store: caching by resolved config, folder contents, list_runs, strict reading of
history.csv and checkpoints (the CLI's ``train`` and ``runs [--clear]``: test_cli.py)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

import hpstudy
from hpstudy import Config, StoreError
from hpstudy import store as R

from conftest import quiet, tiny_config


def test_run_folder_contents(done_run):
    d = done_run.dir
    assert done_run.status == "done" and len(done_run.history) == 2
    names = {p.name for p in d.iterdir()}
    assert {"config.json", "history.csv", "checkpoint.pt", "checkpoint.prev.pt", "model.pt",
            "status", "lock"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    meta = json.loads((d / "config.json").read_text())
    assert meta["lr"] == 0.05 and meta["resolved"]["device"] == "cpu"
    assert meta["data"]["n_train"] == 1000 and meta["data"]["official"] is False
    assert R.load_checkpoint(d / "checkpoint.pt")["epoch"] == 2
    assert R.load_checkpoint(d / "checkpoint.prev.pt")["epoch"] == 1
    m = done_run.model
    assert isinstance(m, hpstudy.model.MobileNet) and not m.training
    assert sum(p.numel() for p in m.parameters()) == 238_772


def test_second_call_comes_from_the_store(done_run):
    logs = []
    again = hpstudy.run(tiny_config(), log=logs.append)
    assert again.dir == done_run.dir and not again.trained
    assert any("(from the store)" in s for s in logs)
    assert not any(s.startswith("epoch ") for s in logs)
    pd.testing.assert_frame_equal(again.history, done_run.history)
    # the Config object and the dict are the same run
    assert hpstudy.run(Config.from_dict(tiny_config()), log=quiet).dir == done_run.dir


def test_hash_covers_results_not_location(tiny_env):
    data = hpstudy.data.load_cifar100()
    h = lambda **kw: R.run_hash(R.resolved_config(Config.from_dict(tiny_config(**kw))),  # noqa: E731
                                data.identity)
    assert h() == h(data_root="/elsewhere") == h(eval_batch_size=64)
    assert len({h(), h(lr=0.1), h(seed=1), h(epochs=3), h(width=0.5)}) == 5
    assert R.run_hash(R.resolved_config(Config.from_dict(tiny_config())), "other-data") != h()
    # 'auto' is settled before hashing: on this CPU machine auto == cpu
    assert h(device="auto") == h(device="cpu")


def test_hash_does_not_depend_on_the_machine():
    """A CPU head must find the runs a GPU worker trained: the device and the compile flag
    are recorded, not hashed; the (resolved) precision is hashed."""
    def h(**kw):
        return R.run_hash(R.resolved_config(Config.from_dict(tiny_config(**kw))), "data-id")

    assert R.HASH_VERSION == 2 and {"device", "compile"} <= set(R.NOT_HASHED)
    assert h(device="cpu") == h(device="auto")           # this machine has no GPU
    assert h(compile="on") == h(compile="off") == h(compile="auto") == h()
    assert h(precision="bf16") != h(precision="fp32") == h(precision="auto")  # auto -> fp32 here
    resolved = R.resolved_config(Config.from_dict(tiny_config(device="auto", compile="on")))
    assert (resolved["device"], resolved["compile"]) == ("cpu", "on")   # still recorded


def test_model_pt_loads_without_config_json(done_run, tmp_path):
    """model.pt says its width: it loads on its own; a legacy bare state dict needs width."""
    alone = tmp_path / "elsewhere" / "model.pt"
    alone.parent.mkdir()
    shutil.copy(done_run.dir / "model.pt", alone)
    saved = torch.load(alone, weights_only=True)
    assert (saved["format"], saved["width"], saved["num_classes"]) == (1, 0.25, 100)
    m = R.load_weights(alone)                              # no width given: read from the file
    ref = done_run.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items())
    with pytest.raises(StoreError, match="holds width 0.25, expected 0.5"):
        R.load_weights(alone, width=0.5)
    legacy = tmp_path / "legacy.pt"
    torch.save(saved["state_dict"], legacy)
    assert sum(p.numel() for p in R.load_weights(legacy, width=0.25).parameters()) == 238_772
    with pytest.raises(StoreError, match="does not say its width"):
        R.load_weights(legacy)


def test_checkpoint_has_no_scheduler_and_old_ones_still_load(done_run, tmp_path):
    state = R.load_checkpoint(done_run.dir / "checkpoint.pt")
    assert "scheduler" not in state                     # lr_at(cfg, epoch) is the schedule
    old = tmp_path / "old.pt"
    torch.save({**state, "scheduler": {"schedule": "constant", "last_epoch": 1, "lr": 0.05}}, old)
    assert R.load_checkpoint(old)["epoch"] == 2


def test_list_runs(done_run):
    df = hpstudy.list_runs()
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["hash"], row["status"], row["epochs_done"]) == (done_run.hash, "done", 2)
    assert row["final_val_acc"] == done_run.history["val_acc"].iloc[-1]
    assert hpstudy.list_runs(Path(done_run.dir).parent / "nothing").empty


# --- strict readers --------------------------------------------------------------------------

def test_read_history_round_trip_keeps_floats_exact(tmp_path):
    rows = [{"epoch": 1, "lr": 0.05, "train_loss": 4.123456789012345, "train_acc": 0.0125,
             "val_loss": float("nan"), "val_acc": float("nan"), "seconds": 1.5},
            {"epoch": 2, "lr": 0.05, "train_loss": float("inf"), "train_acc": 0.01,
             "val_loss": 1 / 3, "val_acc": 0.0, "seconds": 2.0}]
    p = tmp_path / "history.csv"
    p.write_bytes(R.history_csv(rows))
    df = R.read_history(p)
    assert list(df["epoch"]) == [1, 2] and df["epoch"].dtype.kind == "i"
    assert df["train_loss"].iloc[0] == 4.123456789012345 and df["val_loss"].iloc[1] == 1 / 3
    assert df["val_loss"].isna().iloc[0] and df["train_loss"].iloc[1] == float("inf")
    p.write_bytes(R.history_csv([]))
    assert len(R.read_history(p)) == 0


@pytest.mark.parametrize("damage", ["cut_mid_row", "cut_mid_number", "no_newline", "garbage",
                                    "binary", "empty", "bad_epochs", "extra_field"])
def test_read_history_refuses_damaged_files(tmp_path, damage):
    rows = [{"epoch": e, "lr": 0.05, "train_loss": 4.6, "train_acc": 0.01, "val_loss": 4.61,
             "val_acc": 0.0123456, "seconds": 1.25} for e in (1, 2, 3)]
    raw = R.history_csv(rows)
    bad = {
        "cut_mid_row": raw[:raw.rindex(b"0.0123456")],
        "cut_mid_number": raw[:-4],
        "no_newline": raw[:-1],
        "garbage": b"epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds\n1,x,,,,,\n",
        "binary": os.urandom(200),
        "empty": b"",
        "bad_epochs": raw.replace(b"\n2,", b"\n5,"),
        "extra_field": raw.replace(b"1.25\n", b"1.25,9\n", 1),
    }[damage]
    p = tmp_path / "history.csv"
    p.write_bytes(bad)
    with pytest.raises(StoreError) as e:
        R.read_history(p)
    assert str(p) in str(e.value)


def test_load_checkpoint_refuses_damaged_and_foreign_files(done_run, tmp_path):
    good = (done_run.dir / "checkpoint.pt").read_bytes()
    cases = {"truncated": good[: len(good) // 2], "garbage": os.urandom(4096), "empty": b""}
    for name, payload in cases.items():
        p = tmp_path / f"{name}.pt"
        p.write_bytes(payload)
        with pytest.raises(StoreError, match=f"{p}: cannot be loaded"):
            R.load_checkpoint(p)
    p = tmp_path / "foreign.pt"
    torch.save({"epoch": 1}, p)
    with pytest.raises(StoreError, match="not a checkpoint of this tool"):
        R.load_checkpoint(p)
    state = R.load_checkpoint(done_run.dir / "checkpoint.pt")
    state["history"] = state["history"][:1]
    torch.save(state, p)
    with pytest.raises(StoreError, match="1 history rows for epoch 2"):
        R.load_checkpoint(p)
    with pytest.raises(StoreError, match="cannot be loaded as MobileNet weights"):
        R.load_weights(done_run.dir / "model.pt", width=0.5)       # wrong shape


def test_subset_sizes_are_checked_before_training(tiny_env, store):
    from hpstudy.config import ConfigError

    with pytest.raises(ConfigError, match=r"'n_train': the split of .* holds 800 images \(got 5,000\)"):
        hpstudy.run(tiny_config(n_train=5000))
    with pytest.raises(ConfigError, match=r"'n_val': cannot draw 150 images stratified"):
        hpstudy.run(tiny_config(n_val=150))
    assert not store.exists() or not any(store.iterdir())
