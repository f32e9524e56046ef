"""Statistics for multi-seed studies: intervals over seeds, paired differences, test accuracy.

Every setting of a study runs once per seed, and all settings of a study share the same seeds.
That decides the statistics here:

* ``summary``: one number per seed (e.g. final validation accuracy) is a small sample from
  the distribution of what the setting does over random initialisations and data orders. With
  3-5 seeds the normal approximation is too narrow, so the 95% interval is Student's t:
  mean +- t_{0.975, n-1} * sd / sqrt(n), sample sd (ddof=1). One seed gives no interval.
* ``paired_difference``: seed s of setting A and seed s of setting B share the seed effect
  (initial weights, batch order, augmentations drawn), which is often larger than the
  difference between the settings. Taking the per-seed difference d_s = a_s - b_s removes it,
  and the t-interval of d is much narrower than comparing the two unpaired intervals: a
  difference can be clear ("detected": its interval excludes 0) although the two settings'
  own intervals overlap.
* ``wilson``: a test accuracy on 10,000 images is a binomial proportion k / n; its sampling
  uncertainty (about +-1 point near 60%) is the Wilson score interval, which stays inside
  [0, 1] and behaves at k = 0 and k = n, unlike the plain normal (Wald) interval.

A diverged run has no number: NaN or None values are dropped (and counted in ``n_missing``),
never averaged in. Distributions come from ``scipy.stats``; nothing is tabulated by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as _st

from .schema import METRICS

LONG_COLUMNS = ["setting", "seed", "epoch", "metric", "value"]


def finite(v, default=None):
    """``v`` as a float if it is a finite number, else ``default``: None, NaN, inf and
    anything that is not a number (text, a list) are no number. The one place the library
    cleans a value that may be missing (a diverged run, a JSON null) before using it;
    ``finite(v, math.nan)`` for arithmetic and plotting, ``is_finite(v)`` for a test."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return default
    return x if math.isfinite(x) else default


def is_finite(v) -> bool:
    """Whether ``v`` is a finite number (``finite(v)`` is not None)."""
    return finite(v) is not None


def _floats(values) -> np.ndarray:
    """``values`` as a 1-d float array; None and anything not a finite number become NaN."""
    if values is None or np.isscalar(values):
        values = [values]
    return np.asarray([finite(v, math.nan) for v in np.asarray(values, dtype=object).ravel()],
                      dtype=float)


