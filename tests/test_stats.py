"""hpstudy.stats against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hpstudy import stats as S
from hpstudy import stats

T975_3 = 3.182446     # t_{0.975, 3}
Z975 = 1.959963985    # Phi^-1(0.975)


# --- finite: the one cleaning of a value that may be missing --------------------------------

@pytest.mark.parametrize("value, expected", [
    (0.25, 0.25), (3, 3.0), ("0.5", 0.5), (np.float32(0.5), 0.5), (np.int64(2), 2.0),
    (None, None), (math.nan, None), (math.inf, None), (-math.inf, None), ("n/a", None),
    ([1.0, 2.0], None), ({}, None),
])
def test_finite_is_a_float_or_nothing(value, expected):
    got = stats.finite(value)
    assert got == expected and (got is None or type(got) is float)
    assert stats.is_finite(value) is (expected is not None)


def test_finite_default_stands_for_no_number():
    assert math.isnan(stats.finite(None, math.nan)) and math.isnan(stats.finite(math.inf, math.nan))
    assert stats.finite(0.0, math.nan) == 0.0       # zero is a number
    assert stats.finite("x", -1.0) == -1.0


def test_no_module_keeps_a_private_twin_of_finite():
    """readings, plots and index clean values with stats.finite, not with their own."""
    from pathlib import Path
    lib = Path(stats.__file__).parent
    for name in ("readings.py", "plots.py", "index.py", "stats.py"):
        text = (lib / name).read_text()
        for twin in ("def _ok(", "def _num(", "def num(", "def _float(", "readings._ok"):
            assert twin not in text, f"{name}: {twin}"


# --- summary -----------------------------------------------------------------------------

def test_summary_t_interval():
    s = S.summary([0.20, 0.22, 0.24])
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(0.22, abs=1e-12)
    assert s["sd"] == pytest.approx(0.02, abs=1e-12)
    # by hand: t_{0.975,2} = 4.302653 (tables) x 0.02 / sqrt(3) = 0.049683
    assert s["ci95"] == pytest.approx([0.22 - 0.049683, 0.22 + 0.049683], abs=1e-6)
    assert "n_missing" not in s


def test_summary_one_value():
    s = S.summary([0.5])
    assert s == {"mean": 0.5, "sd": None, "n": 1, "ci95": None}


def test_summary_drops_missing():
    s = S.summary([0.20, float("nan"), 0.22, None, 0.24])
    assert s["n"] == 3 and s["n_missing"] == 2
    assert s["mean"] == pytest.approx(0.22)
    assert s["ci95"][1] - s["mean"] == pytest.approx(0.049683, abs=1e-6)
    s = S.summary(pd.Series([0.3, np.nan, np.inf]))
    assert s == {"mean": 0.3, "sd": None, "n": 1, "ci95": None, "n_missing": 2}
    s = S.summary([None, float("nan")])
    assert s["n"] == 0 and math.isnan(s["mean"]) and s["ci95"] is None and s["n_missing"] == 2


def test_summary_types_are_plain():
    s = S.summary(np.array([1.0, 2.0, 3.0]))
    assert type(s["mean"]) is float and type(s["sd"]) is float and type(s["n"]) is int
    assert all(type(v) is float for v in s["ci95"])


# --- paired differences --------------------------------------------------------------------

A = [0.60, 0.70, 0.65, 0.55]
B = [0.590, 0.688, 0.639, 0.541]      # a - b = 0.010, 0.012, 0.011, 0.009


def test_paired_detected_although_unpaired_intervals_overlap():
    sa, sb = S.summary(A), S.summary(B)
    assert sa["ci95"][0] < sb["ci95"][1] and sb["ci95"][0] < sa["ci95"][1]   # overlap
    d = S.paired_difference(A, B)
    # by hand: mean 0.0105, squared deviations sum 5e-6, sd = sqrt(5e-6 / 3)
    sd = math.sqrt(5e-6 / 3)
    half = T975_3 * sd / 2
    assert d["n"] == 4
    assert d["mean"] == pytest.approx(0.0105, abs=1e-12)
    assert d["sd"] == pytest.approx(sd, rel=1e-9)
    assert d["ci95"] == pytest.approx([0.0105 - half, 0.0105 + half], abs=1e-7)
    assert d["detected"] is True
    # the other way round: negative, still detected
    assert S.paired_difference(B, A)["detected"] is True


def test_paired_not_detected():
    b = [0.6, 0.6, 0.6, 0.6]
    a = [0.61, 0.59, 0.62, 0.585]      # d = 0.01, -0.01, 0.02, -0.015
    d = S.paired_difference(a, b)
    assert d["mean"] == pytest.approx(0.00125)
    assert d["ci95"][0] < 0 < d["ci95"][1]
    assert d["detected"] is False


def test_paired_drops_pairs_with_missing_and_n1():
    d = S.paired_difference([0.6, float("nan"), 0.7], [0.5, 0.5, None])
    assert d["n"] == 1 and d["n_missing"] == 2
    assert d["mean"] == pytest.approx(0.1)
    assert d["ci95"] is None and d["sd"] is None and d["detected"] is False
    with pytest.raises(ValueError):
        S.paired_difference([0.1, 0.2], [0.1])


# --- Wilson --------------------------------------------------------------------------------

def _wilson_by_hand(k, n, z=Z975):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_6000_of_10000():
    lo, hi = S.wilson(6000, 10000)
    assert (lo, hi) == pytest.approx(_wilson_by_hand(6000, 10000), abs=1e-6)
    assert (lo, hi) == pytest.approx((0.590362, 0.609562), abs=1e-6)
    assert (lo, hi) == pytest.approx((0.590364, 0.609553), abs=1e-5)   # the approx.


def test_wilson_small_n_and_level():
    assert S.wilson(3, 10) == pytest.approx(_wilson_by_hand(3, 10), abs=1e-6)
    assert S.wilson(3, 10) == pytest.approx((0.107791, 0.603222), abs=1e-6)
    z99 = 2.575829304
    assert S.wilson(3, 10, level=0.99) == pytest.approx(_wilson_by_hand(3, 10, z99), abs=1e-6)


def test_wilson_edges():
    z2 = Z975 ** 2
    lo, hi = S.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2), abs=1e-6)     # 0.277533
    assert hi == pytest.approx(0.277533, abs=1e-6)
    lo, hi = S.wilson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + z2), abs=1e-6)
    lo, hi = S.wilson(0, 10000)
    assert lo == 0.0 and 0 < hi < 0.0004
    for k, n in ((-1, 10), (11, 10), (0, 0)):
        with pytest.raises(ValueError):
            S.wilson(k, n)


# --- histories -----------------------------------------------------------------------------

def _history(val_acc, val_loss=None):
    n = len(val_acc)
    e = np.arange(1, n + 1)
    return pd.DataFrame({"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "train_acc": 0.1 * e,
                         "val_loss": val_loss if val_loss is not None else 3.0 / e,
                         "val_acc": val_acc, "seconds": 1.0})


class FakeRun:
    def __init__(self, history):
        self.history = history


def test_last_k_mean():
    h = _history([0.1, 0.2, 0.3, 0.4, 0.5])
    assert S.last_k_mean(h, "val_acc", 3) == pytest.approx(0.4)
    assert S.last_k_mean(h, "val_acc", 1) == pytest.approx(0.5)
    assert S.last_k_mean(h, "val_acc", 10) == pytest.approx(0.3)      # fewer epochs than k
    assert S.last_k_mean(FakeRun(h), "val_acc", 2) == pytest.approx(0.45)
    shuffled = h.iloc[[4, 0, 3, 1, 2]]
    assert S.last_k_mean(shuffled, "val_acc", 2) == pytest.approx(0.45)  # by epoch, not row
    # k counts epochs that hold a number: with eval_every = 2 only every other epoch is
    # scored, and the last 2 scored epochs are 2 and 4 (a diverged tail is skipped alike)
    nan = float("nan")
    every2 = _history([nan, 0.2, nan, 0.4, nan, 0.6])
    assert S.last_k_mean(every2, "val_acc", 2) == pytest.approx(0.5)
    assert S.last_k_mean(every2, "val_acc", 3) == pytest.approx(0.4)
    tail = _history([0.1, 0.2, 0.3, nan, nan])
    assert S.last_k_mean(tail, "val_acc", 2) == pytest.approx(0.25)
    assert math.isnan(S.last_k_mean(_history([nan, nan]), "val_acc", 2))
    assert math.isnan(S.last_k_mean(h.iloc[:0], "val_acc", 3))
    assert math.isnan(S.last_k_mean(h, "no_such_metric", 3))


def test_long_table():
    runs = {("base", 1): FakeRun(_history([0.1, 0.2])),
            ("base", 2): FakeRun(_history([0.15, 0.25])),
            ("lr=0.1", 1): FakeRun(_history([0.1, float("nan")], val_loss=[2.0, np.inf]))}
    t = S.long_table(runs)
    assert list(t.columns) == ["setting", "seed", "epoch", "metric", "value"]
    assert set(t["metric"]) == {"train_loss", "train_acc", "val_loss", "val_acc"}
    assert np.isfinite(t["value"]).all()
    # 2 runs x 2 epochs x 4 metrics + 1 run with 2 of its 8 values non-finite
    assert len(t) == 16 + 6
    one = t[(t.setting == "base") & (t.seed == 2) & (t.epoch == 2) & (t.metric == "val_acc")]
    assert one["value"].tolist() == [pytest.approx(0.25)]
    bad = t[(t.setting == "lr=0.1") & (t.epoch == 2)]
    assert sorted(bad["metric"]) == ["train_acc", "train_loss"]
    assert t["epoch"].dtype.kind == "i"
    assert "lr" not in set(t["metric"]) and "seconds" not in set(t["metric"])


def test_long_table_empty():
    t = S.long_table({})
    assert list(t.columns) == ["setting", "seed", "epoch", "metric", "value"] and len(t) == 0
    t = S.long_table({("base", 1): FakeRun(_history([])) })
    assert len(t) == 0


# --- power: a worked example -----------------------------------------------------------------
# The paired t-test's power at effect size d = delta / sd with n pairs, two-sided 5%: the
# classic design tables (Cohen 1988; G*Power's "difference from constant") give n = 10 for
# d = 1 at 80% power, with actual power 0.8031, and n = 34 for d = 0.5 (power 0.8078).

def test_power_matches_the_published_design_tables():
    assert stats.power(1.0, 1.0, 10) == pytest.approx(0.8031, abs=1e-4)
    assert stats.power(0.5, 1.0, 34) == pytest.approx(0.8078, abs=1e-4)
    assert stats.power(-0.5, 1.0, 34) == pytest.approx(0.8078, abs=1e-4)   # two-sided
    assert stats.seeds_needed(1.0, 1.0) == 10
    assert stats.seeds_needed(0.5, 1.0) == 34
    # units do not matter: 3 points of accuracy at sd 6 points is d = 0.5
    assert stats.seeds_needed(0.03, 0.06) == 34


def test_minimum_detectable_difference_is_where_power_reaches_80_percent():
    # by hand, the textbook shortcut (t_{0.975,9} + t_{0.80,9}) * sd / sqrt(10)
    # = (2.2622 + 0.8834) / 3.1623 = 0.9947 sd, which slightly understates the exact
    # noncentral-t value; and d = 1 has power 0.8031 > 0.8 at n = 10, so the exact MDD < 1
    mdd = stats.min_detectable(1.0, 10)
    assert 0.9947 < mdd < 1.0
    assert stats.power(mdd, 1.0, 10) == pytest.approx(0.8, abs=1e-9)
    assert stats.min_detectable(0.02, 10) == pytest.approx(0.02 * mdd)
    # more seeds, smaller detectable difference; n = 1 or sd 0 or no sd: undefined
    assert stats.min_detectable(1.0, 5) > stats.min_detectable(1.0, 10)
    assert stats.min_detectable(1.0, 1) is None and stats.min_detectable(0.0, 5) is None
    assert stats.min_detectable(None, 5) is None


def test_power_of_a_paired_difference_goes_into_the_results():
    d = stats.paired_difference([0.30, 0.32, 0.31, 0.35, 0.29], [0.30, 0.30, 0.30, 0.30, 0.30])
    p = stats.power_of(d)
    assert p["mdd"] == pytest.approx(stats.min_detectable(d["sd"], 5))
    assert p["seeds_needed"] == stats.seeds_needed(d["mean"], d["sd"])
    assert stats.power(d["mean"], d["sd"], p["seeds_needed"]) >= 0.8
    assert stats.power(d["mean"], d["sd"], p["seeds_needed"] - 1) < 0.8
    assert stats.seeds_needed(0.0, 0.01) is None
