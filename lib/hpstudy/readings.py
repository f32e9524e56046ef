"""What a study's runs say: per-setting statistics over seeds, and the sentences of a reading.

Every sentence is computed from the numbers it sits beside. A setting is called better or
worse than another only when the paired per-seed difference has a 95% interval that excludes
zero; otherwise the reading says that no difference was detected at n seeds and gives the
interval. With one seed there is no interval, and the reading says so.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import published, stats
from .stats import finite, is_finite
from .schema import METRICS
from .studies import Params, Setting

PT = 100  # fractions -> percentage points


# --- numbers ---------------------------------------------------------------------------------

def run_summary(label: str, seed: int, run) -> dict:
    """What the index needs of one run: setting, seed, status, final and best-epoch metrics."""
    final, best = run.final, run.best
    return {
        "label": label, "seed": seed, "hash": run.hash, "dir": str(run.dir),
        "status": run.status, "epochs_done": int(len(run.history)), "epochs": run.config.epochs,
        "final": {k: final.get(k) for k in METRICS},
        "best": {"epoch": best.get("epoch"), "val_acc": best.get("val_acc")},
        "seconds": float(run.history["seconds"].sum()) if len(run.history) else 0.0,
        "config": run.config.to_dict(),
    }


def final_value(run, metric: str) -> float:
    """A finished run's final-epoch value; NaN for a diverged or unfinished run."""
    if run.status != "done" or not len(run.history):
        return float("nan")
    return finite(run.final.get(metric), math.nan)


def setting_summary(study: str, setting: Setting, seeds: list[int], runs: dict,
                    last_k: int, baseline: dict | None = None) -> dict:
    """Statistics of one setting over its seeds, and its paired difference to ``baseline``
    (another setting's summary; None for the baseline itself)."""
    rs = [runs[(setting.label, s)] for s in seeds]
    per_seed = {m: [final_value(r, m) for r in rs] for m in ("val_acc", "val_loss", "train_acc",
                                                             "train_loss")}
    k = {m: [stats.last_k_mean(r.history, m, last_k) if r.status == "done" else float("nan")
             for r in rs] for m in ("val_acc", "val_loss")}
    out = {
        "label": setting.label, "value": setting.value, "seeds": list(seeds),
        "runs": [run_summary(setting.label, s, r) for s, r in zip(seeds, rs)],
        "status": [r.status for r in rs],
        "per_seed": per_seed,
        "val_acc": stats.summary(per_seed["val_acc"]),
        "val_loss": stats.summary(per_seed["val_loss"]),
        "train_acc": stats.summary(per_seed["train_acc"]),
        "train_loss": stats.summary(per_seed["train_loss"]),
        "last_k": {"k": last_k, "val_acc": stats.summary(k["val_acc"]),
                   "val_loss": stats.summary(k["val_loss"])},
        "published": published.numbers(study, setting.value, setting.config),
    }
    if baseline is not None:
        d = stats.paired_difference(per_seed["val_acc"], baseline["per_seed"]["val_acc"])
        out["difference"] = {**d, **stats.power_of(d)}
        out["difference_loss"] = stats.paired_difference(per_seed["val_loss"],
                                                         baseline["per_seed"]["val_loss"])
    return out


def summarize(p: Params, runs: dict) -> dict[str, dict]:
    """label -> setting summary, the baseline's first."""
    last_k = int(p.get("last_k") or 3)
    base = p.baseline()
    out = {base.label: setting_summary(p.study.name, base, p.seeds, runs, last_k)}
    for s in p.settings():
        if s.label != base.label:
            out[s.label] = setting_summary(p.study.name, s, p.seeds, runs, last_k, out[base.label])
    return {s.label: out[s.label] for s in p.settings()}


