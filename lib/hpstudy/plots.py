"""The study's figures: functions that take data and return a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` (not pyplot), so a library call neither
shows a figure twice in a notebook nor keeps it alive in pyplot's registry; a notebook shows
one with ``display(fig)`` or by leaving it as the cell's last expression.

Runs can be given as a ``hpstudy.Run`` or as a history DataFrame (columns as in
``hpstudy.schema.HISTORY_COLUMNS``). A run whose loss stopped being finite is drawn up to its
last finite epoch and marked with an x and "diverged at epoch k"; NaN and inf never raise.
"""
from __future__ import annotations

import math
import textwrap
import typing

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from .evaluation import diverged_at
from .schema import METRIC_LABELS
from .stats import finite
from .train import lr_at

DPI = 100
# Above this, a loss is a blow-up, not a learning curve: the axis stops there. A 100-class
# model starts at ln(100) = 4.6.
LOSS_CAP = 2 * math.log(100)


# --- helpers ---------------------------------------------------------------------------------

def _history(run) -> pd.DataFrame:
    h = run.history if hasattr(run, "history") else run
    if not isinstance(h, pd.DataFrame):
        h = pd.DataFrame(h)
    h = h.copy()
    for c in h.columns:
        if c != "epoch":
            h[c] = pd.to_numeric(h[c], errors="coerce").astype(float)
    # inf -> NaN: matplotlib skips NaN but lets inf wreck the axis limits
    return h.replace([np.inf, -np.inf], np.nan)


def _runs(runs) -> dict:
    if isinstance(runs, dict):
        return runs
    return {getattr(r, "hash", str(i)): r for i, r in enumerate(runs)}


def _palette(n: int) -> list:
    import seaborn as sns
    return sns.color_palette("tab10" if n <= 10 else "husl", n)


def _new(nrows=1, ncols=1, size=(10, 4), **kw):
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _has_data(ax) -> bool:
    """Whether any curve of ``ax`` (in data coordinates) has a finite value."""
    for line in ax.get_lines():
        if line.get_transform() == ax.transData:
            y = np.asarray(line.get_ydata(), dtype=float)
            if y.size and np.isfinite(y).any():
                return True
    return False


def _style(ax, metric: str, xmax: int | None = None):
    empty = not _has_data(ax)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if xmax:
        ax.set_xlim(0.5, xmax + 0.5)
    ax.grid(True, alpha=0.3)
    if metric.endswith("acc"):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel("accuracy")
        if empty:
            ax.set_ylim(0, 1)
    elif metric.endswith("loss"):
        ax.set_ylabel("cross-entropy loss")
        if empty:
            ax.set_ylim(0, LOSS_CAP)
        lo, hi = ax.get_ylim()
        if hi > LOSS_CAP:
            ax.set_ylim(max(lo, 0), LOSS_CAP)
            ax.set_ylabel(f"cross-entropy loss (axis cut at {LOSS_CAP:.1f})")


def _plot_metric(ax, h: pd.DataFrame, metric: str, color, label: str, linestyle="-",
                 diverged: int | None = None, linewidth: float = 1.8):
    """One curve, drawn up to the epoch before divergence; a diverged run gets an x at its
    divergence epoch, on the top edge for a loss (it went to infinity) and on the bottom
    edge for an accuracy (it is undefined there)."""
    if metric in h and len(h):
        hh = h if diverged is None else h[h["epoch"] < diverged]
        # epochs not scored (eval_every > 1) hold nan: the line joins the scored ones
        hh = hh[hh[metric].notna()]
        few = len(hh) <= 3
        ax.plot(hh["epoch"], hh[metric], color=color, linestyle=linestyle, label=label,
                linewidth=linewidth, marker="o" if few else None, markersize=3.5)
    else:
        ax.plot([], [], color=color, linestyle=linestyle, label=label, linewidth=linewidth)
    if diverged is not None:
        edge = 1.0 if metric.endswith("loss") else 0.0
        ax.plot([max(diverged, 1)], [edge], transform=ax.get_xaxis_transform(), marker="x",
                markersize=11, mew=2.5, color=color, linestyle="none", clip_on=False, zorder=5)


def _mark_divergence(ax, diverged: int, xmax: int, color="crimson"):
    x = max(diverged, 1)
    ax.axvline(x, color=color, linestyle=":", linewidth=1.2)
    left_half = x <= (xmax + 1) / 2
    ax.annotate(f"diverged at epoch {diverged}", xy=(x, 0.5), xycoords=("data", "axes fraction"),
                xytext=(6 if left_half else -6, 0), textcoords="offset points",
                ha="left" if left_half else "right", va="center", color=color, fontsize=9,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color, alpha=0.85))


