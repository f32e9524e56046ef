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


# --- figures the notebooks draw (moved from test_notebooks.py) ------------------------------

def _history(rows):
    import pandas as pd
    from hpstudy.schema import HISTORY_COLUMNS
    return pd.DataFrame([dict(zip(HISTORY_COLUMNS, r)) for r in rows], columns=HISTORY_COLUMNS)


def test_plots_draw_diverged_and_empty_histories_without_raising():
    import math

    from hpstudy import evaluation, plots

    nan, inf = math.nan, math.inf
    ok = _history([(1, 0.05, 4.6, 0.01, 4.6, 0.01, 1.0), (2, 0.05, 4.2, 0.05, 4.3, 0.04, 1.0)])
    late = _history([(1, 0.5, 4.6, 0.01, 50.0, 0.01, 1.0), (2, 0.5, inf, 0.0, nan, nan, 1.0)])
    first = _history([(1, 1e4, nan, 0.01, nan, nan, 0.4)])
    empty = _history([])
    assert evaluation.diverged_at(ok) is None
    assert evaluation.diverged_at(late) == 2
    assert evaluation.diverged_at(first) == 1
    assert evaluation.diverged_at(empty) is None
    for h in (ok, late, first, empty):
        render(plots.run_curves(h, title="t"))
    runs = {"ok": ok, "late": late, "first": first, "empty": empty}
    fig = render(plots.compare_runs(runs))
    labels = fig.legends[0].get_texts()
    assert any("diverged at epoch 2" in t.get_text() for t in labels)
    loss_ax = fig.axes[0]
    assert loss_ax.get_ylim()[1] <= plots.LOSS_CAP + 1e-9  # a blow-up does not flatten the rest
    render(plots.learning_rates(runs))


def render(fig):
    """Draw the figure to PNG bytes, as the notebook's display does."""
    import io
    fig.savefig(io.BytesIO(), format="png")
    return fig


def test_data_and_test_figures(tiny_root):
    import io
    import math

    import numpy as np
    import pandas as pd

    from hpstudy import data as D, evaluation, plots

    def png(fig) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        raw = buf.getvalue()
        assert raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) > 5000
        return raw

    def bars(ax, attr="get_height"):
        return [getattr(p, attr)() for p in ax.patches]

    data = D.load_cifar100(tiny_root)

    # class proportions: one bar per fine class (10 images each: share 1%), the uniform line
    fig = plots.class_proportions(data.train.fine, data.fine_names,
                                  evaluation.fine_to_coarse(data), data.coarse_names)
    png(fig)
    (ax,) = fig.axes
    assert len(ax.patches) == 100 and np.allclose(bars(ax), 0.01)
    assert sorted(t.get_text() for t in ax.get_xticklabels()) == sorted(data.fine_names)
    (uniform,) = ax.lines
    assert np.allclose(uniform.get_ydata(), 0.01) and "1/100" in uniform.get_label()
    assert ax.get_title().startswith("class proportions") and "superclass" in ax.get_title()

    # sample grid: 5 images on a 2 x 4 grid, each the image itself, titled fine + (coarse)
    fig = plots.sample_grid(data.train.x[:5], data.train.fine[:5], data.train.coarse[:5],
                            data.fine_names, data.coarse_names, ncols=4)
    png(fig)
    assert len(fig.axes) == 8
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5
    for i, ax in enumerate(shown):
        (im,) = ax.images
        assert np.array_equal(np.asarray(im.get_array()), data.train.x[i].numpy().transpose(1, 2, 0))
        fine, coarse = int(data.train.fine[i]), int(data.train.coarse[i])
        assert ax.get_title() == f"{data.fine_names[fine]}\n({data.coarse_names[coarse]})"
    assert not any(ax.images or ax.get_title() for ax in fig.axes[5:])

    # mixup's lambda: alpha 0 listed without a curve, Beta(0.2, 0.2) drawn, Beta(1, 1) as is
    fig = plots.beta_density([0.0, 0.2, 1.0])
    png(fig)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["alpha = 0: no mixup (lambda = 1)", "Beta(0.2, 0.2)", "Beta(1, 1)"]
    none, u_shape, flat = ax.lines
    assert len(none.get_xdata()) == 0
    y = np.asarray(u_shape.get_ydata())
    assert len(y) > 10 and y[len(y) // 2] < 1 < y[1]            # U-shaped: mass at 0 and 1
    assert np.allclose(flat.get_ydata(), 1.0)                   # Beta(1, 1) is uniform
    assert ax.get_title() == "mixup: distribution of lambda"

    # normalization statistics: mean and std panels, 3 channels x 2 sources each
    stats = {"a": ([0.5] * 3, [0.2] * 3), "b": ([0.4] * 3, [0.3] * 3)}
    fig = plots.normalization_stats(stats)
    png(fig)
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["mean", "std"]
    for ax, j in zip(fig.axes, (0, 1)):
        assert sorted(bars(ax)) == pytest.approx(sorted(stats["a"][j] + stats["b"][j]))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b"]
    assert fig.get_suptitle() == "per-channel statistics"

    # accuracy per superclass: a light coarse bar and a fine bar per superclass, the overall
    # line; a superclass without test images (nan) draws no bar and breaks nothing
    fig = plots.superclass_accuracy(pd.DataFrame(
        {"superclass": ["x", "y"], "acc": [0.2, float("nan")], "acc_coarse": [0.5, float("nan")]}),
        overall=0.3)
    png(fig)
    (ax,) = fig.axes
    widths = bars(ax, "get_width")
    assert len(widths) == 4
    assert widths[0] == 0.5 and widths[2] == 0.2 and math.isnan(widths[1]) and math.isnan(widths[3])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y"]
    (overall,) = ax.lines
    assert np.allclose(overall.get_xdata(), 0.3) and overall.get_label() == "overall: 30.0%"
    assert ax.get_title() == "test accuracy per superclass"