def table(summary: dict, baseline: str | None = None) -> pd.DataFrame:
    """One row per setting: final-epoch validation accuracy and loss as mean ± sd (n) with
    95% intervals, the last-k mean, the paired difference to the baseline, and the report's
    number where the runs follow its protocol."""
    rows = []
    for label, s in summary.items():
        va, vl, lk, d = s["val_acc"], s["val_loss"], s["last_k"], s.get("difference")
        pub = s.get("published") or {}
        rows.append({
            "setting": label + (" (baseline)" if label == baseline else ""),
            "runs": f"{va['n']}/{len(s['seeds'])} done" if va["n"] < len(s["seeds"]) else
                    f"{va['n']} seeds",
            "val acc %": fmt_mean_sd(va), "val acc 95% CI": fmt_ci(va.get("ci95")),
            f"last {lk['k']} val acc %": fmt_mean_sd(lk["val_acc"]),
            "val loss": fmt_mean_sd(vl, pct=False),
            "Δ val acc (pt)": "" if d is None or not is_finite(d["mean"]) else
                              f"{PT * d['mean']:+.2f}",
            "Δ 95% CI": "" if d is None else fmt_ci(d.get("ci95"), signed=True),
            "report val acc %": f"{PT * pub['val_acc']:.2f}" if "val_acc" in pub else "",
        })
    return pd.DataFrame(rows).set_index("setting")


def fmt_mean_sd(s: dict, pct: bool = True) -> str:
    """``23.41 ± 0.52 (n=3)``; the sd is left out for one value."""
    if not s or not is_finite(s.get("mean")):
        return "n/a"
    f = PT if pct else 1
    digits = 2 if pct else 4
    sd = f" ± {f * s['sd']:.{digits}f}" if is_finite(s.get("sd")) else ""
    return f"{f * s['mean']:.{digits}f}{sd} (n={s['n']})"


def fmt_ci(ci, signed: bool = False, pct: bool = True) -> str:
    if not ci or not all(is_finite(v) for v in ci):
        return "n/a (n=1)" if ci is None else "n/a"
    f = PT if pct else 1
    sign = "+" if signed else ""
    return f"[{f * ci[0]:{sign}.2f}, {f * ci[1]:{sign}.2f}]"


def forest_rows(summary: dict) -> pd.DataFrame:
    """The differences to the baseline and their intervals (for ``plots.forest``), with the
    report's difference beside them where both its numbers exist."""
    rows = []
    base = next((s for s in summary.values() if "difference" not in s), None)
    for label, s in summary.items():
        d = s.get("difference")
        if d is None:
            continue
        ci = d.get("ci95") or [float("nan")] * 2
        pub = float("nan")
        if base and s.get("published") and base.get("published"):
            pub = s["published"]["val_acc"] - base["published"]["val_acc"]
        mean, lo, hi = (finite(v, math.nan) for v in (d["mean"], *ci))
        rows.append({"setting": label, "mean": mean, "lo": lo, "hi": hi, "published": pub})
    return pd.DataFrame(rows, columns=["setting", "mean", "lo", "hi", "published"])


# --- sentences -------------------------------------------------------------------------------

def _pts(v) -> str:
    return f"{PT * v:+.2f}"


def power_sentence(d: dict) -> str:
    """What a paired comparison could detect, from its n and measured sd: the minimum
    detectable difference (80% power, two-sided 5%) and, for one that detected nothing, the
    seeds a rerun would need to detect the difference observed."""
    mdd = d.get("mdd")
    if mdd is None:
        return ""
    sd = f"sd {PT * d['sd']:.2f} points"
    text = (f"With {d['n']} seeds at this spread ({sd}) the smallest difference detected "
            f"with 80% power is {PT * mdd:.2f} points")
    if d.get("detected"):
        return text + "."
    need = d.get("seeds_needed")
    if need is None:
        if d["mean"] == 0:
            return text + "; the observed difference is zero, so no seed count would detect it."
        return text + (f"; detecting one of the size observed ({PT * abs(d['mean']):.2f} points) "
                       f"would take more than {stats.SEEDS_LIMIT:,} seeds.")
    return text + (f"; detecting one of the size observed ({PT * abs(d['mean']):.2f} points) "
                   f"would take about {need} seeds.")


def comparison(label: str, base: str, d: dict | None, what: str = "validation accuracy") -> str:
    """What ``label`` against ``base`` shows (paired difference ``d``), said once: the
    verdict, the difference with its interval, and what the comparison could detect."""
    if d is None or not is_finite(d.get("mean")):
        return f"`{label}` cannot be compared with `{base}`: no pair of finished runs."
    n = d["n"]
    if d.get("ci95") is None:
        return (f"`{label}` vs `{base}`: {_pts(d['mean'])} points of {what} at a single "
                f"seed, which is no evidence of a difference (one seed gives no interval).")
    ci = fmt_ci(d["ci95"], signed=True)
    if d["detected"]:
        word = "above" if d["mean"] > 0 else "below"
        head = (f"`{label}` ends {word} `{base}`: {_pts(d['mean'])} points of {what} "
                f"(95% interval {ci}, {n} paired seeds).")
    else:
        head = (f"`{label}` vs `{base}`: no difference detected, {_pts(d['mean'])} points "
                f"(95% interval {ci}, {n} paired seeds).")
    more = power_sentence(d)
    return head + (" " + more if more else "")