def _t_summary(x: np.ndarray, n_missing: int) -> dict:
    """mean, sd, n, ci95 of the finite array ``x`` (already cleaned)."""
    n = int(x.size)
    res: dict = {"mean": float(np.mean(x)) if n else math.nan, "sd": None, "n": n,
                 "ci95": None}
    if n >= 2:
        sd = float(np.std(x, ddof=1))
        half = float(_st.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        res["sd"] = sd
        res["ci95"] = [res["mean"] - half, res["mean"] + half]
    if n_missing > 0:
        res["n_missing"] = int(n_missing)
    return res


def summary(values) -> dict:
    """Mean over seeds with its 95% t-interval.

    Returns ``{"mean", "sd", "n", "ci95"}``: sample sd (ddof=1); ``ci95`` = [lo, hi] =
    mean +- t_{0.975, n-1} * sd / sqrt(n). With n == 1, ``sd`` and ``ci95`` are None; with
    n == 0 (every run missing) ``mean`` is NaN. NaN, inf and None values (a diverged run) are
    dropped first and counted in ``n_missing`` (the key is present only if > 0).
    """
    x = _floats(values)
    ok = np.isfinite(x)
    return _t_summary(x[ok], int((~ok).sum()))


def paired_difference(a, b) -> dict:
    """The difference a - b over seeds, paired: ``a`` and ``b`` are aligned by seed (same
    order), the per-seed differences d = a - b get a t-interval (as ``summary``).

    Pairs where either value is missing (NaN/None/inf) are dropped (counted in
    ``n_missing``). Returns ``{"mean", "sd", "n", "ci95", "detected"}``; ``detected`` is True
    when ``ci95`` excludes 0, False when it does not or there is no interval (n < 2).
    """
    xa, xb = _floats(a), _floats(b)
    if xa.shape != xb.shape:
        raise ValueError(f"paired_difference: a and b must be aligned by seed, got "
                         f"{xa.size} and {xb.size} values")
    ok = np.isfinite(xa) & np.isfinite(xb)
    res = _t_summary(xa[ok] - xb[ok], int((~ok).sum()))
    ci = res["ci95"]
    res["detected"] = bool(ci is not None and (ci[0] > 0 or ci[1] < 0))
    return res


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for the proportion k / n (e.g. k of n = 10,000 test images
    correct) at confidence ``level``:

        centre = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

    with p = k / n and z = Phi^-1(1 - (1 - level) / 2) from ``scipy.stats.norm``. The result
    lies in [0, 1]; k = 0 gives lo = 0 and k = n gives hi = 1 exactly.
    """
    k, n = int(k), int(n)
    if n <= 0:
        raise ValueError(f"wilson: n must be positive, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k must be in [0, n], got k={k}, n={n}")
    if not 0 < level < 1:
        raise ValueError(f"wilson: level must be in (0, 1), got {level}")
    z = float(_st.norm.ppf(1 - (1 - level) / 2))
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def _history(run) -> pd.DataFrame:
    h = run.history if hasattr(run, "history") else run
    return h if isinstance(h, pd.DataFrame) else pd.DataFrame(h)


def last_k_mean(history, metric: str, k: int) -> float:
    """Mean of ``metric`` over the last ``k`` epochs of a history (a DataFrame with an
    ``epoch`` column, or a Run) that hold a finite value, fewer if the run has fewer; NaN if
    none does (or the column is absent). Epochs that were not scored (``eval_every`` > 1)
    hold NaN and are skipped, so k counts scored epochs.

    Note: a run that diverged in its last epoch has NaN there, so this averages the epochs
    before; to count a diverged run as missing, check ``evaluation.diverged_at`` first.
    """
    k = int(k)
    if k < 1:
        raise ValueError(f"last_k_mean: k must be >= 1, got {k}")
    h = _history(history)
    if metric not in h or not len(h):
        return math.nan
    if "epoch" in h:
        h = h.sort_values("epoch", kind="stable")
    x = pd.to_numeric(h[metric], errors="coerce").to_numpy(dtype=float)
    x = x[np.isfinite(x)][-k:]
    return float(x.mean()) if x.size else math.nan


def long_table(runs: dict) -> pd.DataFrame:
    """One row per (setting, seed, epoch, metric) with a finite value.

    ``runs``: {(setting_label, seed): Run-like with a ``.history`` DataFrame (columns epoch,
    lr, train_loss, train_acc, val_loss, val_acc, seconds)} (a bare history DataFrame is
    accepted too). Returns columns setting, seed, epoch, metric, value, for the metrics
    train_loss, train_acc, val_loss, val_acc; NaN and inf values (a diverged epoch) are
    dropped. Rows come in the order of ``runs``, then metric, then epoch.
    """
    parts = []
    for key, run in runs.items():
        try:
            setting, seed = key
        except (TypeError, ValueError):
            raise ValueError(f"long_table: keys must be (setting, seed) pairs, got {key!r}")
        h = _history(run)
        if "epoch" not in h or not len(h):
            continue
        cols = [m for m in METRICS if m in h]
        if not cols:
            continue
        part = h[["epoch", *cols]].melt(id_vars="epoch", value_vars=cols, var_name="metric",
                                         value_name="value")
        part["value"] = pd.to_numeric(part["value"], errors="coerce").astype(float)
        part = part[np.isfinite(part["value"].to_numpy())]
        part.insert(0, "setting", setting)
        part.insert(1, "seed", seed)
        parts.append(part)
    if not parts:
        return pd.DataFrame({"setting": pd.Series(dtype=object), "seed": pd.Series(dtype=int),
                             "epoch": pd.Series(dtype=int), "metric": pd.Series(dtype=object),
                             "value": pd.Series(dtype=float)})
    out = pd.concat(parts, ignore_index=True)[LONG_COLUMNS]
    out["epoch"] = out["epoch"].astype(int)
    return out


# --- power of a paired comparison -------------------------------------------------------------
#
# A comparison that detects nothing has said little until it says what it could have
# detected. For the paired t-test on n per-seed differences with sd s, the test statistic
# under a true difference delta follows a noncentral t with n - 1 degrees of freedom and
# noncentrality delta * sqrt(n) / s; its power is the chance that |T| exceeds the two-sided
# critical value. Two numbers follow from it: the minimum detectable difference at this n and
# s (the delta with 80% power), and the seeds a rerun would need to detect a difference of the
# size observed. Both take the measured sd as the truth, which at 2-3 seeds is itself rough:
# they are a design guide, not a guarantee.

POWER = 0.8       # the conventional design power
ALPHA = 0.05      # two-sided, as the 95% intervals


def _finite_pos(v) -> bool:
    return finite(v, 0.0) > 0


def power(delta, sd, n: int, alpha: float = ALPHA) -> float | None:
    """Power of the two-sided paired t-test at level ``alpha`` to detect a true mean
    difference ``delta`` with ``n`` pairs whose differences have sd ``sd``. None when it is
    undefined (n < 2, no sd, or sd 0)."""
    if n < 2 or not _finite_pos(sd) or not is_finite(delta):
        return None
    df = n - 1
    crit = float(_st.t.ppf(1 - alpha / 2, df))
    nc = abs(float(delta)) * math.sqrt(n) / float(sd)
    # the far tail underflows to NaN in scipy's nct for a large noncentrality: it is 0 there
    upper, lower = (float(np.nan_to_num(v, nan=0.0)) for v in
                    (_st.nct.sf(crit, df, nc), _st.nct.cdf(-crit, df, nc)))
    return min(1.0, max(0.0, upper + lower))


def min_detectable(sd, n: int, target: float = POWER, alpha: float = ALPHA) -> float | None:
    """The smallest true difference the paired t-test detects with probability ``target``
    at ``n`` pairs and sd ``sd`` (same units as ``sd``). None when undefined."""
    if n < 2 or not _finite_pos(sd):
        return None
    sd = float(sd)
    lo, hi = 0.0, sd
    while power(hi, sd, n, alpha) < target:
        hi *= 2
    from scipy.optimize import brentq
    return float(brentq(lambda d: power(d, sd, n, alpha) - target, lo, hi, xtol=1e-12 * sd))


SEEDS_LIMIT = 10_000   # seeds_needed counts no further


def seeds_needed(delta, sd, target: float = POWER, alpha: float = ALPHA,
                 limit: int = SEEDS_LIMIT) -> int | None:
    """The fewest pairs (seeds) with which the paired t-test detects a true difference
    ``delta`` with probability ``target``, taking ``sd`` as the sd of the differences. None
    when undefined (no sd, delta 0) or beyond ``limit``."""
    if not _finite_pos(sd) or not is_finite(delta) or delta == 0:
        return None
    n = 2
    while n <= limit:
        if power(delta, sd, n, alpha) >= target:
            return n
        n = n + 1 if n < 200 else int(n * 1.05) + 1
    return None


def power_of(d: dict, target: float = POWER, n: int | None = None) -> dict:
    """What a paired difference (``paired_difference``'s dict) could detect: ``mdd`` (the
    minimum detectable difference at its n and sd, 80% power, two-sided 5%), ``power`` (of
    its n for a true difference the size observed) and ``seeds_needed`` (for that size).
    ``n``: judge another seed count at the same sd (a plan's, from a pilot's runs)."""
    sd, mean = d.get("sd"), d.get("mean")
    n = d.get("n", 0) if n is None else n
    return {"mdd": min_detectable(sd, n, target), "power": power(mean, sd, n),
            "seeds_needed": seeds_needed(mean, sd, target), "target_power": target,
            "alpha": ALPHA}