def _finish_panels(axes, metrics, xmax: int) -> None:
    """Axes, titles and limits of a panel per metric; panels beyond the metrics are hidden."""
    for ax, m in zip(axes.flat, metrics):
        _style(ax, m, xmax)
        if m.endswith("acc"):
            ax.set_ylim(bottom=0)
        ax.set_title(METRIC_LABELS.get(m, m))
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)


def _widths(n: int) -> list:
    """Line widths, thickest first, so a run hidden under an identical later one still shows."""
    return [1.6 + 2.0 * (n - 1 - i) / max(n - 1, 1) if n > 1 else 1.8 for i in range(n)]


def _epochs_planned(run, h) -> int:
    cfg = getattr(run, "config", None)
    n = int(h["epoch"].max()) if len(h) else 1
    return max(n, getattr(cfg, "epochs", n) or n)


# --- training curves -------------------------------------------------------------------------

def run_curves(run, title: str | None = None, *, published: dict | None = None) -> Figure:
    """Loss and accuracy, train and validation, per epoch: two panels.

    ``published`` (optional): final-epoch numbers of the report for this setting
    (``published.numbers``), drawn as dotted horizontal lines.
    """
    h = _history(run)
    div = diverged_at(run)
    fig, axes = _new(1, 2, size=(11, 3.8))
    xmax = _epochs_planned(run, h)
    for ax, kind in zip(axes[0], ("loss", "acc")):
        for split, color in (("train", "C0"), ("val", "C1")):
            m = f"{split}_{kind}"
            _plot_metric(ax, h, m, color, "train" if split == "train" else "validation",
                         diverged=div)
            if published and m in published:
                ax.axhline(published[m], color=color, linestyle=":", linewidth=1,
                           label=f"report, {'train' if split == 'train' else 'validation'}")
        _style(ax, kind, xmax)
        if kind == "acc":
            ax.set_ylim(bottom=0)
        if div is not None:
            _mark_divergence(ax, div, xmax)
        ax.set_title("loss" if kind == "loss" else "accuracy")
        ax.legend(loc="best", fontsize=9)
    if title:
        fig.suptitle(title + (" (diverged)" if div is not None else ""))
    return fig


def compare_runs(runs, title: str | None = None,
                 metrics: typing.Sequence[str] = ("val_loss", "val_acc", "train_loss", "train_acc")
                 ) -> Figure:
    """Several runs overlaid, one panel per metric (default: validation and train, loss and
    accuracy). ``runs``: label -> Run or history."""
    runs = _runs(runs)
    colors = _palette(len(runs))
    ncols = 2
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = _new(nrows, ncols, size=(11, 3.6 * nrows))
    hist = {k: _history(r) for k, r in runs.items()}
    xmax = max([_epochs_planned(r, hist[k]) for k, r in runs.items()] or [1])
    for ax, m in zip(axes.flat, metrics):
        for (label, r), color, lw in zip(runs.items(), colors, _widths(len(runs))):
            div = diverged_at(r)
            name = label + (f"  (diverged at epoch {div})" if div is not None else "")
            _plot_metric(ax, hist[label], m, color, name, diverged=div, linewidth=lw)
    _finish_panels(axes, metrics, xmax)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4),
               frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def learning_rates(runs, title: str | None = "learning rate per epoch", *,
                   log: bool | None = None) -> Figure:
    """The learning rate of each epoch, for several runs (label -> Run or history).

    For a Run, the planned schedule of all its epochs is drawn dashed under the epochs it
    trained, so a run that stopped early still shows what it would have done.
    """
    runs = _runs(runs)
    colors = _palette(len(runs))
    fig, axes = _new(1, 1, size=(9, 3.6))
    ax = axes[0, 0]
    values = []
    xmax = 1
    planned_shown = False
    for (label, r), color, lw in zip(runs.items(), colors, _widths(len(runs))):
        h = _history(r)
        cfg = getattr(r, "config", None)
        div = diverged_at(r)
        done = int(h["epoch"].max()) if len(h) else 0
        if cfg is not None and done < cfg.epochs:
            # the epochs it did not train: what the schedule would have done
            e0 = max(done, 1)
            planned = [lr_at(cfg, e - 1) for e in range(e0, cfg.epochs + 1)]
            ax.plot(range(e0, cfg.epochs + 1), planned, color=color, linestyle="--",
                    linewidth=1, alpha=0.6)
            values += planned
            planned_shown = True
        if cfg is not None:
            xmax = max(xmax, cfg.epochs)
        name = label + (f"  (diverged at epoch {div})" if div is not None else "")
        if len(h):
            ax.plot(h["epoch"], h["lr"], color=color, marker="o" if len(h) <= 30 else None,
                    markersize=3, label=name, linewidth=lw)
            values += list(h["lr"].dropna())
            xmax = max(xmax, done)
            if div is not None:
                ax.plot([div], [h["lr"].iloc[-1]], marker="x", markersize=10, mew=2.5,
                        color=color, linestyle="none")
        else:
            ax.plot([], [], color=color, label=name)
    pos = [v for v in values if v > 0]
    if log is None:
        log = bool(pos) and max(pos) / min(pos) > 20
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0, top=max(values or [1]) * 1.08)
    _style(ax, "lr", xmax)
    ax.set_ylabel("learning rate" + (" (log scale)" if log else ""))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, frameon=False,
              title="dashed: epochs not trained" if planned_shown else None, title_fontsize=8)
    if title:
        ax.set_title(title)
    return fig


