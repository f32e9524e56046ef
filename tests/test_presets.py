"""Presets load whole and fail early, with file and line, on anything malformed."""
import json
import shlex

import pytest
import yaml

from hpstudy import published
from hpstudy.paths import params_dir
from hpstudy.presets import PresetError, load_preset, study_params
from hpstudy.studies import STUDIES, validate


def configs(preset, study):
    return validate(study, study_params(study, preset)).run_configs().values()


@pytest.mark.parametrize("name", ["smoke", "quick", "paper"])
def test_shipped_presets_validate(name):
    p = load_preset(name)
    for study in STUDIES:
        validate(study, study_params(study, p))
    assert "exactly" not in p.description   # no preset claims more fidelity than it has


def test_paper_preset_follows_the_reports_protocol():
    p = load_preset("paper")
    lr = configs(p, "learning_rate")
    assert sorted({c.lr for c in lr}) == [0.01, 0.05, 0.5]
    assert sorted({c.seed for c in lr}) == [0, 1, 2]
    assert all(published.follows_protocol("learning_rate", c) for c in lr)
    for study in ("schedule", "weight_decay", "mixup", "test"):
        cfgs = configs(p, study)
        assert all(c.epochs == 300 and c.normalize == "published" for c in cfgs)
        assert all(published.follows_protocol(study, c) for c in cfgs)
    assert sorted({c.weight_decay for c in configs(p, "weight_decay")}) == [1e-4, 5e-4]
    assert sorted({c.mixup_alpha for c in configs(p, "mixup")}) == [0.0, 0.2, 1.0]
    final = validate("test", study_params("test", p)).base
    assert (final.schedule, final.weight_decay, final.mixup_alpha) == ("cosine", 5e-4, 0.2)
    # numerics are stated, not left to the machine
    assert p.common["precision"] == "fp32" and "compile" in p.common
    assert p.compare_with_report


def write(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "common:\n  width: 0.25\nstudies:\n  learning_rate: {lrs: [0.1, 0.2}\n")
    with pytest.raises(PresetError, match=rf"{path}:4:\d+: YAML syntax error"):
        load_preset(str(path))


def test_unknown_study_names_line(tmp_path):
    path = write(tmp_path, "studies:\n  data: {}\n  learning_rates:\n    lrs: [0.1]\n")
    with pytest.raises(PresetError, match=rf"{path}:3: unknown study 'learning_rates'.*learning_rate"):
        load_preset(str(path))


def test_wrong_type_names_key_and_line(tmp_path):
    path = write(tmp_path, "studies:\n  learning_rate:\n    lrs: [0.1]\n    epochs: ten\n")
    with pytest.raises(PresetError, match=rf"{path}:4: .*'epochs': expected int, got 'ten'"):
        load_preset(str(path))


def test_bad_grid_value_points_at_grid_key(tmp_path):
    path = write(tmp_path, "studies:\n  learning_rate:\n    epochs: 2\n    lrs: [0.1, -1]\n")
    with pytest.raises(PresetError, match=rf"{path}:4: .*'lr': must be > 0"):
        load_preset(str(path))


def test_unknown_key_in_common_names_line(tmp_path):
    path = write(tmp_path, "common:\n  width: 0.5\n  wdith: 0.5\nstudies:\n  data: {}\n")
    with pytest.raises(PresetError, match=rf"{path}:3: common key 'wdith'"):
        load_preset(str(path))


def test_yaml_11_exponent_gets_a_hint(tmp_path):
    path = write(tmp_path, "studies:\n  weight_decay:\n    weight_decays: [5e-4]\n")
    with pytest.raises(PresetError, match=r":3: .*write 5.0e-4"):
        load_preset(str(path))


@pytest.mark.subprocess          # the liveness check runs the payload's shell
def test_unsafe_yaml_is_refused(tmp_path, monkeypatch):
    # the payload touches an absolute path, and runs in tmp_path, so nothing it could do goes
    # unnoticed (or lands in the repository)
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    command = f"touch {shlex.quote(str(marker))}"
    text = f"studies: !!python/object/apply:os.system [{json.dumps(command)}]\n"
    path = write(tmp_path, text)
    with pytest.raises(PresetError, match=r"bad.yaml"):
        load_preset(str(path))
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]

    # the payload is live: an unrestricted loader does run it (so the test above can fail)
    yaml.unsafe_load(text)
    assert marker.exists()


def test_unknown_preset_lists_known():
    with pytest.raises(PresetError, match=r"unknown preset 'quik'.*quick"):
        load_preset("quik")
    assert (params_dir() / "quick.yaml").exists()


def test_common_key_that_a_study_varies_names_the_line(tmp_path):
    path = write(tmp_path, "common:\n  width: 0.5\n  lr: 0.1\n")
    with pytest.raises(PresetError, match=rf"{path}:3: common key 'lr' is what study "
                                          r"'learning_rate' varies"):
        load_preset(str(path))


def test_section_setting_the_grid_field_names_the_grid_key(tmp_path):
    path = write(tmp_path, "studies:\n  learning_rate:\n    lr: 0.1\n")
    with pytest.raises(PresetError, match=rf"{path}:3: .*set its grid 'lrs'"):
        load_preset(str(path))