def winner(summary: dict) -> dict:
    """The setting with the highest mean final validation accuracy, and whether it won
    clearly: its paired difference to every other setting excludes zero."""
    ranked = sorted(((s["val_acc"]["mean"], label) for label, s in summary.items()
                     if is_finite(s["val_acc"].get("mean"))), reverse=True)
    if not ranked:
        return {"label": None, "value": None, "clear": False, "runner_up": None, "difference": None}
    best = ranked[0][1]
    diffs = {label: stats.paired_difference(summary[best]["per_seed"]["val_acc"],
                                            summary[label]["per_seed"]["val_acc"])
             for _, label in ranked[1:]}
    runner_up = ranked[1][1] if len(ranked) > 1 else None
    clear = bool(diffs) and all(d["detected"] and d["mean"] > 0 for d in diffs.values())
    tie = runner_up is not None and ranked[0][0] == ranked[1][0]
    return {"label": best, "value": summary[best]["value"], "clear": clear, "tie": tie,
            "runner_up": runner_up, "difference": diffs.get(runner_up)}


def winner_sentence(w: dict, study_title: str, baseline: str | None = None) -> str:
    """Which setting has the highest mean and whether it won clearly. Where the winner or the
    runner-up is ``baseline``, the comparison sentences have given their difference already,
    so it is not repeated."""
    if w["label"] is None:
        return f"{study_title}: no setting finished, so there is no winner."
    if w["runner_up"] is None:
        return f"{study_title}: only `{w['label']}` finished."
    if w.get("tie"):
        return (f"{study_title}: `{w['label']}` and `{w['runner_up']}` tie on mean final "
                f"validation accuracy: no winner.")
    said = baseline is not None and baseline in (w["label"], w["runner_up"])
    d = w["difference"]
    numbers = "" if said else (f" ({_pts(d['mean'])} points, 95% interval "
                               f"{fmt_ci(d['ci95'], signed=True)}, {d['n']} seeds)")
    if w["clear"]:
        return (f"{study_title}: `{w['label']}` is best; its lead over every other setting "
                f"excludes zero, the runner-up `{w['runner_up']}` included{numbers}.")
    return (f"{study_title}: `{w['label']}` has the highest mean, but its lead over "
            f"`{w['runner_up']}` is not detected{numbers}: no clear winner.")


def lead(w: dict) -> str:
    """How a study's winner won, in a few words with its numbers."""
    if w.get("tie"):
        return f"tied with `{w['runner_up']}`"
    if w["runner_up"] is None:
        return "was the only finished setting"
    d = w["difference"]
    how = "clearly ahead of" if w["clear"] else "ahead, without a detected lead, of"
    return (f"{how} `{w['runner_up']}` by {PT * d['mean']:+.2f} points (95% interval "
            f"{fmt_ci(d['ci95'], signed=True)}, {d['n']} seeds)")


def held_fixed(field_label: str, upstream: dict | None, upstream_title: str) -> str:
    """Whether the value this study holds fixed won the earlier study of this same report.

    ``upstream``: that study's recorded ``winner`` (None if it did not run in this report)."""
    study_name = upstream_title.lower()
    if upstream is None:
        return (f"This study holds `{field_label}` fixed. The {study_name} study's results are "
                f"not part of this report, so whether it won there is not known here.")
    if upstream["label"] is None:
        return (f"This study holds `{field_label}` fixed; the {study_name} study of this report "
                f"has no finished setting to compare with.")
    if upstream["label"] == field_label and not upstream.get("tie"):
        return (f"This study holds `{field_label}` fixed; in the {study_name} study of this "
                f"report it had the highest mean, {lead(upstream)}.")
    return (f"This study holds `{field_label}` fixed, as the report did; in the {study_name} "
            f"study of this report `{upstream['label']}` had the highest mean, "
            f"{lead(upstream)}.")