# --- data ------------------------------------------------------------------------------------

def class_proportions(labels, fine_names: list, coarse_of: typing.Sequence[int] | None = None,
                      coarse_names: list | None = None,
                      title: str | None = "class proportions of the training split") -> Figure:
    """Bar chart of the share of each fine class in ``labels`` (e.g. the 40,000-image training
    split), with the uniform share as a line; bars coloured by superclass when given."""
    import seaborn as sns

    labels = np.asarray(labels)
    k = len(fine_names)
    counts = np.bincount(labels, minlength=k)
    share = counts / max(counts.sum(), 1)
    fig, axes = _new(1, 1, size=(16, 4.6))
    ax = axes[0, 0]
    order = np.arange(k)
    if coarse_of is not None:
        coarse_of = np.asarray(coarse_of)
        order = np.lexsort((np.arange(k), coarse_of))   # grouped by superclass
        pal = sns.color_palette("tab20", 20)
        colors = [pal[int(coarse_of[i]) % 20] for i in order]
    else:
        colors = ["C0"] * k
    ax.bar(np.arange(k), share[order], color=colors, width=0.8)
    ax.axhline(1 / k, color="black", linestyle="--", linewidth=1,
               label=f"uniform: 1/{k} = {100 / k:.2f}%")
    ax.set_xticks(np.arange(k))
    ax.set_xticklabels([fine_names[i] for i in order], rotation=90, fontsize=7)
    ax.set_xlim(-0.7, k - 0.3)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=2))
    lo, hi = share.min(), share.max()
    pad = max((hi - lo) * 0.6, 0.1 / k)
    ax.set_ylim(max(0, lo - pad), hi + pad)
    ax.set_ylabel("share of images")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    if title:
        ax.set_title(title + (", bars coloured by superclass (axis does not start at 0)"
                              if coarse_of is not None else " (axis does not start at 0)"))
    return fig


def sample_grid(x, fine, coarse, fine_names: list, coarse_names: list, *, ncols: int = 8,
                title: str | None = None) -> Figure:
    """Images (uint8, N x 3 x 32 x 32) titled with their fine and (coarse) class names."""
    x = np.asarray(x.cpu() if hasattr(x, "cpu") else x)
    fine = np.asarray(fine.cpu() if hasattr(fine, "cpu") else fine)
    coarse = np.asarray(coarse.cpu() if hasattr(coarse, "cpu") else coarse)
    n = len(x)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = _new(nrows, ncols, size=(1.6 * ncols, 2.05 * nrows))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(x[i].transpose(1, 2, 0), interpolation="nearest")
        coarse_name = textwrap.fill(f"({coarse_names[coarse[i]]})".replace("_", " "), 20)
        ax.set_title(f"{fine_names[fine[i]]}".replace("_", " ") + "\n" + coarse_name,
                     fontsize=7.5, linespacing=1.1)
    if title:
        fig.suptitle(title)
    return fig


