"""The readings: statistics per setting and every sentence's wording, from hand-made runs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from hpstudy import published, readings, stats
from hpstudy.config import Config
from hpstudy.schema import HISTORY_COLUMNS
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
    d.update(stats.power_of(d))
    text = readings.comparison("lr=0.5", "lr=0.05", d)
    assert text.startswith("`lr=0.5` ends above `lr=0.05`: +9.00 points of validation accuracy "
                           "(95% interval [+6.50, +11.50], 3 paired seeds).")
    # the minimum detectable difference at n=3, sd 1 point: 3.26 sd (noncentral t)
    assert "smallest difference detected with 80% power is 3.26 points." in text
    assert "would take" not in text                     # detected: no seeds-needed clause
    d = {**d, "mean": -0.09, "ci95": [-0.115, -0.065]}
    assert "`a` ends below `b`" in readings.comparison("a", "b", d)


def test_sentence_for_no_detected_difference_gives_the_interval_and_the_power():
    d = {"mean": 0.004, "sd": 0.01, "n": 2, "ci95": [-0.086, 0.094], "detected": False}
    d.update(stats.power_of(d))
    text = readings.comparison("schedule=cosine", "schedule=constant", d)
    assert text.startswith("`schedule=cosine` vs `schedule=constant`: no difference detected, "
                           "+0.40 points (95% interval [-8.60, +9.40], 2 paired seeds).")
    assert "better" not in text and "worse" not in text
    # said once: neither setting's name comes twice
    assert text.count("schedule=cosine") == 1 and text.count("schedule=constant") == 1
    need = stats.seeds_needed(0.004, 0.01)
    assert f"would take about {need} seeds" in text and need > 40
    assert f"is {100 * stats.min_detectable(0.01, 2):.2f} points" in text


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
    assert "`lr=0.5` is best; its lead over every other setting excludes zero" in \
        readings.winner_sentence(w, "Learning rate")
    # against the baseline the comparison sentences gave the numbers: not repeated
    assert "points" not in readings.winner_sentence({**w, "runner_up": "lr=0.05"}, "LR", "lr=0.05")
    assert "points" in readings.winner_sentence(w, "LR", "lr=0.7")
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


def test_results_carry_power_for_every_comparison():
    p = lr_params()
    s = readings.summarize(p, study_runs(p, {"lr=0.5": [0.13, 0.11, 0.15],
                                             "lr=0.05": [0.10, 0.12, 0.14],
                                             "lr=0.01": [0.08, 0.12, 0.13]}))
    d = s["lr=0.01"]["difference"]          # -0.02, 0, -0.01: mean -0.01, sd 0.01
    assert d["sd"] == pytest.approx(0.01)
    assert d["mdd"] == pytest.approx(stats.min_detectable(0.01, 3))
    assert d["seeds_needed"] == stats.seeds_needed(-0.01, 0.01)
    assert not d["detected"]
    # with a per-seed sd of 1 point, a 1-point difference needs 10 seeds (design tables)
    assert d["seeds_needed"] == 10
    assert "would take about 10 seeds" in readings.comparison("lr=0.01", "lr=0.05", d)


def test_decay_budget_compares_with_the_reports_runs():
    p = validate("weight_decay", {"weight_decays": [0.0005, 0.0001], "seeds": [0, 1],
                                  "epochs": 30, "width": 0.25, "n_train": 1000,
                                  "schedule": "cosine"})
    configs = {st.label: st.config for st in p.settings()}
    text = readings.decay_budget(configs)
    # ours: 8 steps x 30 epochs x mean cosine lr: sum of 0.05 (1 + cos(pi e / 30)) / 2 over
    # e = 0..29 is 30 x 0.025 + 0.025 (the e = 0 term's excess over the mean) = 0.775
    ours = 5e-4 * 8 * 0.775
    theirs = 5e-4 * 313 * 0.05 * 301 / 2            # 300 epochs: (300 + 1) / 2 lr-epochs
    assert f"`weight_decay=0.0005` {ours:.4f} against {theirs:.3f}" in text
    assert f"apply {theirs / ours:.0f}x less decay" in text


def test_answers_give_the_reports_claim_and_the_verdict():
    lr = lr_params(seeds=(0, 1, 2))
    s = readings.summarize(lr, study_runs(lr, {"lr=0.5": [0.13, 0.11, 0.15],
                                               "lr=0.05": [0.10, 0.12, 0.14],
                                               "lr=0.01": [0.05, 0.06, 0.08]}))
    res = {"learning_rate": {"baseline": "lr=0.05", "settings": s}}
    rows = {r["question"]: r for r in readings.answers(res)}
    low = rows["Is lr 0.01 worse than lr 0.05?"]
    assert low["verdict"] == "agrees" and "-5.28 points" in low["report"]
    assert low["found"].startswith("-5.67 points, 95% interval") and "detected" in low["found"]
    high = rows["Is lr 0.5 better than lr 0.05?"]
    assert high["verdict"] == "not settled" and "its text" in high["report"]
    assert "could detect" in high["found"] and "seeds would detect" in high["found"]
    assert readings.verdict({"mean": -0.02, "ci95": [-0.03, -0.01], "detected": True}, +1) \
        == "contradicts"
    assert readings.verdict({"mean": 0.01, "ci95": None, "detected": False}, +1) == "not measured"
    # the overfitting row: train acc 0.5 in every fake run against val 0.10-0.14
    over = [r for r in readings.answers(res) if "overfit" in r["question"]][0]
    assert over["verdict"] == "agrees" and over["found"].startswith("50.00% training vs 12.00%")


def test_index_markdown_becomes_html():
    from hpstudy.index import inline_markdown
    html = str(inline_markdown("`lr=0.5` <b> **best**"))
    assert html == "<code>lr=0.5</code> &lt;b&gt; <strong>best</strong>"
    assert "`" not in html


def test_a_test_accuracy_interval_stays_within_0_and_100():
    per = [{"seed": 0, "acc": 0.02, "top5": 0.1, "n": 10000, "wilson95": [0.017, 0.023]},
           {"seed": 1, "acc": 0.12, "top5": 0.2, "n": 10000, "wilson95": [0.11, 0.13]}]
    text = readings.test_reading(per, {}, {})
    assert "[0.00, " in text and "cut to 0-100%" in text and "[-" not in text


def test_a_tiny_observed_difference_is_said_to_need_more_seeds_than_counted():
    d = {"mean": 0.0003, "sd": 0.0128, "n": 5, "ci95": [-0.016, 0.016], "detected": False}
    d.update(stats.power_of(d))
    assert d["seeds_needed"] is None and d["mdd"] is not None
    assert "would take more than 10,000 seeds" in readings.comparison("a", "b", d)
    assert "more than 10,000 seeds" in readings.found_text(d)
