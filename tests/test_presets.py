"""Presets load whole and fail early, with file and line, on anything malformed."""
import pytest

from hpstudy.presets import PARAMS_DIR, PresetError, load_preset
from hpstudy.studies import STUDIES, validate


@pytest.mark.parametrize("name", ["smoke", "quick", "paper"])
def test_shipped_presets_validate(name):
    p = load_preset(name)
    assert set(p.studies) == set(STUDIES)
    for study in STUDIES:
        validate(study, p.params(study))


def test_paper_preset_is_the_reports_protocol():
    p = load_preset("paper")
    lr = validate("learning_rate", p.params("learning_rate"))
    assert [c.lr for c in lr.configs().values()] == [0.5, 0.05, 0.01]
    assert all(c.epochs == 15 and c.width == 1.0 and c.n_train is None and c.batch_size == 128
               for c in lr.configs().values())
    for study in ("schedule", "weight_decay", "mixup", "test"):
        cfgs = validate(study, p.params(study)).configs().values()
        assert all(c.epochs == 300 and c.normalize == "report" for c in cfgs)
    wd = validate("weight_decay", p.params("weight_decay")).configs()
    assert sorted(c.weight_decay for c in wd.values()) == [1e-4, 5e-4]
    final = validate("test", p.params("test")).base
    assert (final.schedule, final.weight_decay, final.mixup_alpha) == ("cosine", 5e-4, 0.2)
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


def test_unsafe_yaml_is_refused(tmp_path):
    path = write(tmp_path, "studies: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(PresetError, match=r"bad.yaml"):
        load_preset(str(path))
    assert not (tmp_path / "pwned").exists()


def test_unknown_preset_lists_known():
    with pytest.raises(PresetError, match=r"unknown preset 'quik'.*quick"):
        load_preset("quik")
    assert (PARAMS_DIR / "quick.yaml").exists()
