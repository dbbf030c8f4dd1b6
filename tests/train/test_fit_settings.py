"""One declaration per fit setting: FitConfig, config.yaml, `tfx fit` and `tfx compare-inits`
are all built from ``train.settings.SETTINGS``, with the same defaults; CLI conventions."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import typer
import yaml
from typer.testing import CliRunner

from transfusion_cli.cli import app, main
from transfusion_cli.commands.fit_flags import with_fit_flags
from transfusion_cli.compare.plan import CELL_FIELDS
from transfusion_cli.errors import ConfigError
from transfusion_cli.train import FitConfig, load_config_file, resolve_config
from transfusion_cli.train.settings import SETTINGS, FitSetting

COMMANDS = typer.main.get_command(app).commands


def options_of(command: str) -> dict:
    """Click parameters of one command, by FitConfig-style name."""
    return {p.name: p for p in COMMANDS[command].params}


def expect_same_default(param, setting: FitSetting) -> None:
    if setting.default is None or isinstance(setting.default, dict):
        assert param.default in (None, []), setting.name
        assert param.show_default == (setting.default_text or False), setting.name
    else:
        assert param.default == setting.default, setting.name
    assert param.help == setting.help
    assert setting.option in param.opts


def test_fit_config_fields_are_the_settings_in_order_with_their_types_and_defaults():
    """FitConfig is a plain dataclass written out for readers; SETTINGS declares each field."""
    fields = dataclasses.fields(FitConfig)
    assert [f.name for f in fields] == [s.name for s in SETTINGS]
    hints = typing.get_type_hints(FitConfig)
    config = FitConfig()
    for setting in SETTINGS:
        assert hints[setting.name] == setting.type, setting.name
        assert getattr(config, setting.name) == setting.default, setting.name
        assert type(getattr(config, setting.name)) is type(setting.default), setting.name
    assert FitConfig().options is not FitConfig().options  # a fresh dict each time


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_a_fit_flag_and_a_compare_inits_flag_or_set_per_cell(setting):
    expect_same_default(options_of("fit")[setting.name], setting)
    compare = options_of("compare-inits")
    if setting.name in CELL_FIELDS:
        flag = CELL_FIELDS[setting.name]
        if flag.startswith("--"):  # the grid's own flag (--arch, --inits, --seeds, ...)
            assert any(flag in p.opts for p in compare.values()), flag
    else:
        expect_same_default(compare[setting.name], setting)


def test_momentum_is_on_fit_and_compare_inits():
    assert "--momentum" in options_of("fit")["momentum"].opts
    assert "--momentum" in options_of("compare-inits")["momentum"].opts


def test_every_setting_is_a_valid_config_key(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(FitConfig().to_dict()))
    assert set(load_config_file(path)) == {s.name for s in SETTINGS}
    assert resolve_config(path) == FitConfig()


def test_declared_checks_apply_to_config_files_and_flags(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("optimizer: adm\n")
    with pytest.raises(ConfigError, match="--optimizer 'adm' is not one of adam, sgd.*'adam'"):
        resolve_config(path)
    with pytest.raises(ConfigError, match="--momentum must be 0 or more"):
        resolve_config(None, {"momentum": -0.5})
    with pytest.raises(ConfigError, match="--lr must be positive"):
        resolve_config(None, {"lr": 0.0})


def test_the_run_length_given_last_wins_in_fit_and_compare_inits(tmp_path):
    from transfusion_cli.commands.compare_cmd import _fit_options

    path = tmp_path / "config.yaml"
    path.write_text("steps: 7\noptions: {a: '1'}\n")
    config = resolve_config(path, {"epochs": 2, "options": {"b": "2"}})
    assert (config.epochs, config.steps, config.options) == (2, None, {"a": "1", "b": "2"})
    shared = _fit_options(path, {"epochs": 2, "options": {"b": "2"}})
    assert shared == {"epochs": 2, "options": {"a": "1", "b": "2"}}


def test_only_flags_given_reach_the_command_even_when_equal_to_the_default():
    seen = {}
    probe = typer.Typer()

    @probe.command()
    @with_fit_flags(["lr", "options", "amp", "overwrite", "device", "out"])
    def command(fit_flags: dict | None = None) -> None:
        seen.clear()
        seen.update(fit_flags)

    runner = CliRunner()
    assert runner.invoke(probe, []).exit_code == 0 and seen == {}
    result = runner.invoke(probe, ["--lr", "0.001", "--option", "a=1", "--no-amp", "--overwrite",
                                   "-o", "runs/x"])
    assert result.exit_code == 0, result.output
    assert seen == {"lr": 0.001, "options": {"a": "1"}, "amp": False, "overwrite": True,
                    "out": "runs/x"}
    assert runner.invoke(probe, ["--device", "gpu"]).exit_code == 2


def all_commands():
    for name, command in COMMANDS.items():
        if hasattr(command, "commands"):
            yield from ((f"{name} {sub}", c) for sub, c in command.commands.items())
        else:
            yield name, command


def test_short_o_means_out_everywhere_and_option_has_no_short_flag():
    for name, command in all_commands():
        for param in command.params:
            opts = list(param.opts) + list(getattr(param, "secondary_opts", []))
            if "-o" in opts:
                assert "--out" in opts, (name, opts)
            if "--option" in opts:
                assert opts == ["--option"], (name, opts)


def device_and_split_flags() -> list[tuple[list[str], str]]:
    """A bad value for every --device and --split of every command."""
    cases = []
    for name, command in all_commands():
        for param in command.params:
            flag = next((o for o in param.opts if o in ("--device", "--split")), None)
            if flag:
                cases.append(([*name.split(), flag, "bogus"], flag))
    return cases


@pytest.mark.parametrize(("args", "flag"), [*device_and_split_flags(), (["list", "widgets"],
                                                                        "kind")])
def test_device_split_and_kind_are_choices(args, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and flag in err and "is not one of" in err, err


@pytest.mark.parametrize("command", ["fit", "compare-inits", "similarity", "filters",
                                     "data show", "data stats", "list"])
def test_help_ends_with_examples(tfx, command):
    result = tfx(*command.split(), "--help")
    assert result.exit_code == 0
    head, _, tail = result.stdout.rpartition("Examples")
    assert head and "╭" not in tail, result.stdout[-600:]  # the help's last section
    assert 1 <= tail.count(f"tfx {command} ") <= 2, tail
