"""Options that several commands share, declared once: ``--json``, ``--data-dir``, ``--out``,
``--device``, ``--split``, ``--option``, ``--measure``, the SLURM flags, and the ONNX
decision flags of predict and serve (``--provider``, ``--threshold``, ``--operating-point``).

A command uses the factory (``json_option(help)``) as its parameter's default, with the matching
annotation (``Device``, ``Split``); the flag names, types and defaults come from here, only the
help sentence may say what the option means for that command.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Literal

import typer

from transfusion_cli.compare.executors import EXECUTORS, SLURM_FLAG_NAMES, SlurmOptions
from transfusion_cli.data import SPLITS
from transfusion_cli.train.settings import DEVICES

Device = Literal[DEVICES]
Split = Literal[SPLITS]
Executor = Literal[EXECUTORS]


class Provider(StrEnum):
    """onnxruntime execution provider."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def json_option(help: str = "Print JSON on stdout instead of tables.") -> Any:
    """``--json``: machine-readable output on stdout."""
    return typer.Option(False, "--json", help=help)


def out_option(default: Any = None, help: str = "Where to write.",
               show_default: bool | str = True) -> Any:
    """``--out`` / ``-o``: what the command writes (``...`` as default: required)."""
    return typer.Option(default, "--out", "-o", help=help, show_default=show_default)


def data_dir_option(help: str = "Folder with the dataset's files.",
                    show_default: bool | str = False) -> Any:
    """``--data-dir``: where a dataset's files are."""
    return typer.Option(None, "--data-dir", help=help, show_default=show_default)


def dataset_option_option(help: str = "Dataset option, repeatable (e.g. "
                                      "uncertainty=u-ones).") -> Any:
    """``--option KEY=VALUE`` (repeatable): a dataset option."""
    return typer.Option([], "--option", metavar="KEY=VALUE", help=help)


def device_option(help: str = "Where to run; auto: CUDA if present.") -> Any:
    """``--device auto|cpu|cuda`` (annotate with ``Device``)."""
    return typer.Option("auto", "--device", help=help)


def provider_option() -> Any:
    """``--provider auto|cpu|cuda`` (annotate with ``Provider``): onnxruntime's provider."""
    return typer.Option(Provider.auto, "--provider",
                        help="auto: CUDA when it can be created, else CPU.")


def threshold_option() -> Any:
    """``--threshold P``: decide at this probability instead of the validated operating
    point."""
    return typer.Option(
        None, "--threshold", min=0.0, max=1.0,
        help="Decide referable / positive at this probability instead of the model's "
             "validated operating point (reported as set by the user, not validated).",
        show_default="the operating point `tfx evaluate` chose, else an uncalibrated 0.5")


def operating_point_option(help: str = "Decide at this stored operating point (e.g. "
                                       "sens95).") -> Any:
    """``--operating-point NAME``: one of the operating points stored at export."""
    return typer.Option(None, "--operating-point", help=help, show_default="the first stored")


def seed_option(help: str) -> Any:
    """``--seed N``: a seed in numpy's range, 0 to 2**32 - 1 (checked as the flags are read)."""
    from transfusion_cli.limits import MAX_SEED

    return typer.Option(0, "--seed", min=0, max=MAX_SEED, help=help)


def split_option(default: str, help: str) -> Any:
    """``--split train|val|test`` (annotate with ``Split``)."""
    return typer.Option(default, "--split", help=help)


# ---------------------------------------------------------------------------- --measure

def measure_option(default: str, help: str, *short: str) -> Any:
    """``--measure``: the representation-similarity measure(s) (`tfx list metrics`), never a
    classification score (that is ``--metric`` of `tfx compare-inits`)."""
    return typer.Option(default, "--measure", *short, help=help)


def metric_alias_option() -> Any:
    """The deprecated spelling of ``--measure`` (hidden; one release, then removed)."""
    return typer.Option(None, "--metric", hidden=True,
                        help="Deprecated spelling of --measure.")


def chosen_measure(measure: str, metric_alias: str | None, default: str, command: str) -> str:
    """``--measure``, or the value given with the deprecated ``--metric`` (with a warning)."""
    from transfusion_cli.console import warn
    from transfusion_cli.errors import ConfigError

    if metric_alias is None:
        return measure
    if measure not in (default, metric_alias):
        raise ConfigError(f"`tfx {command}`: give --measure only (--metric is its deprecated "
                          "spelling).")
    warn(f"`tfx {command} --metric` is deprecated and will be removed in the next release; "
         "use --measure.")
    return metric_alias


# ---------------------------------------------------------------------------- flag groups


def was_given(context: typer.Context | None, name: str) -> bool:
    """Whether parameter ``name`` was given (not filled in from its default)."""
    if context is None:  # called as a plain function
        return True
    source = context.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def add_parameters(command: Callable, added: list[inspect.Parameter], into: str,
                   collect: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable:
    """``command`` with ``added`` parameters in its signature; at each call ``collect`` turns
    their values (removed from the keyword arguments) into the one dict handed over as
    ``into``."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != into]
    names = {p.name for p in added}

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in names if name in kwargs}
        return command(**kwargs, **{into: collect(values)})

    run.__signature__ = signature.replace(parameters=[*own, *added])
    return run


# ---------------------------------------------------------------------------- SLURM

SLURM_PANEL = "SLURM (--executor slurm)"
# SlurmOptions fields whose flag is not --field-name, hidden ones, and those set another way.
SLURM_HIDDEN = {"cluster"}  # submitit's local/debug backends: for tests
SLURM_SET_BY = {"max_parallel": "--jobs"}
SLURM_PARAMETER = "slurm_flags"


def _without_none(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def slurm_flag(name: str) -> str:
    """The flag of SlurmOptions field ``name``."""
    return SLURM_FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def slurm_parameters(panel: str = SLURM_PANEL) -> list[inspect.Parameter]:
    """One typer parameter per SlurmOptions field (named as the field), default None = not
    given; the field's default is what the help shows."""
    hints = typing.get_type_hints(SlurmOptions)
    parameters = []
    for field in dataclasses.fields(SlurmOptions):
        if field.name in SLURM_SET_BY:
            continue
        shown = "the cluster's" if field.default is None else str(field.default)
        option = typer.Option(None, slurm_flag(field.name), help=field.metadata["help"],
                              rich_help_panel=panel, hidden=field.name in SLURM_HIDDEN,
                              show_default=shown)
        parameters.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY,
                                            default=option,
                                            annotation=_without_none(hints[field.name]) | None))
    return parameters


def with_slurm_flags(panel: str = SLURM_PANEL) -> Callable:
    """Decorator: the command gains one flag per SlurmOptions field and receives those given
    as ``slurm_flags`` (field -> value), for ``SlurmOptions.overridden(**slurm_flags)``."""

    def decorate(command: Callable) -> Callable:
        return add_parameters(command, slurm_parameters(panel), SLURM_PARAMETER,
                              lambda values: {k: v for k, v in values.items() if v is not None})

    return decorate


def executor_option(local: str) -> Any:
    """``--executor local|slurm`` (annotate with ``Executor``); ``local`` says what local
    means for the command."""
    return typer.Option("local", "--executor", help=f"local ({local}) or slurm (a job array "
                        "through submitit: pip install 'transfusion-cli[slurm]').")

