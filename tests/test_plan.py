"""The planner's power estimate: a preset's comparisons judged from a pilot's stored runs."""
from __future__ import annotations

import hpstudy
from hpstudy import stats
from hpstudy.plan import format_power, pilot_power, study_parameters
from hpstudy.presets import load_preset

from conftest import quiet, tiny_config


def test_power_of_a_plan_from_pilot_runs_at_other_seeds(tiny_env, tmp_path):
    pilot = tmp_path / "pilot"
    base = tiny_config(epochs=1, n_train=200, data_root=str(tiny_env))
    finals = {}
    for lr in (0.05, 0.01):
        for seed in (10, 11, 12):
            r = hpstudy.run({**base, "lr": lr, "seed": seed}, root=pilot, log=quiet)
            finals[(lr, seed)] = r.final["val_acc"]
    # the preset's protocol is the pilot's; its seeds are others
    overrides = {**{k: v for k, v in base.items() if k != "lr"}, "lrs": [0.05, 0.01],
                 "n_val": None, "seeds": [0, 1, 2, 3]}
    params = study_parameters(load_preset("smoke"), ["learning_rate"], overrides)
    rows = pilot_power(params, pilot)
    assert len(rows) == 1
    row = rows[0]
    assert (row["setting"], row["baseline"]) == ("lr=0.01", "lr=0.05")
    assert row["pilot_seeds"] == [10, 11, 12] and row["planned_seeds"] == 4
    diffs = [finals[(0.01, s)] - finals[(0.05, s)] for s in (10, 11, 12)]
    d = stats.paired_difference(diffs, [0.0] * 3)
    assert row["pilot"]["mean"] == d["mean"]
    if d["sd"]:
        assert row["mdd"] == stats.min_detectable(d["sd"], 4)
    assert "lr=0.01 - lr=0.05" in format_power(rows)
    # a store without those configs: no pilot pairs, nothing claimed
    empty = pilot_power(params, tmp_path / "none")
    assert empty[0]["pilot_seeds"] == [] and empty[0]["mdd"] is None
