"""Study parameters: one function from (preset, study, overrides), and its errors."""
from __future__ import annotations

import pytest

from hpstudy.config import ConfigError
from hpstudy.plan import route_overrides, study_parameters
from hpstudy.presets import load_preset, study_params
from hpstudy.studies import STUDIES, notebook_defaults, validate


def test_cell_then_common_then_section_then_overrides():
    v = study_params("mixup", "quick", {"epochs": 3})
    cell = notebook_defaults("mixup")
    assert v["weight_decay"] == cell["weight_decay"]            # from the notebook's cell
    assert v["width"] == load_preset("quick").common["width"]   # from the preset's common
    assert v["mixup_alphas"] == [0.0, 0.2, 1.0]                 # the section beats the cell
    assert v["epochs"] == 3                                     # the override beats all
    assert v["preset"] == "quick"


def test_config_owns_the_defaults_the_cell_does_not_set():
    cell = notebook_defaults("learning_rate")
    assert "width" not in cell and "epochs" not in cell   # protocol: the preset's, else Config's
    p = validate("learning_rate", study_params("learning_rate", None, {}))
    assert p.base.width == 1.0 and p.base.epochs == 15


def test_overriding_the_grid_field_names_the_grid_key():
    with pytest.raises(ConfigError, match=r"'lr' is what this study varies; set its grid 'lrs'") as e:
        study_params("learning_rate", "smoke", {"lr": 0.1})
    assert e.value.key == "lrs"
    with pytest.raises(ConfigError, match="'lrs'"):
        route_overrides(list(STUDIES), {"lr": 0.1})
    # a study that does not vary lr takes it
    assert route_overrides(["schedule", "test"], {"lr": 0.1}) == {"schedule": {"lr": 0.1},
                                                                  "test": {"lr": 0.1}}


def test_seed_is_pointed_at_seeds():
    with pytest.raises(ConfigError, match="Did you mean 'seeds'"):
        route_overrides(["data", "learning_rate"], {"seed": 1})
    assert route_overrides(["data"], {"seed": 1}) == {"data": {"seed": 1}}


def test_unknown_override_is_an_error_before_anything_runs():
    with pytest.raises(ConfigError, match="'wdith'.*Did you mean 'width'"):
        route_overrides(["learning_rate", "test"], {"wdith": 0.5})


def test_keys_only_some_studies_take_go_to_those():
    r = route_overrides(["data", "test"], {"n_confused": 3, "n_samples": 4})
    assert r == {"data": {"n_samples": 4}, "test": {"n_confused": 3}}


@pytest.mark.parametrize("values, key", [({"seeds": [0, 0]}, "seeds"),
                                         ({"lrs": [0.1, 0.1]}, "lrs"),
                                         ({"lrs": [-1.0]}, "lrs"),
                                         ({"last_k": 0}, "last_k")])
def test_validation_errors_carry_the_key(values, key):
    with pytest.raises(ConfigError) as e:
        validate("learning_rate", values)
    assert e.value.key == key


def test_every_preset_gives_every_study_valid_parameters():
    for name in ("smoke", "quick", "paper"):
        params = study_parameters(load_preset(name), list(STUDIES))
        assert set(params) == set(STUDIES)
        for s, p in params.items():
            if STUDIES[s].trains:
                assert len(p.seeds) >= 2
