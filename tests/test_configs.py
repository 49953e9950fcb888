import pytest
import torch

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


def test_every_settings_command_takes_a_config_file_and_its_own_stored_config(cli, trained_xor, tmp_path):
    """--config on quantize/prune/reduce/distill as on train: flags over the file; a history
    entry's config (stored with its kind and version) reruns the step it records."""
    import yaml

    from cfctool.checkpoint import load

    src = trained_xor["cfc"]
    flat = tmp_path / "prune.yaml"
    flat.write_text("ratio: 0.3\ncriterion: l2\n")
    r = cli("prune", src, "--config", flat, "--ratio", "0.5", "-q", "-o", tmp_path / "p.st")
    assert r.code == 0, r.err
    entry = load(tmp_path / "p.st").record["history"][-1]["config"]
    assert entry["kind"] == "prune" and entry["version"] == 1
    assert entry["ratio"] == 0.5 and entry["criterion"] == "l2"  # the flag over the file, the file over defaults
    stored = tmp_path / "stored.yaml"
    stored.write_text(yaml.safe_dump(entry))
    r = cli("prune", src, "--config", stored, "-q", "-o", tmp_path / "again.st")
    assert r.code == 0, r.err
    first, again = load(tmp_path / "p.st"), load(tmp_path / "again.st")
    assert all(torch.equal(first.tensors[k], again.tensors[k]) for k in first.tensors)
    # the wrong command, a newer format, an unknown key: exit 2, nothing written
    for text, message in ((yaml.safe_dump(entry), "holds prune settings, not quantize settings"),
                          ("kind: quantize\nversion: 99\n", "format version 99"),
                          ("bitz: 4\n", "unknown setting(s) bitz")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        r = cli("quantize", src, "--config", bad, "-o", tmp_path / "q.st")
        assert r.code == 2 and message in r.err and not (tmp_path / "q.st").exists(), r.err


def test_a_stored_run_config_trains_the_same_run(cli, tmp_path, trained_xor):
    """train --print-config and a distilled checkpoint's history entry are config files too."""
    import yaml

    from cfctool.checkpoint import load

    r = cli("train", "xor", "--arch", "cfc", "--hidden", "12", "--lr", "0.02", "--print-config")
    shown = yaml.safe_load(r.out)
    assert shown["kind"] == "train" and shown["version"] == 1
    saved = tmp_path / "run.yaml"
    saved.write_text(r.out)
    again = cli("train", "xor", "--arch", "cfc", "--config", saved, "--print-config")
    assert yaml.safe_load(again.out) == shown
    wrong = cli("train", "xor", "--arch", "ltc", "--config", saved, "--print-config")
    assert wrong.code == 2 and "the config file is for arch 'cfc', not 'ltc'; give --arch cfc" in wrong.err
    args = ("--student", "cfc-ncp", "--hidden", "6", "--epochs", "1", "--threads", "1", "-q")
    assert cli("distill", trained_xor["cfc"], *args, "-o", tmp_path / "d.st").code == 0
    entry = load(tmp_path / "d.st").record["history"][-1]["config"]
    (tmp_path / "d.yaml.cfg").write_text(yaml.safe_dump(entry))
    r = cli("distill", trained_xor["cfc"], "--config", tmp_path / "d.yaml.cfg", "-q", "-o", tmp_path / "d2.st")
    assert r.code == 0, r.err
    a, b = load(tmp_path / "d.st"), load(tmp_path / "d2.st")
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


def test_imdb_deep_preset_is_the_recorded_searched_recipe():
    """`--preset deep` (and CfC-Deep's default) must train exactly the search's chosen run, so
    the accuracy the results pages give for it is what the preset reproduces."""
    from benchmarks.baselines import DEEP_PRESET_RUN, VARIANTS
    from cfctool.configs import resolve

    dataset, arch, changed, preset = VARIANTS[DEEP_PRESET_RUN]
    chosen = {k: v for k, v in resolve(dataset, arch, preset=preset, overrides={**changed, "epochs": 20}).to_dict().items()
              if k != "preset"}
    for name in ("deep", "default"):
        settings = resolve("imdb", "cfc-deep", preset=name).to_dict()
        assert settings.pop("preset") == name and settings == chosen, name
    # the other architectures keep the reference schedule by default
    assert resolve("imdb", "cfc").train.lr == resolve("imdb", "cfc", preset="reference").train.lr


def test_every_preset_file_resolves_for_every_architecture_it_names():
    """The presets are data files (cfctool/presets/*.yaml): each must resolve, with every
    architecture it gives settings for (and the plain CfC), to a valid run."""
    from cfctool.configs import resolve
    from cfctool.configs.presets import ARCH_PRESETS, PRESET_DIR, PRESETS

    assert {p.stem for p in PRESET_DIR.glob("*.yaml")} == {d for d, _ in PRESETS}
    for dataset, name in PRESETS:
        archs = {"cfc"} | {a for d, n, a in ARCH_PRESETS if (d, n) == (dataset, name)}
        for arch in sorted(archs):
            run = resolve(dataset, arch, preset=name)
            run.validate()
            shown = run.to_dict()
            for key, value in {**PRESETS[dataset, name], **ARCH_PRESETS.get((dataset, name, arch), {})}.items():
                section = next(s for s in ("arch", "data", "train") if key in shown[s])
                assert shown[section][key] == value, (dataset, name, arch, key)
    # `extends` copies the settings it names first
    assert PRESETS["imdb", "deep"]["optimizer"] == PRESETS["imdb", "reference"]["optimizer"] == "rmsprop"


def test_a_bad_preset_file_names_itself(tmp_path):
    from cfctool.configs.presets import read, read_all

    for text, message in (
        ("presets:\n  a: {settings: {lr: 0.1}, extend: b}\n", "has extend"),
        ("presets:\n  a: {extends: b}\n  b: {extends: a}\n", "extends itself"),
        ("presets:\n  a: {extends: z}\n", "which the file does not define"),
        ("presets: [1, 2]\n", "must be a mapping"),
    ):
        path = tmp_path / "toy.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=message) as err:
            read(path)
        assert "toy.yaml" in str(err.value)
    (tmp_path / "toy.yaml").write_text("presets:\n  quick: {settings: {lr: 0.1}, archs: {ltc: {hidden: 8}}}\n")
    presets, archs = read_all(tmp_path)
    assert presets == {("toy", "quick"): {"lr": 0.1}} and archs == {("toy", "quick", "ltc"): {"hidden": 8}}


def test_the_training_guide_lists_every_preset_from_the_files():
    from pathlib import Path

    from cfctool.cli.reference import with_preset_table
    from cfctool.configs.presets import PRESETS

    text = (Path(__file__).resolve().parents[1] / "docs/guide/training.md").read_text()
    assert text == with_preset_table(text), "docs/guide/training.md is out of date: run `make cli-reference`"
    for dataset, name in PRESETS:
        assert f"| `{dataset}` | `{name}` |" in text
