"""Config validation: unknown keys, wrong types and impossible values are errors that name the
key and say what is allowed; the command line reads KEY=VALUE the way a user means it."""
from __future__ import annotations

import json
import math

import pytest

from hpstudy import Config, ConfigError
from hpstudy.cli import _parse_assignments


def test_defaults_are_the_report_protocol():
    c = Config()
    assert (c.lr, c.momentum, c.batch_size, c.epochs, c.schedule) == (0.05, 0.9, 128, 15, "constant")
    assert (c.weight_decay, c.mixup_alpha, c.split_seed, c.width) == (0.0, 0.0, 0, 1.0)
    # a missing key takes the default, and the defaults pass their own validation
    assert Config.from_dict({}) == c
    assert Config.from_dict(Config().to_dict()) == Config()


# a value other than the default for (nearly) every key, each of the type from_dict wants
NON_DEFAULT = {"lr": 0.1, "momentum": 0.5, "nesterov": True, "weight_decay": 5e-4,
               "batch_size": 64, "epochs": 300, "schedule": "cosine", "eta_min": 0.001,
               "mixup_alpha": 0.2, "augment_crop": False, "augment_flip": False,
               "normalize": "none", "n_train": 2000, "n_val": 1000, "subset_seed": 3,
               "split_seed": 1, "width": 0.25, "seed": 7, "device": "cpu",
               "precision": "fp32", "channels_last": False, "compile": "off",
               "eval_batch_size": 500, "data_root": "/some/where"}


def test_non_default_config_round_trips():
    c = Config.from_dict(NON_DEFAULT)
    default = Config().to_dict()
    assert all(NON_DEFAULT[k] != default[k] for k in NON_DEFAULT)      # really non-default
    assert c != Config()
    assert c.to_dict() == {**default, **NON_DEFAULT}
    # through JSON, as config.json stores it, and back
    back = Config.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c and back.to_dict() == c.to_dict()
    # one changed value makes a different config
    assert Config.from_dict({**NON_DEFAULT, "seed": 8}) != c


def test_config_error_is_a_value_error_naming_the_key():
    # callers that catch ValueError catch a bad parameter too
    with pytest.raises(ValueError, match="'lr': must be > 0") as e:
        Config.from_dict({"lr": -1.0})
    assert isinstance(e.value, ConfigError) and e.value.key == "lr"


def test_from_dict_accepts_valid_values_and_int_for_float():
    c = Config.from_dict({"lr": 1, "epochs": 3, "schedule": "cosine", "n_train": None}, width=0.5)
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert (c.epochs, c.schedule, c.width, c.n_train) == (3, "cosine", 0.5, None)


def test_unknown_key_names_it_suggests_close_match_and_lists_allowed():
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"weight_decy": 5e-4})
    msg = str(e.value)
    assert "'weight_decy'" in msg
    assert "Did you mean 'weight_decay'?" in msg
    allowed = msg.split("Allowed:")[1]
    for key in Config.keys():
        assert key in allowed


def test_unknown_key_without_close_match_still_lists_allowed():
    with pytest.raises(ConfigError, match=r"unknown parameter 'zzz'\. Allowed: lr, momentum"):
        Config.from_dict({"zzz": 1})


@pytest.mark.parametrize("key,value,expected", [
    ("epochs", "ten", "expected int, got 'ten' (str)"),
    ("epochs", True, "expected int, got True (bool)"),
    ("epochs", 2.0, "expected int, got 2.0 (float)"),
    ("batch_size", False, "expected int, got False (bool)"),
    ("lr", True, "expected float, got True (bool)"),
    ("lr", "fast", "expected float"),
    ("nesterov", 1, "expected bool, got 1 (int)"),
    ("schedule", 1, "expected str"),
    ("n_train", "1000", "expected int"),
])
def test_wrong_types_are_rejected(key, value, expected):
    with pytest.raises(ConfigError) as e:
        Config.from_dict({key: value})
    assert f"parameter {key!r}" in str(e.value)
    assert expected in str(e.value)


@pytest.mark.parametrize("kw,expected", [
    ({"lr": 0}, "'lr': must be > 0"),
    ({"lr": -0.1}, "'lr': must be > 0"),
    ({"lr": math.nan}, "'lr': must be a finite number"),
    ({"lr": math.inf}, "'lr': must be a finite number"),
    ({"epochs": 0}, "'epochs': must be >= 1"),
    ({"epochs": -3}, "'epochs': must be >= 1"),
    ({"mixup_alpha": -0.2}, "'mixup_alpha': must be >= 0"),
    ({"momentum": 1.0}, "'momentum': must be in [0, 1)"),
    ({"weight_decay": -1e-4}, "'weight_decay': must be >= 0"),
    ({"batch_size": 0}, "'batch_size': must be >= 1"),
    ({"eta_min": 0.1, "lr": 0.05}, "'eta_min': must be in [0, lr]"),
    ({"width": 0}, "'width': must be > 0"),
    ({"n_train": 50}, "'n_train': must be >= 100"),
    ({"nesterov": True, "momentum": 0}, "'nesterov': needs momentum > 0"),
    ({"eval_batch_size": -1}, "'eval_batch_size'"),
])
def test_impossible_values_are_rejected(kw, expected):
    with pytest.raises(ConfigError) as e:
        Config.from_dict(kw)
    assert expected in str(e.value)