def comparisons(summary: dict, baseline: str) -> str:
    return " ".join(comparison(label, baseline, s.get("difference"))
                    for label, s in summary.items() if label != baseline)


def status_notes(summary: dict) -> str:
    parts = []
    for label, s in summary.items():
        for r in s["runs"]:
            if r["status"] == "diverged":
                parts.append(f"`{label}` (seed {r['seed']}) diverged after {r['epochs_done']} "
                             f"epoch(s): its loss stopped being finite and training stopped; it "
                             f"counts as missing in the statistics.")
            elif r["status"] != "done":
                parts.append(f"`{label}` (seed {r['seed']}) is not finished "
                             f"(status {r['status']!r}).")
    return " ".join(parts)


def scale_note(cfg) -> str:
    """How far ``cfg`` is from the report's full-size protocol ('' if it is the full size)."""
    parts = []
    if cfg.width != published.PROTOCOL["width"]:
        parts.append(f"width {cfg.width:g} (the report: 1)")
    if cfg.n_train is not None:
        parts.append(f"{cfg.n_train:,} training images (the report: 40,000)")
    if cfg.n_val is not None:
        parts.append(f"{cfg.n_val:,} validation images (the report: 10,000)")
    if not parts:
        return ""
    return ("These runs are a scaled-down version of the report's protocol (" + ", ".join(parts)
            + f", {cfg.epochs} epochs): they exercise the method, and their numbers are not "
            "comparable with the report's, which are therefore not shown beside them.")


def study_reading(p: Params, summary: dict) -> str:
    """The common part of every study's reading: comparisons with the baseline, the winner,
    failed runs and the scale."""
    base = p.baseline().label
    n = len(p.seeds)
    parts = [f"Final-epoch validation accuracy over {n} seed{'s' if n != 1 else ''} "
             f"({', '.join(map(str, p.seeds))}), each setting compared with `{base}` seed by "
             f"seed.", comparisons(summary, base),
             winner_sentence(winner(summary), "Overall", base), status_notes(summary),
             scale_note(p.base)]
    return " ".join(x for x in parts if x)


# --- study-specific readings -----------------------------------------------------------------

def identical_rows(summary: dict) -> list[tuple[str, str, int]]:
    """(setting, setting, seed) whose final rows coincide to the last digit: in the report two
    learning rates share a row, a sign of numbers copied by hand."""
    out = []
    labels = list(summary)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            for j, seed in enumerate(summary[a]["seeds"]):
                ra = [summary[a]["per_seed"][m][j] for m in METRICS]
                rb = [summary[b]["per_seed"][m][j] for m in METRICS]
                if all(is_finite(x) for x in ra) and ra == rb:
                    out.append((a, b, seed))
    return out


def learning_rate_reading(summary: dict) -> str:
    same = identical_rows(summary)
    pub = published.NUMBERS
    a, b = pub[("learning_rate", 0.5)], pub[("learning_rate", 0.05)]
    report_same = a == b
    text = ("In the report, the final-epoch rows of learning rates 0.5 and 0.05 are identical "
            "to the last digit" if report_same else "In the report the rows differ")
    text += (f" ({PT * a['val_acc']:.2f}% validation accuracy for both): numbers copied by hand. "
             f"Its text nevertheless calls {published.TEXT_BEST_LR:g} better on validation, and "
             f"its later studies use {published.CARRIED['learning_rate']:g}: its own table "
             f"supports neither choice over the other. Here every row is read from its own "
             f"run's history, and ")
    text += ("no two settings end on the same row." if not same else
             "the rows of " + ", ".join(f"`{x}` and `{y}` (seed {s})" for x, y, s in same)
             + " coincide: check those runs.")
    return text


def best_vs_final(summary: dict) -> str:
    """How far each setting's final epoch is from its best epoch (validation accuracy)."""
    parts = []
    for label, s in summary.items():
        gaps = [r["best"]["val_acc"] - r["final"]["val_acc"] for r in s["runs"]
                if r["status"] == "done" and is_finite(r["best"].get("val_acc"))
                and is_finite(r["final"].get("val_acc"))]
        if gaps:
            parts.append(f"`{label}` ends {PT * float(np.mean(gaps)):.2f} points below its best "
                         f"epoch on average (largest gap {PT * max(gaps):.2f})")
    if not parts:
        return ""
    return ("Final against best epoch (validation accuracy): " + "; ".join(parts) + ". A final "
            "epoch far below the best one means the last epochs lost accuracy; the report "
            "compares final epochs, and so does this page.")


