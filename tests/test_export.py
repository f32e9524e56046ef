"""Export of the run store to TensorBoard (hpstudy.export)."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

import hpstudy
from hpstudy import export

from conftest import tiny_config

TAGS = {"train/loss": "train_loss", "train/acc": "train_acc", "val/loss": "val_loss",
        "val/acc": "val_acc", "lr": "lr"}


def read_scalars(event_file: Path) -> dict[str, dict[int, float]]:
    """tag -> step -> value, with TensorBoard's EventAccumulator where installed, else by
    reading the TFRecord file (length, crc, Event protobuf, crc) with tensorboardX's proto."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        EventAccumulator = None
    if EventAccumulator is not None:
        acc = EventAccumulator(str(event_file))
        acc.Reload()
        return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, dict[int, float]] = {}
    data = event_file.read_bytes()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        pos += 12                                   # length and its crc
        event = Event.FromString(data[pos:pos + length])
        pos += length + 4                           # the record and its crc
        for v in event.summary.value:
            if v.WhichOneof("value") == "simple_value":
                out.setdefault(v.tag, {})[event.step] = v.simple_value
    return out


@pytest.mark.slow
def test_tensorboard_export(tiny_env, store, tmp_path):
    pytest.importorskip("tensorboardX")
    r = hpstudy.run(tiny_config(n_train=200, epochs=2), log=lambda s: None)
    # a run without a finished epoch (config written, training not begun) is left out
    empty = store / "0123456789ab"
    empty.mkdir()
    (empty / "config.json").write_text((r.dir / "config.json").read_text())
    (empty / "status").write_text("running\n")

    out = tmp_path / "tb"
    logs = []
    assert export.tensorboard(out, root=store, log=logs.append) == 1
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 1 and folders[0].startswith(f"{r.hash}_lr=0.05_")
    files = list((out / folders[0]).glob("events.out.tfevents.*"))
    assert len(files) == 1
    scalars = read_scalars(files[0])
    assert set(scalars) == set(TAGS)
    assert sum(len(v) for v in scalars.values()) == 5 * 2
    for tag, col in TAGS.items():
        assert sorted(scalars[tag]) == [1, 2]
        for step, value in scalars[tag].items():
            want = float(r.history.loc[r.history["epoch"] == step, col].iloc[0])
            assert value == pytest.approx(want, rel=1e-6)     # stored as float32

    # exporting again replaces the run's events rather than adding a second copy
    assert export.tensorboard(out, root=store, log=logs.append) == 1
    assert len(list((out / folders[0]).glob("events.out.tfevents.*"))) == 1
    assert any("tensorboard --logdir" in s for s in logs)


def test_short_description_is_a_safe_folder_name():
    cfg = hpstudy.Config.from_dict(tiny_config(data_root="/some/where", lr=0.5, seed=3))
    text = export.short_description(cfg)
    assert text.startswith("lr=0.5_")
    assert "seed=3" in text and "data_root" not in text and "device" not in text
    assert "/" not in text and len(text) <= 80


def test_short_description_is_config_describe_made_safe():
    from hpstudy.config import describe
    cfg = hpstudy.Config.from_dict(tiny_config(lr=0.5, seed=3, schedule="cosine"))
    assert export.short_description(cfg, limit=1000) == \
        describe(cfg, skip=export.NOT_DESCRIBED, sep="_")
    assert export.short_description(cfg) == "lr=0.5_batch_size=100_epochs=2_schedule=cosine_" \
                                            "width=0.25_seed=3"


def test_missing_tensorboardx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)      # as if not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[tensorboard\]'"):
        export.tensorboard(tmp_path / "tb", root=tmp_path / "runs")
