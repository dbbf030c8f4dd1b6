"""Options shared by several commands are declared once (commands/options.py): the SLURM flags
of compare-inits and reproduce come from SlurmOptions, --json / --device / --split / --option
mean the same everywhere, and the CLI reaches typer only through its public API."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from transfusion_cli.cli import app
from transfusion_cli.commands.options import (
    SLURM_SET_BY,
    chosen_measure,
    slurm_flag,
    with_slurm_flags,
)
from transfusion_cli.compare.executors import SlurmOptions
from transfusion_cli.data import SPLITS
from transfusion_cli.errors import ConfigError
from transfusion_cli.train.settings import DEVICES

ROOT = Path(__file__).resolve().parents[2]
TREE = typer.main.get_command(app)
SLURM_FIELDS = [f.name for f in dataclasses.fields(SlurmOptions) if f.name not in SLURM_SET_BY]


def leaf_commands(command=TREE, path=()):
    for name, sub in getattr(command, "commands", {}).items():
        if hasattr(sub, "commands"):
            yield from leaf_commands(sub, (*path, name))
        else:
            yield " ".join((*path, name)), sub


def value_type(param) -> str:
    """What a parameter takes (duck-typed: typer may vendor its own click)."""
    descriptor = getattr(param, "type_descriptor", None)
    return str(descriptor.annotation if descriptor is not None else param.type.name)


def choices(param) -> tuple[str, ...] | None:
    descriptor = getattr(param, "type_descriptor", None)
    found = descriptor.choices if descriptor is not None else getattr(param.type, "choices",
                                                                      None)
    return tuple(found) if found else None


def slurm_params(command: str) -> dict[str, tuple]:
    params = {p.name: p for p in TREE.commands[command].params}
    return {name: (tuple(params[name].opts), params[name].hidden, params[name].help,
                   value_type(params[name]), params[name].default)
            for name in SLURM_FIELDS}


def test_compare_inits_and_reproduce_have_the_same_slurm_flags_from_slurm_options():
    compare, reproduce = slurm_params("compare-inits"), slurm_params("reproduce")
    assert compare == reproduce
    for field in dataclasses.fields(SlurmOptions):
        if field.name in SLURM_SET_BY:
            continue
        opts, hidden, help_text, _, default = compare[field.name]
        assert opts == (slurm_flag(field.name),) and help_text == field.metadata["help"]
        assert default is None  # None = not given: the profile's or SlurmOptions' value stays
    assert "--cpus-per-cell" in compare["cpus_per_cell"][0]
    assert compare["cluster"][1] and not compare["partition"][1]  # only the backend is hidden
    for name, flag in SLURM_SET_BY.items():  # e.g. max_parallel: --jobs
        assert any(flag in p.opts for p in TREE.commands["compare-inits"].params), name
        assert any(flag in p.opts for p in TREE.commands["reproduce"].params), name


def test_slurm_flags_given_reach_slurm_options_typed():
    seen = {}
    probe = typer.Typer()

    @probe.command()
    @with_slurm_flags()
    def command(slurm_flags: dict | None = None) -> None:
        seen.clear()
        seen.update(slurm_flags)

    runner = CliRunner()
    assert runner.invoke(probe, []).exit_code == 0 and seen == {}
    result = runner.invoke(probe, ["--cpus-per-cell", "4", "--mem-gb", "16.5", "--time-min",
                                   "30", "--slurm-cluster", "debug"])
    assert result.exit_code == 0, result.output
    assert seen == {"cpus_per_cell": 4, "mem_gb": 16.5, "time_min": 30, "cluster": "debug"}
    options = SlurmOptions(partition="gpu").overridden(**{**seen, "gpus_per_cell": 2})
    assert (options.partition, options.cpus_per_cell, options.mem_gb, options.time_min) == \
        ("gpu", 4, 16.5, 30)
    assert runner.invoke(probe, ["--cpus-per-cell", "four"]).exit_code == 2


def params_named(flag: str):
    return [(name, p) for name, command in leaf_commands() for p in command.params
            if flag in p.opts]


def test_shared_options_mean_the_same_in_every_command():
    json_flags = params_named("--json")
    assert len(json_flags) >= 12
    assert all(p.is_flag and p.default is False for _, p in json_flags)
    for name, param in params_named("--device"):
        assert choices(param) == DEVICES and param.default == "auto", name
    for name, param in params_named("--split"):
        assert choices(param) == SPLITS, name
    options = params_named("--option")
    assert len(options) >= 5
    for name, param in options:
        assert param.multiple and param.metavar == "KEY=VALUE" and param.opts == ["--option"], \
            name
    for name, param in params_named("--out"):
        assert "-o" in param.opts, name
    executors = params_named("--executor")
    assert {name for name, _ in executors} == {"compare-inits", "reproduce"}
    assert all(choices(p) == ("local", "slurm") for _, p in executors)


def test_measure_is_the_similarity_flag_and_metric_its_hidden_deprecated_alias():
    for command in ("similarity", "figures"):
        params = {p.name: p for p in TREE.commands[command].params}
        measure = next(p for p in params.values() if "--measure" in p.opts)
        alias = next(p for p in params.values() if "--metric" in p.opts)
        assert not measure.hidden and alias.hidden and alias.default is None, command
    metric = next(p for p in TREE.commands["compare-inits"].params if "--metric" in p.opts)
    assert not metric.hidden and "classification score" in metric.help


def test_chosen_measure_warns_for_the_old_spelling(capsys):
    assert chosen_measure("cca", None, "cca", "figures") == "cca"
    assert capsys.readouterr().err == ""
    assert chosen_measure("cca", "cka", "cca", "figures") == "cka"
    assert "deprecated" in capsys.readouterr().err
    assert chosen_measure("cka", "cka", "cca", "figures") == "cka"
    with pytest.raises(ConfigError, match="give --measure only"):
        chosen_measure("svcca", "cka", "cca", "figures")


PRIVATE_TYPER = re.compile(r"\btyper\._|from typer import _|\bimport click\b|\bfrom click\b")


def test_the_cli_uses_only_typers_public_api():
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in sorted((ROOT / "transfusion_cli").rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if PRIVATE_TYPER.search(line)]
    assert offenders == []