def generalization_gap(summary: dict) -> str:
    """Training minus validation accuracy at the final epoch, per setting (means over seeds)."""
    parts = []
    for label, s in summary.items():
        tr, va = s["train_acc"].get("mean"), s["val_acc"].get("mean")
        if is_finite(tr) and is_finite(va):
            parts.append(f"`{label}` {PT * tr:.2f}% training vs {PT * va:.2f}% validation "
                         f"({PT * (tr - va):+.2f} points)")
    if not parts:
        return ""
    return ("At the final epoch (means over seeds; training accuracy measured on augmented "
            "images during the epoch): " + "; ".join(parts) + ".")


def decay_budget(configs: dict) -> str:
    """How much weight decay these runs could apply against the report's runs: lambda times
    the learning rate summed over every step (``train.lr_sum``), from each setting's config
    (``configs``: label -> Config) and from the same config at the report's scale (40,000
    images, 300 epochs). Decay that small cannot show, whatever the interval says."""
    from .train import lr_sum

    parts = []
    ratios = []
    for label, cfg in configs.items():
        if cfg.weight_decay <= 0:
            continue
        ours = cfg.weight_decay * lr_sum(cfg)
        theirs = cfg.weight_decay * lr_sum(cfg.replace(n_train=None,
                                                       epochs=published.EPOCHS["weight_decay"]))
        ratios.append(theirs / ours)
        parts.append(f"`{label}` {ours:.4f} against {theirs:.3f} at the report's scale")
    if not parts:
        return ""
    return ("Weight decay shrinks every weight by (1 - lr x lambda) per step, so lambda times "
            "the learning rate summed over all steps says how much decay a run applies: "
            + "; ".join(parts) + f". These runs apply {min(ratios):.0f}x"
            + (f"-{max(ratios):.0f}x" if round(max(ratios)) != round(min(ratios)) else "")
            + " less decay than the report's; a difference the report saw after 300 epochs need "
            "not exist here, and an undetected one here says little about its claim.")


def mixup_bounds(alpha: float, draws: int = 200_000, seed: int = 0) -> dict:
    """What mixup with Beta(alpha, alpha) allows an epoch's training numbers to reach.

    A mixed target puts weight lambda and 1 - lambda on two classes, so the cross-entropy of
    any prediction is at least the target's entropy H(lambda), and the lambda-weighted
    accuracy is at most max(lambda, 1 - lambda). Averaged over an epoch's draws these bound
    the mean training loss from below and the training accuracy from above (for pairs of
    different classes; a pair of one class lowers the loss bound and raises the accuracy one,
    by about 1% on CIFAR-100 at most)."""
    lam = np.random.default_rng(seed).beta(alpha, alpha, draws)
    lam = np.clip(lam, 1e-12, 1 - 1e-12)
    ent = -(lam * np.log(lam) + (1 - lam) * np.log1p(-lam))
    return {"alpha": alpha, "loss_min": float(ent.mean()),
            "acc_max": float(np.maximum(lam, 1 - lam).mean()), "draws": draws}


