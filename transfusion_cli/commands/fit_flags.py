"""Command-line flags built from the fit settings (``train.settings.SETTINGS``).

``@with_fit_flags(names)`` adds one typer option per setting to a command and hands the command the
values given as one ``fit_flags`` dict (FitConfig field -> value; settings not given are left
out), so `tfx fit` and `tfx compare-inits` never declare a fit setting themselves. A command
that declares ``ctx: typer.Context`` gets the click context as usual.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import typer

from transfusion_cli.commands.options import was_given
from transfusion_cli.train.settings import SETTINGS, FitSetting, flag_value

PARAMETER = "fit_flags"
CONTEXT = "tfx_fit_flags_context"  # typer passes the click context here...
OWN_CONTEXT = "ctx"  # ...or here, when the command declares it


def _cli_type(setting: FitSetting) -> Any:
    if setting.path:
        return Path
    if setting.key_values:
        return list[str]
    if setting.choices:
        return Literal[setting.choices]
    args = [a for a in getattr(setting.type, "__args__", (setting.type,)) if a is not type(None)]
    return args[0]


def setting_option(setting: FitSetting, panel: str | None = None) -> inspect.Parameter:
    """The typer parameter of one setting, with the setting's default (or, where None means
    "decided later", the text saying how) shown the way every command shows defaults."""
    names = [setting.option + (f"/--no-{setting.option[2:]}" if setting.type == bool | None
                               else "")]
    if setting.short:
        names.append(setting.short)
    real = setting.default is not None and not isinstance(setting.default, dict)
    option = typer.Option(setting.default if real else None, *names, help=setting.help,
                          show_default=True if real else (setting.default_text or False),
                          rich_help_panel=panel or setting.panel, metavar=setting.metavar)
    return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=_cli_type(setting))


def with_fit_flags(names: Iterable[str] | None = None, panel: str | None = None) -> Callable:
    """Decorator: the command gains a flag per fit setting in ``names`` (all when None) and
    receives them as ``fit_flags``: only those given on the command line, so that a --config
    file's values are not overridden by defaults."""
    chosen = [s for s in SETTINGS if names is None or s.name in set(names)]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != PARAMETER]
        taken = {p.name for p in own}
        added = [setting_option(s, panel) for s in chosen if s.name not in taken]
        own_context = OWN_CONTEXT in taken

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            context = kwargs.get(OWN_CONTEXT) if own_context else kwargs.pop(CONTEXT, None)
            given = {}
            for setting in chosen:
                if setting.name in taken:
                    continue
                value = flag_value(setting, kwargs.pop(setting.name, None))
                if value is not None and was_given(context, setting.name):
                    given[setting.name] = value
            return command(**kwargs, **{PARAMETER: given})

        context = [] if own_context else [inspect.Parameter(
            CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
        run.__signature__ = signature.replace(parameters=[*own, *added, *context])
        return run

    return decorate
