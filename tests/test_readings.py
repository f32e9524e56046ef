"""The readings: statistics per setting and every sentence's wording, from hand-made runs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from hpstudy import published, readings
from hpstudy.config import Config
from hpstudy.metrics import HISTORY_COLUMNS
from hpstudy.studies import validate


def fake_run(val_accs, status="done", seed=0, cfg=None, train_acc=0.5, train_loss=1.0):
    rows = [(i + 1, 0.05, train_loss, train_acc, 2.0 - 0.1 * i, v, 1.0)
            for i, v in enumerate(val_accs)]
    h = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    best = h.loc[h["val_acc"].idxmax()].to_dict()
    return SimpleNamespace(history=h, status=status, final=h.iloc[-1].to_dict(), best=best,
                           hash=f"h{seed}{val_accs[-1]}", dir="/nowhere",
                           config=cfg or Config(epochs=len(val_accs), seed=seed))


def study_runs(p, finals: dict):
    """(label, seed) -> run whose final validation accuracy is finals[label][i]."""
    return {(s.label, seed): fake_run([0.01, v], seed=seed, cfg=s.seeded(seed))
            for s in p.settings() for seed, v in zip(p.seeds, finals[s.label])}


def lr_params(seeds=(0, 1, 2)):
    return validate("learning_rate", {"lrs": [0.5, 0.05, 0.01], "seeds": list(seeds),
                                      "epochs": 2, "width": 0.25, "n_train": 1000})


def test_summary_statistics_and_paired_difference_per_setting():
    p = lr_params()
    finals = {"lr=0.5": [0.20, 0.21, 0.22], "lr=0.05": [0.10, 0.12, 0.14],
              "lr=0.01": [0.11, 0.13, 0.12]}
    s = readings.summarize(p, study_runs(p, finals))
    assert list(s) == ["lr=0.5", "lr=0.05", "lr=0.01"]
    assert s["lr=0.05"]["val_acc"]["mean"] == pytest.approx(0.12)
    assert s["lr=0.05"]["val_acc"]["sd"] == pytest.approx(0.02)
    assert "difference" not in s["lr=0.05"]                       # the baseline
    d = s["lr=0.5"]["difference"]                                 # 0.10, 0.09, 0.08
    assert d["mean"] == pytest.approx(0.09) and d["n"] == 3 and d["detected"]
    # t_{0.975,2} = 4.302653, sd of the differences 0.01: half-width 0.0248414
    assert d["ci95"] == pytest.approx([0.09 - 0.0248414, 0.09 + 0.0248414], abs=1e-6)
    assert s["lr=0.5"]["last_k"]["k"] == 3
    assert s["lr=0.5"]["published"] is None                        # not at the protocol


def test_sentence_for_a_detected_difference():
    d = {"mean": 0.09, "sd": 0.01, "n": 3, "ci95": [0.065, 0.115], "detected": True}
    text = readings.comparison("lr=0.5", "lr=0.05", d)
    assert text == ("`lr=0.5` has higher validation accuracy than `lr=0.05`: +9.00 points, "
                    "95% interval [+6.50, +11.50] over 3 paired seeds, which excludes zero.")
    d = {**d, "mean": -0.09, "ci95": [-0.115, -0.065]}
    assert "has lower validation accuracy" in readings.comparison("a", "b", d)


def test_sentence_for_no_detected_difference_gives_the_interval():
    d = {"mean": 0.004, "sd": 0.01, "n": 2, "ci95": [-0.086, 0.094], "detected": False}
    text = readings.comparison("schedule=cosine", "schedule=constant", d)
    assert text.startswith("No difference in validation accuracy between `schedule=cosine` and "
                           "`schedule=constant` was detected at 2 seeds")
    assert "+0.40 points, 95% interval [-8.60, +9.40], which includes zero" in text
    assert "better" not in text and "worse" not in text


def test_sentence_for_one_seed_claims_nothing():
    d = {"mean": 0.02, "sd": None, "n": 1, "ci95": None, "detected": False}
    text = readings.comparison("a", "b", d)
    assert "single seed" in text and "no evidence" in text


def test_winner_is_clear_only_when_every_lead_is_detected():
    p = lr_params()
    clear = readings.summarize(p, study_runs(p, {"lr=0.5": [0.20, 0.21, 0.22],
                                                 "lr=0.05": [0.10, 0.12, 0.14],
                                                 "lr=0.01": [0.11, 0.13, 0.12]}))
    w = readings.winner(clear)
    assert w["label"] == "lr=0.5" and w["clear"] and w["value"] == 0.5
    assert "wins" in readings.winner_sentence(w, "Learning rate")
    close = readings.summarize(p, study_runs(p, {"lr=0.5": [0.13, 0.11, 0.15],
                                                 "lr=0.05": [0.10, 0.12, 0.14],
                                                 "lr=0.01": [0.01, 0.01, 0.02]}))
    w = readings.winner(close)
    assert w["label"] == "lr=0.5" and not w["clear"] and w["runner_up"] == "lr=0.05"
    assert "no clear winner" in readings.winner_sentence(w, "Learning rate")


def test_held_fixed_says_whether_the_value_won_upstream():
    won = {"label": "lr=0.05", "value": 0.05, "clear": True, "tie": False, "runner_up": "lr=0.5",
           "difference": {"mean": 0.03, "ci95": [0.01, 0.05], "n": 3}}
    text = readings.held_fixed("lr=0.05", won, "Learning rate")
    assert "it had the highest mean, clearly ahead of `lr=0.5` by +3.00 points" in text
    lost = {**won, "label": "lr=0.5", "runner_up": "lr=0.05", "clear": False,
            "difference": {"mean": 0.01, "ci95": [-0.02, 0.04], "n": 3}}
    text = readings.held_fixed("lr=0.05", lost, "Learning rate")
    assert "as the report did" in text and "`lr=0.5` had the highest mean" in text
    assert "without a detected lead" in text
    assert "not part of this report" in readings.held_fixed("lr=0.05", None, "Learning rate")


def test_mixup_bounds_match_the_beta_moments():
    b = readings.mixup_bounds(0.2)
    assert b["loss_min"] == pytest.approx(0.22, abs=0.015)      # study.md: about 0.22 nats
    assert b["acc_max"] == pytest.approx(0.90, abs=0.01)        # study.md: about 0.90
    one = readings.mixup_bounds(1.0)                              # lambda uniform: E[H] = 1/2
    assert one["loss_min"] == pytest.approx(0.5, abs=0.005)
    assert one["acc_max"] == pytest.approx(0.75, abs=0.005)     # E[max(u, 1-u)] = 3/4


def test_mixup_reading_flags_the_reports_row():
    p = validate("mixup", {"mixup_alphas": [0.0, 0.2], "seeds": [0, 1], "epochs": 2,
                           "width": 0.25, "n_train": 1000})
    runs = {(s.label, seed): fake_run([0.01, 0.1], seed=seed, cfg=s.seeded(seed),
                                      train_loss=2.5, train_acc=0.3)
            for s in p.settings() for seed in p.seeds}
    text = readings.mixup_reading(readings.summarize(p, runs), p.grid)
    assert "cannot fall below E[H(lambda)] = 0.2" in text
    assert "unreachable under mixup" in text and "to the last digit" in text
    assert "Measured here: 2.500 and 30.00%" in text


def test_identical_rows_are_found():
    p = lr_params(seeds=(0,))
    s = readings.summarize(p, study_runs(p, {"lr=0.5": [0.2], "lr=0.05": [0.2], "lr=0.01": [0.1]}))
    assert readings.identical_rows(s) == [("lr=0.5", "lr=0.05", 0)]
    assert "coincide" in readings.learning_rate_reading(s)


def test_published_numbers_need_the_protocol():
    full = Config(width=1.0, epochs=300)
    small = Config(width=0.25, epochs=300)
    assert published.numbers("schedule", "cosine", full)["val_acc"] == 0.5825
    assert published.numbers("schedule", "cosine", small) is None
    assert published.numbers("schedule", "cosine", full.replace(epochs=50)) is None
    assert published.numbers("learning_rate", 0.5, Config(width=1.0, epochs=15)) is not None


@pytest.mark.parametrize("normalize, needle", [("train", "proper ones"),
                                               ("published", "printed constants"),
                                               ("none", "do not normalize")])
def test_normalization_sentence_follows_the_parameter(normalize, needle):
    assert needle in readings.normalization_in_use(normalize, "paper")


def test_table_shows_mean_sd_n_and_intervals():
    p = lr_params()
    s = readings.summarize(p, study_runs(p, {"lr=0.5": [0.20, 0.21, 0.22],
                                             "lr=0.05": [0.10, 0.12, 0.14],
                                             "lr=0.01": [0.11, 0.13, 0.12]}))
    t = readings.table(s, "lr=0.05")
    assert t.loc["lr=0.05 (baseline)", "val acc %"] == "12.00 ± 2.00 (n=3)"
    assert t.loc["lr=0.5", "Δ val acc (pt)"] == "+9.00"
    assert t.loc["lr=0.5", "Δ 95% CI"] == "[+6.52, +11.48]"
    assert not math.isnan(readings.forest_rows(s)["lo"].iloc[0])