def mixup_reading(summary: dict, alphas: list) -> str:
    parts = ["**Training accuracy under mixup** is the lambda-weighted agreement with both "
             "targets of a mixed image, averaged over the epoch; without mixup it is the usual "
             "accuracy. It is measured on mixed images, so compare settings on validation "
             "accuracy, measured on clean images."]
    pub = published.NUMBERS.get(("mixup", 0.2))
    for a in alphas:
        if a <= 0:
            continue
        b = mixup_bounds(float(a))
        s = next((s for s in summary.values() if s["value"] == a), None)
        line = (f"With alpha = {a:g}, an epoch's mean training loss cannot fall below "
                f"E[H(lambda)] = {b['loss_min']:.3f} nats and its training accuracy cannot "
                f"exceed E[max(lambda, 1 - lambda)] = {PT * b['acc_max']:.2f}% "
                f"({b['draws']:,} draws of Beta({a:g}, {a:g})).")
        if s is not None and is_finite(s["train_loss"].get("mean")):
            line += (f" Measured here: {s['train_loss']['mean']:.3f} and "
                     f"{PT * s['train_acc']['mean']:.2f}% (means over seeds).")
        if a == 0.2 and pub:
            reach = pub["train_loss"] < b["loss_min"] and pub["train_acc"] > b["acc_max"]
            same = pub["train_loss"] == published.NUMBERS[("weight_decay", 0.0005)]["train_loss"] \
                and pub["train_acc"] == published.NUMBERS[("weight_decay", 0.0005)]["train_acc"]
            line += (f" The report's mixup row (training loss {pub['train_loss']:.4f}, "
                     f"accuracy {PT * pub['train_acc']:.2f}%) is "
                     + ("below the loss bound and above the accuracy bound: unreachable under "
                        "mixup" if reach else "within the bounds")
                     + ("; it equals its weight-decay 5e-4 row to the last digit (copied, or "
                        "measured without mixup)." if same else "."))
        parts.append(line)
    parts.append("The mixup paper used alpha = 1 on CIFAR; alpha = 0.2 is the value it "
                 "recommends for ImageNet, which the report used here.")
    base = published.NUMBERS[("mixup", 0.0)]["val_acc"]
    mix = published.NUMBERS[("mixup", 0.2)]["val_acc"]
    parts.append(f"By the report's own validation numbers mixup lost ({PT * mix:.2f}% vs "
                 f"{PT * base:.2f}% without it), one run each.")
    return " ".join(parts)


def clip_accuracy(ci):
    """A t-interval of an accuracy, cut to [0, 1]: at 2-3 seeds it can reach past either end,
    where no accuracy lies."""
    if not ci:
        return ci
    return [max(0.0, ci[0]), min(1.0, ci[1])]


def test_reading(per_seed: list[dict], upstream: dict, recipe: dict) -> str:
    """``per_seed``: one dict per seed with acc, top5, n, wilson95, top5_wilson95;
    ``upstream``: study -> recorded winner (or None); ``recipe``: study -> (field label held
    in the final recipe)."""
    accs = [r["acc"] for r in per_seed]
    s = stats.summary(accs)
    parts = []
    for r in per_seed:
        lo, hi = r["wilson95"]
        parts.append(f"seed {r['seed']}: {PT * r['acc']:.2f}% (95% Wilson interval "
                     f"{PT * lo:.2f}-{PT * hi:.2f}% on {r['n']:,} images)")
    text = "Test accuracy per seed: " + "; ".join(parts) + "."
    if s["n"] > 1:
        ci = clip_accuracy(s["ci95"])
        text += (f" Across seeds: {fmt_mean_sd(s)}, 95% interval {fmt_ci(ci)}%"
                 + (" (the t-interval, cut to 0-100%)" if ci != s["ci95"] else "")
                 + ": the seed-to-seed spread, which one image set's interval does not show.")
    else:
        text += " One seed: the spread between seeds is not measured."
    held = []
    for name, field_label in recipe.items():
        w = upstream.get(name)
        study_name = name.replace("_", " ")
        if w is None:
            held.append(f"`{field_label}` ({study_name} study not in this report)")
        elif w["label"] == field_label and not w.get("tie"):
            held.append(f"`{field_label}` had the highest mean in the {study_name} study, "
                        f"{lead(w)}")
        elif w["label"] is None:
            held.append(f"`{field_label}` (no finished setting in the {study_name} study)")
        else:
            held.append(f"`{field_label}` did not have the highest mean in the {study_name} "
                        f"study: `{w['label']}` did, {lead(w)}")
    text += " The final recipe against the earlier studies of this report: " + "; ".join(held) + "."
    base = published.NUMBERS[("mixup", 0.0)]["val_acc"]
    mix = published.NUMBERS[("mixup", 0.2)]["val_acc"]
    text += (f" The report tested its mixup model although, by its own validation numbers, "
             f"mixup lost ({PT * mix:.2f}% vs {PT * base:.2f}%).")
    return text