@pytest.mark.parametrize("key,value,allowed", [
    ("schedule", "cosin", "allowed values: constant, cosine"),
    ("device", "gpu", "allowed values: auto, cpu, cuda, mps"),
    ("precision", "fp64", "allowed values: auto, fp32, bf16, fp16"),
    ("normalize", "imagenet", "allowed values: train, published, none"),
    ("compile", "yes", "allowed values: auto, on, off"),
])
def test_unknown_choice_lists_allowed_values(key, value, allowed):
    with pytest.raises(ConfigError) as e:
        Config.from_dict({key: value})
    assert f"parameter {key!r}" in str(e.value) and repr(value) in str(e.value)
    assert allowed in str(e.value)


def test_replace_validates():
    c = Config.from_dict({"lr": 0.1})
    assert c.replace(epochs=3).epochs == 3
    with pytest.raises(ConfigError, match="'lr'"):
        c.replace(lr=-1.0)
    with pytest.raises(ConfigError, match="'learning_rate'.*Did you mean 'lr'"):
        c.replace(learning_rate=0.1)


def test_cli_assignments_read_numbers_and_text_as_meant():
    d = _parse_assignments(["lr=1e-4", "weight_decay=5e-4", "epochs=3", "compile=off",
                            "schedule=cosine", "normalize=none", "n_train=null",
                            "data_root=/some/where", "nesterov=true", "width=0.25"])
    assert d == {"lr": 1e-4, "weight_decay": 5e-4, "epochs": 3, "compile": "off",
                 "schedule": "cosine", "normalize": "none", "n_train": None,
                 "data_root": "/some/where", "nesterov": True, "width": 0.25}
    c = Config.from_dict(d)
    assert (c.lr, c.compile, c.normalize) == (1e-4, "off", "none")


def test_cli_assignments_pass_errors_on_to_config():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        _parse_assignments(["lr"])
    with pytest.raises(ConfigError, match="expected int, got 'ten'"):
        Config.from_dict(_parse_assignments(["epochs=ten"]))
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        Config.from_dict(_parse_assignments(["epoch=3"]))
    with pytest.raises(ConfigError, match="'lr': must be a finite number"):
        Config.from_dict(_parse_assignments(["lr=nan"]))


def test_cli_train_reports_config_error_with_exit_code_2(capsys):
    from hpstudy.cli import main

    assert main(["train", "epochs=ten"]) == 2
    err = capsys.readouterr().err
    assert "error: parameter 'epochs': expected int" in err
    assert main(["train", "schedule=cosin"]) == 2
    assert "allowed values: constant, cosine" in capsys.readouterr().err


# --- describe: a config in a few words --------------------------------------------------------

def test_non_defaults_are_the_changed_fields_and_lr_epochs_in_field_order():
    from hpstudy.config import non_defaults
    cfg = Config.from_dict(width=0.25, seed=3, weight_decay=5e-4)
    assert list(non_defaults(cfg).items()) == [("lr", 0.05), ("weight_decay", 5e-4),
                                               ("epochs", 15), ("width", 0.25), ("seed", 3)]
    assert non_defaults(cfg.to_dict()) == non_defaults(cfg)          # a Config or its dict
    assert non_defaults(Config(), always=()) == {}
    # skip wins over always
    assert non_defaults(cfg, skip=("lr", "seed")) == {"weight_decay": 5e-4, "epochs": 15,
                                                      "width": 0.25}


def test_describe_formats_key_value_pairs():
    from hpstudy.config import describe
    cfg = Config.from_dict(width=1.5, seed=3, weight_decay=1e-5, n_train=1000)
    assert describe(cfg) == "lr=0.05, weight_decay=1e-05, epochs=15, n_train=1000, width=1.5, seed=3"
    assert describe(Config.from_dict(eta_min=0.0, lr=2)) == "lr=2.0, epochs=15"
    assert describe(Config.from_dict(lr=2), float_format="g") == "lr=2, epochs=15"
    assert describe(cfg, skip=("seed", "n_train"), sep="_") == \
        "lr=0.05_weight_decay=1e-05_epochs=15_width=1.5"
    # booleans and text are never float-formatted
    assert describe(Config.from_dict(nesterov=True, schedule="cosine"), float_format="g") == \
        "lr=0.05, nesterov=True, epochs=15, schedule=cosine"


def test_describe_is_the_only_config_description():
    """The store, the export and the notebooks describe a config with ``config.describe``;
    none keeps a copy of its own."""
    import hpstudy.export
    import hpstudy.notebook
    import hpstudy.store
    import hpstudy.store.runs
    from hpstudy.config import describe

    assert not hasattr(hpstudy.store, "describe")
    assert hpstudy.store.runs.describe is describe
    assert hpstudy.export.describe is describe and hpstudy.notebook.describe is describe
