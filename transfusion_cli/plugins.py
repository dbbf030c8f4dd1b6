"""Plugin manager: load the `tfx` entry points (built-ins first), report and skip broken ones."""

from __future__ import annotations

import difflib
import importlib.metadata as md
import os
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from transfusion_cli import hookspecs
from transfusion_cli.registry import KINDS, DuplicateNameError, Registry

OWN_DISTRIBUTION = "tfx"
HOOKS = {kind: f"tfx_register_{kind}" for kind in KINDS}


@dataclass
class PluginInfo:
    """One plugin as `tfx plugins` shows it."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    registered: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form for `--json`."""
        return {
            "name": self.name, "module": self.module, "distribution": self.distribution,
            "version": self.version, "builtin": self.builtin, "registered": self.registered,
            "error": self.error, "warnings": self.warnings,
        }


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows the tfx hookspecs."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _entry_points() -> tuple[list[md.EntryPoint], list[md.EntryPoint]]:
    """(built-in, third-party) entry points of group `tfx`, third-party filtered by env."""
    builtin, third = [], []
    for ep in md.entry_points(group=hookspecs.PROJECT):
        dist = ep.dist.name if ep.dist is not None else ""
        (builtin if dist == OWN_DISTRIBUTION else third).append(ep)
    wanted = os.environ.get("TFX_LOAD_PLUGINS")
    if wanted is not None:
        allowed = {w.strip() for w in wanted.split(",") if w.strip()}
        _warn_unknown_plugin_names(allowed, third)
        third = [ep for ep in third
                 if ep.name in allowed or (ep.dist is not None and ep.dist.name in allowed)]
    return builtin, third


def _warn_unknown_plugin_names(allowed: set[str], third: list[md.EntryPoint]) -> None:
    """A warning (with did-you-mean) for each TFX_LOAD_PLUGINS name no installed plugin has."""
    from transfusion_cli.console import warn

    known = sorted({ep.name for ep in third} | {ep.dist.name for ep in third if ep.dist})
    for name in sorted(allowed - set(known)):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        listed = ", ".join(known) if known else "none"
        warn(f"TFX_LOAD_PLUGINS names '{name}', but no installed plugin has that name.{hint} "
             f"Third-party plugins installed: {listed}.")


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations of ``plugin`` that match no hookspec (misspelt hooks)."""
    return [name for name, caller in pm.hook.__dict__.items()
            if not caller.has_spec() and any(i.plugin is plugin for i in caller.get_hookimpls())]


def register_plugin(pm: pluggy.PluginManager, registry: Registry, info: PluginInfo,
                    module: ModuleType | object) -> None:
    """Register one loaded plugin object and run its hooks into ``registry``.

    A misspelt hook, an exception or a wrong spec type marks the plugin broken and rolls back
    what it registered; a name clash skips that one name with a warning.
    """
    registry.plugins.append(info)
    try:
        pm.register(module, name=info.name)
    except Exception as exc:  # pluggy validation errors, duplicate plugin names
        info.error = f"{type(exc).__name__}: {exc}"
        return
    bad = _unknown_hooks(pm, module)
    if bad:
        pm.unregister(module)
        known = ", ".join(HOOKS.values())
        info.error = f"unknown hook(s) {', '.join(bad)}; the tfx hooks are {known}"
        return
    for kind, hook_name in HOOKS.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            if impl.plugin is not module:
                continue

            def register(spec: Any, _kind: str = kind) -> None:
                try:
                    registry.add(_kind, spec, info.name)
                except DuplicateNameError as exc:
                    info.warnings.append(f"skipped {_kind[:-1]} {exc}")
                    return
                info.registered[_kind].append(spec.name)

            try:
                impl.function(register=register)
            except (Exception, SystemExit) as exc:
                info.error = f"{type(exc).__name__} in {hook_name}: {exc}"
                info.warnings.append(traceback.format_exc(limit=3))
                for k, names in info.registered.items():
                    for n in names:
                        registry.remove(k, n)
                    names.clear()
                pm.unregister(module)
                return


def load_registry(extra_plugins: list[tuple[str, object]] | None = None) -> Registry:
    """Load built-in then third-party plugins (and ``extra_plugins``) into a new registry."""
    pm = new_plugin_manager()
    registry = Registry()
    builtin, third = _entry_points()
    for eps, is_builtin in ((builtin, True), (third, False)):
        for ep in sorted(eps, key=lambda e: e.name) if not is_builtin else eps:
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else "?"
            info = PluginInfo(ep.name, ep.value, dist, version, is_builtin)
            try:
                module = ep.load()
            except (Exception, SystemExit) as exc:  # sys.exit() at import must not end tfx
                info.error = f"{type(exc).__name__} while importing {ep.value}: {exc}"
                registry.plugins.append(info)
                continue
            register_plugin(pm, registry, info, module)
    for name, obj in extra_plugins or []:
        info = PluginInfo(name, getattr(obj, "__name__", repr(obj)), "-", "-", False)
        register_plugin(pm, registry, info, obj)
    return registry