def normalization_in_use(normalize: str, preset: str | None) -> str:
    """Which constants the runs of this report normalize with, said from the parameter."""
    where = f"The runs of this report (preset `{preset}`)" if preset else "The runs here"
    if normalize == "train":
        return (f"{where} normalize with the proper ones, the statistics of the training "
                f"split (`normalize='train'`).")
    if normalize == "published":
        return (f"{where} normalize with the report's printed constants "
                f"(`normalize='published'`), to follow its protocol; `normalize='train'` uses "
                f"the proper ones.")
    return f"{where} do not normalize (`normalize='{normalize}'`): inputs are scaled to [0, 1]."


# --- the answers: each of the report's claims against this report's runs ---------------------

def verdict(d: dict | None, sign: int) -> str:
    """``agrees`` / ``contradicts`` when the paired interval excludes zero on the claim's side
    or the other; ``not settled`` when it does not; ``not measured`` without an interval."""
    if not d or d.get("ci95") is None or not is_finite(d.get("mean")):
        return "not measured"
    if not d["detected"]:
        return "not settled"
    return "agrees" if (d["mean"] > 0) == (sign > 0) else "contradicts"


def found_text(d: dict | None) -> str:
    """A paired difference in a few words: mean, interval, seeds, and what it could detect."""
    if not d or not is_finite(d.get("mean")):
        return "no finished pair of runs"
    if d.get("ci95") is None:
        return f"{_pts(d['mean'])} points at one seed (no interval)"
    text = (f"{_pts(d['mean'])} points, 95% interval {fmt_ci(d['ci95'], signed=True)}, "
            f"{d['n']} seeds; " + ("detected" if d["detected"] else "not detected"))
    if d.get("mdd") is not None:
        text += f"; could detect {PT * d['mdd']:.2f} points (80% power)"
        if not d["detected"] and d.get("seeds_needed"):
            text += f"; about {d['seeds_needed']} seeds would detect one this size"
        elif not d["detected"] and d["mean"] != 0:
            text += f"; more than {stats.SEEDS_LIMIT:,} seeds would detect one this size"
    return text


def claim_label(study_name: str, value) -> str:
    from .studies import STUDIES, label
    return label(STUDIES[study_name].grid_field, value)


def answers(results: dict) -> list[dict]:
    """One row per claim of the report that these results test: the question, what the
    report says (its difference where its table has one), what this report's runs found, and
    the verdict. ``results``: study -> that study's results JSON (``Session.record``)."""
    rows = []
    for c in published.CLAIMS:
        res = results.get(c["study"]) or {}
        settings = res.get("settings") or {}
        s = settings.get(claim_label(c["study"], c["value"]))
        if s is None or res.get("baseline") != claim_label(c["study"], c["baseline"]):
            continue
        pub = published.claim_difference(c)
        said = ("better" if c["sign"] > 0 else "worse")
        report = f"{said} ({'its text; its table: ' if c['source'] == 'text' else ''}" + \
            (f"{_pts(pub)} points, one run each)" if pub is not None else "no number)")
        d = s.get("difference")
        rows.append({"study": c["study"], "question": c["question"], "report": report,
                     "found": found_text(d), "verdict": verdict(d, c["sign"])})
    over = overfitting(results)
    if over:
        rows.append(over)
    return rows


def overfitting(results: dict) -> dict | None:
    """Whether the baseline runs reach the regime the schedule, weight-decay and mixup
    studies are about: training accuracy above validation accuracy at the end (the report's
    300-epoch runs: 99.8% against 57%). Paired over seeds: train - val per run."""
    for name in ("schedule", "learning_rate"):
        res = results.get(name) or {}
        s = (res.get("settings") or {}).get(res.get("baseline"))
        if s:
            break
    else:
        return None
    d = stats.paired_difference(s["per_seed"]["train_acc"], s["per_seed"]["val_acc"])
    tr, va = s["train_acc"].get("mean"), s["val_acc"].get("mean")
    if not (is_finite(tr) and is_finite(va)):
        return None
    pub = published.NUMBERS[("schedule", "constant")]
    return {"study": name, "question": f"Does the baseline (`{s['label']}`) overfit: training "
                                       f"accuracy above validation?",
            "report": f"yes ({PT * pub['train_acc']:.2f}% training vs {PT * pub['val_acc']:.2f}% "
                      f"validation, constant rate, 300 epochs)",
            "found": f"{PT * tr:.2f}% training vs {PT * va:.2f}% validation; gap "
                     + found_text(d),
            "verdict": verdict(d, +1)}