def normalization_stats(stats: dict, title: str | None = "per-channel statistics") -> Figure:
    """Grouped bars of per-channel mean and std for several sources.

    ``stats``: name -> (mean[3], std[3]), e.g. {"training split": ..., "report": ...}.
    """
    fig, axes = _new(1, 2, size=(10, 3.4))
    names = list(stats)
    colors = _palette(len(names))
    w = 0.8 / max(len(names), 1)
    for ax, which, j in ((axes[0, 0], "mean", 0), (axes[0, 1], "std", 1)):
        for i, (name, color) in enumerate(zip(names, colors)):
            vals = np.asarray(stats[name][j], dtype=float)
            ax.bar(np.arange(3) + (i - (len(names) - 1) / 2) * w, vals, width=w, color=color,
                   label=name)
        ax.set_xticks(range(3))
        ax.set_xticklabels(["R", "G", "B"])
        ax.set_title(which + " (axis does not start at 0)")
        ax.grid(True, axis="y", alpha=0.3)
        lo = min(float(np.min(stats[n][j])) for n in names)
        ax.set_ylim(lo * 0.8, None)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(names), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


# --- mixup -----------------------------------------------------------------------------------

def beta_pdf(alpha: float, points: int = 400):
    """The Beta(alpha, alpha) density on (0, 1), for the mixup notebook's figure."""
    t = np.linspace(0.0, 1.0, points + 2)[1:-1]
    logb = 2 * math.lgamma(alpha) - math.lgamma(2 * alpha)
    return t, np.exp((alpha - 1) * (np.log(t) + np.log1p(-t)) - logb)


def beta_density(alphas: typing.Sequence[float], *, compare_with: typing.Sequence[float] = (1.0,),
                 ymax: float = 4.0, title: str | None = None) -> Figure:
    """The Beta(alpha, alpha) density of mixup's lambda for each alpha > 0; ``compare_with``
    alphas (default 1.0, the mixup paper's CIFAR value) are drawn dashed. alpha = 0 (no
    mixup: lambda = 1 always) is listed in the legend without a curve."""
    fig, axes = _new(1, 1, size=(7, 3.8))
    ax = axes[0, 0]
    shown = []
    colors = _palette(len(alphas) + len(compare_with))
    for i, a in enumerate(alphas):
        a = float(a)
        if a <= 0:
            ax.plot([], [], color=colors[i], label=f"alpha = {a:g}: no mixup (lambda = 1)")
            continue
        t, p = beta_pdf(a)
        ax.plot(t, p, color=colors[i], linewidth=2, label=f"Beta({a:g}, {a:g})")
        shown.append(a)
    for j, a in enumerate(compare_with):
        if float(a) in shown:
            continue
        t, p = beta_pdf(float(a))
        ax.plot(t, p, color="gray", linestyle="--", linewidth=1.2,
                label=f"Beta({a:g}, {a:g}) (for comparison)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, ymax)
    ax.set_xlabel("lambda (weight of the first image)")
    ax.set_ylabel("density")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, loc="upper center")
    ax.set_title(title or "mixup: distribution of lambda")
    return fig


# --- test ------------------------------------------------------------------------------------

def superclass_accuracy(table: pd.DataFrame, overall: float | None = None,
                        title: str | None = "test accuracy per superclass") -> Figure:
    """Horizontal bars of accuracy per superclass, sorted. ``table`` has columns
    ``superclass`` and ``acc`` (fractions), as ``evaluation.test_scores`` returns; an
    ``acc_coarse`` column (prediction in the right superclass) is drawn as a light bar
    behind."""
    t = table.sort_values("acc").reset_index(drop=True)
    fig, axes = _new(1, 1, size=(8, 0.3 * len(t) + 1.4))
    ax = axes[0, 0]
    y = np.arange(len(t))
    names = [str(s).replace("_", " ") for s in t["superclass"]]
    if "acc_coarse" in t:
        ax.barh(y, t["acc_coarse"], color="C0", alpha=0.25,
                label="prediction in the right superclass")
    ax.barh(y, t["acc"], color="C0", label="fine class correct")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8.5)
    if overall is not None and math.isfinite(overall):
        ax.axvline(overall, color="crimson", linestyle="--", linewidth=1.2,
                   label=f"overall: {100 * overall:.1f}%")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(t) - 0.4)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return fig


# --- multi-seed studies ----------------------------------------------------------------------

