import pytest

from cfctool.configs import load_config_file, resolve
from cfctool.errors import ConfigError


def test_precedence_defaults_preset_file_cli():
    run = resolve("xor", "cfc-deep")
    assert (run.arch.backbone_units, run.arch.backbone_layers, run.arch.backbone_dropout) == (64, 5, 0.1)
    assert run.data.bits == 10 and run.train.epochs == 2  # the xor preset
    run = resolve("xor", "cfc", file_values={"lr": 0.1, "epochs": 3}, overrides={"epochs": 4})
    assert run.train.lr == 0.1 and run.train.epochs == 4
    assert resolve("xor", "cfc", preset="paper").data.bits == 32


def test_unknown_key_and_bad_values_are_errors():
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        resolve("xor", "cfc", file_values={"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="mode must be one of"):
        resolve("xor", "cfc", overrides={"mode": "fancy"})
    with pytest.raises(ConfigError, match="lr must be > 0"):
        resolve("xor", "cfc", overrides={"lr": -1})
    with pytest.raises(ConfigError, match="'hidden' must be of type int"):
        resolve("xor", "cfc", file_values={"hidden": "big"})
    with pytest.raises(ConfigError, match="unknown arch"):
        resolve("xor", "gru")
    with pytest.raises(ConfigError, match="no preset 'huge'"):
        resolve("xor", "cfc", preset="huge")
    with pytest.raises(ConfigError, match="min_bits"):
        resolve("xor", "cfc", overrides={"min_bits": 20, "bits": 10})


def test_config_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 0.02\nbackbone-units: 32\n")
    run = resolve("xor", "cfc", file_values=load_config_file(f))
    assert run.train.lr == 0.02 and run.arch.backbone_units == 32
    f.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config_file(f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")
