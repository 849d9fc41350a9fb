import pytest

from mal.training.config import ConfigError, load_config


def test_defaults_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trainer:\n  max_epochs: 3\ndata:\n  batch_size: 4\n")
    cfg = load_config(path, ["optim.lr=0.01", "data.snr_range_db=[0, 5]", "model={preset: deepfilternet2_arch}"])
    assert cfg["trainer"]["max_epochs"] == 3 and cfg["data"]["batch_size"] == 4
    assert cfg["optim"]["lr"] == 0.01 and cfg["data"]["snr_range_db"] == [0, 5]
    assert cfg["model"] == {"preset": "deepfilternet2_arch"}
    assert cfg["trainer"]["devices"] == 1  # untouched default


@pytest.mark.parametrize("override,key", [
    ("trainer.max_epoch=3", "trainer.max_epoch"),
    ("optim.lr=fast", "optim.lr"),
    ("data.batch_size=2.5", "data.batch_size"),
    ("data=3", "data"),
    ("trainer.progress_bar=1", "trainer.progress_bar"),
])
def test_invalid_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(key + ":")


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert len(configs) >= 8
    for path in configs:
        load_config(path)


def test_every_command_prints_help(capsys):
    from mal.cli import COMMANDS, main

    for command in [None, *COMMANDS]:
        with pytest.raises(SystemExit) as done:
            main(["--help"] if command is None else [command, "--help"])
        assert done.value.code == 0
    assert "usage: mal" in capsys.readouterr().out


def test_exponent_numbers_without_a_dot_are_numbers():
    """PyYAML reads 5e-5 as a string (YAML 1.1); an override the user types that way is a number."""
    cfg = load_config(None, ["optim.lr=5e-5", "optim.weight_decay=1E-2", "output_dir=runs/5e-5"])
    assert cfg["optim"]["lr"] == 5e-5 and cfg["optim"]["weight_decay"] == 0.01
    assert cfg["output_dir"] == "runs/5e-5"