def _n_seeds_text(long: pd.DataFrame) -> str:
    """'3' when every setting has 3 seeds, '2-3' when they differ (a run missing)."""
    if not len(long):
        return "0"
    per = long.groupby("setting", sort=False)["seed"].nunique()
    lo, hi = int(per.min()), int(per.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def seed_curves(long: pd.DataFrame,
                metrics: typing.Sequence[str] = ("val_loss", "val_acc", "train_loss", "train_acc"),
                title: str | None = None) -> Figure:
    """Training curves of a multi-seed study, one panel per metric: per setting the mean over
    seeds as a line and the band from the lowest to the highest seed (min-max).

    ``long``: columns setting, seed, epoch, metric, value, as ``stats.long_table`` returns.
    A seed that diverged has no rows after its divergence, so later epochs are the mean of
    the seeds still running.
    """
    import seaborn as sns

    long = long.copy()
    long["value"] = pd.to_numeric(long["value"], errors="coerce").astype(float)
    long = long[np.isfinite(long["value"].to_numpy())]
    settings = list(dict.fromkeys(long["setting"]))
    colors = _palette(len(settings))
    palette = dict(zip(settings, colors))
    ncols = 2 if len(metrics) > 1 else 1
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig, axes = _new(nrows, ncols, size=(11 if ncols == 2 else 7, 3.6 * nrows))
    xmax = int(long["epoch"].max()) if len(long) else 1
    for ax, m in zip(axes.flat, metrics):
        d = long[long["metric"] == m]
        if len(d):
            sns.lineplot(data=d, x="epoch", y="value", hue="setting", hue_order=settings,
                         palette=palette, estimator="mean", errorbar=("pi", 100),
                         err_kws={"alpha": 0.2, "linewidth": 0}, linewidth=1.8, ax=ax,
                         legend=False)
    _finish_panels(axes, metrics, xmax)
    handles = [Line2D([], [], color=palette[s], linewidth=1.8) for s in settings]
    if handles:
        fig.legend(handles, [str(s) for s in settings], loc="outside lower center",
                   ncols=min(len(settings), 4), frameon=False)
    what = f"mean over {_n_seeds_text(long)} seeds, band: min-max"
    fig.suptitle(f"{title} ({what})" if title else what)
    return fig


def forest(rows: pd.DataFrame, title: str | None = None,
           xlabel: str = "difference in validation accuracy (points)") -> Figure:
    """Forest plot of differences to the baseline: one row per setting, the mean difference as
    a point with its 95% interval as a horizontal bar, a vertical line at 0.

    ``rows``: columns setting, mean, lo, hi (accuracy fractions; drawn in percentage points),
    optional ``published`` (the report's difference, NaN where none), drawn as an open
    diamond labelled "report". A setting whose interval excludes 0 is drawn in a strong
    colour, one whose interval includes 0 in grey; a row with lo/hi NaN (one seed) draws its
    point only. Artists carry a gid: "interval", "mean", "published".
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    r = rows.reset_index(drop=True)
    n = len(r)
    fig, axes = _new(1, 1, size=(8, 0.45 * max(n, 1) + 1.6))
    ax = axes[0, 0]
    strong, weak = "C3", "0.55"

    kinds = set()
    ax.axvline(0, color="black", linewidth=1, zorder=1)
    for i, row in r.iterrows():
        mean, lo, hi = (finite(row[k], math.nan) for k in ("mean", "lo", "hi"))
        has_ci = not (math.isnan(lo) or math.isnan(hi))
        detected = has_ci and (lo > 0 or hi < 0)
        color = strong if detected else weak
        if has_ci:
            ax.plot([100 * lo, 100 * hi], [i, i], color=color, linewidth=2.4,
                    solid_capstyle="butt", gid="interval", zorder=2)
            kinds.add("detected" if detected else "includes 0")
        elif not math.isnan(mean):
            kinds.add("one seed")
        if not math.isnan(mean):
            ax.plot([100 * mean], [i], marker="o", markersize=7, color=color,
                    linestyle="none", gid="mean", zorder=3)
    if "published" in r:
        pub = np.array([finite(v, math.nan) for v in r["published"]])
        ok = np.isfinite(pub)
        if ok.any():
            ax.plot(100 * pub[ok], np.arange(n)[ok], marker="D", markersize=8,
                    markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.4,
                    linestyle="none", label="report", gid="published", zorder=4)
            kinds.add("report")
    ax.set_yticks(np.arange(n))
    ax.set_yticklabels([str(s) for s in r["setting"]])
    ax.set_ylim(n - 0.5, -0.5)   # first row on top
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+g}" if v else "0"))
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    legend = {
        "detected": Line2D([], [], color=strong, marker="o", linewidth=2.4,
                           label="95% interval excludes 0"),
        "includes 0": Line2D([], [], color=weak, marker="o", linewidth=2.4,
                             label="95% interval includes 0"),
        "one seed": Line2D([], [], color=weak, marker="o", linestyle="none",
                           label="one seed: no interval"),
        "report": Line2D([], [], color="black", marker="D", markerfacecolor="none",
                         linestyle="none", label="report"),
    }
    handles = [h for k, h in legend.items() if k in kinds]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8.5,
                  frameon=False)
    if title:
        ax.set_title(title)
    return fig
