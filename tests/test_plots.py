"""Smoke tests of the figures: they render to PNG and hold the expected artists."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from hpstudy import plots, stats


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return data


class _Run:
    def __init__(self, history):
        self.history = history


def _long(settings=("baseline", "lr=0.1"), seeds=(0, 1, 2), epochs=5, diverge=None):
    rng = np.random.default_rng(0)
    runs = {}
    for s in settings:
        for seed in seeds:
            e = np.arange(1, epochs + 1)
            h = pd.DataFrame({"epoch": e, "lr": 0.1,
                              "train_loss": 4.6 / e + rng.normal(0, 0.05, epochs),
                              "train_acc": 0.1 * e + rng.normal(0, 0.01, epochs),
                              "val_loss": 4.6 / e + rng.normal(0, 0.05, epochs),
                              "val_acc": 0.08 * e + rng.normal(0, 0.01, epochs),
                              "seconds": 1.0})
            if diverge == (s, seed):
                h.loc[h.epoch >= 3, ["train_loss", "val_loss", "val_acc"]] = np.nan
            runs[(s, seed)] = _Run(h)
    return stats.long_table(runs)


# --- seed_curves ---------------------------------------------------------------------------

def test_seed_curves_renders():
    long = _long(diverge=("lr=0.1", 2))
    fig = plots.seed_curves(long, title="study")
    assert isinstance(fig, Figure)
    _png(fig)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == ["validation loss", "validation accuracy",
                                               "train loss", "train accuracy"]
    for ax in axes:
        assert len(ax.get_lines()) >= 2               # one mean line per setting
        assert len(ax.collections) >= 2               # one min-max band per setting
        assert ax.get_xlabel() == "epoch"
    assert isinstance(axes[1].yaxis.get_major_formatter(), PercentFormatter)
    assert not isinstance(axes[0].yaxis.get_major_formatter(), PercentFormatter)
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["baseline", "lr=0.1"]
    assert "mean over 3 seeds, band: min-max" in fig._suptitle.get_text()
    assert fig._suptitle.get_text().startswith("study")


def test_seed_curves_mean_and_band_values():
    long = _long(settings=("baseline",), seeds=(0, 1, 2), epochs=3)
    fig = plots.seed_curves(long, metrics=("val_acc",))
    ax = fig.axes[0]
    want = long[long.metric == "val_acc"].groupby("epoch")["value"]
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), want.mean().to_numpy())
    verts = np.concatenate([p.vertices for p in ax.collections[0].get_paths()])
    assert verts[:, 1].min() == pytest.approx(want.min().min())
    assert verts[:, 1].max() == pytest.approx(want.max().max())
    _png(fig)


def test_seed_curves_unequal_seeds_and_missing_metric():
    long = _long(seeds=(0, 1, 2))
    long = long[~((long.setting == "lr=0.1") & (long.seed == 2))]
    long = long[long.metric != "train_acc"]
    fig = plots.seed_curves(long)
    assert "mean over 2-3 seeds" in fig._suptitle.get_text()
    _png(fig)


# --- forest --------------------------------------------------------------------------------

def _gid(fig, gid):
    return [a for a in fig.axes[0].get_lines() if a.get_gid() == gid]


def test_forest_two_rows_with_published():
    rows = pd.DataFrame({"setting": ["lr=0.1", "wd=0"], "mean": [0.02, -0.004],
                         "lo": [0.01, -0.012], "hi": [0.03, 0.004],
                         "published": [0.025, np.nan]})
    fig = plots.forest(rows, title="vs baseline")
    _png(fig)
    ax = fig.axes[0]
    intervals = _gid(fig, "interval")
    assert len(intervals) == 2
    np.testing.assert_allclose(intervals[0].get_xdata(), [1.0, 3.0])       # points
    assert len(_gid(fig, "mean")) == 2
    pub = _gid(fig, "published")
    assert len(pub) == 1 and list(pub[0].get_xdata()) == pytest.approx([2.5])
    assert pub[0].get_marker() == "D" and pub[0].get_label() == "report"
    # excludes 0 -> stronger colour than the one including 0
    assert intervals[0].get_color() != intervals[1].get_color()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["lr=0.1", "wd=0"]
    assert any(np.allclose(l.get_xdata(), 0) for l in ax.get_lines()
               if l.get_gid() is None)                                       # the 0 line
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "report" in labels
    assert ax.get_xlabel() == "difference in validation accuracy (points)"


def test_forest_one_seed_row_and_no_published():
    rows = pd.DataFrame({"setting": ["a", "b", "c"], "mean": [0.01, 0.02, np.nan],
                         "lo": [np.nan, 0.005, np.nan], "hi": [np.nan, 0.035, np.nan]})
    fig = plots.forest(rows, xlabel="points")
    _png(fig)
    assert len(_gid(fig, "interval")) == 1
    assert len(_gid(fig, "mean")) == 2
    assert _gid(fig, "published") == []
    assert fig.axes[0].get_xlabel() == "points"
