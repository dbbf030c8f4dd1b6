"""Plugin manager: load the `tfx` entry points (built-ins first), report and skip broken ones."""

from __future__ import annotations

import difflib
import importlib.metadata as md
import re
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from transfusion_cli import env, hookspecs
from transfusion_cli.errors import MissingExtraError, UnknownNameError, missing_extra
from transfusion_cli.registry import KINDS, DuplicateNameError, Registry

# The distribution (pip name) that ships the built-in plugins. The entry-point group stays
# `tfx` (hookspecs.PROJECT): third-party plugins declare `[project.entry-points.tfx]`.
OWN_DISTRIBUTION = "transfusion-cli"
LOAD_PLUGINS_ENV = "TFX_LOAD_PLUGINS"
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
    # Why it could not be imported when an optional extra is missing (e.g. torch in the
    # predict-only install): the one-line message naming the extra.
    missing_extra: str | None = None

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
        (builtin if _normalized(dist) == OWN_DISTRIBUTION else third).append(ep)
    if env.is_set(LOAD_PLUGINS_ENV):
        allowed = set(env.value(LOAD_PLUGINS_ENV) or ())
        _warn_unknown_plugin_names(allowed, third)
        third = [ep for ep in third
                 if ep.name in allowed or (ep.dist is not None and ep.dist.name in allowed)]
    return builtin, third


def _normalized(distribution: str) -> str:
    """A distribution name as the package index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


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
                    info.warnings.append(f"skipped {_kind.removesuffix('s')} {exc}")
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
            _load_entry_point(pm, registry, ep, is_builtin)
    for name, obj in extra_plugins or []:
        info = PluginInfo(name, getattr(obj, "__name__", repr(obj)), "-", "-", False)
        register_plugin(pm, registry, info, obj)
    return registry


def load_plugin(name: str) -> Registry | None:
    """A registry of the one installed plugin called ``name`` (its entry-point name), or None
    when none is: `tfx predict` loads only the plugin behind a model's preprocessing step."""
    builtin, third = _entry_points()
    for eps, is_builtin in ((builtin, True), (third, False)):
        for ep in eps:
            if ep.name == name:
                registry = Registry()
                _load_entry_point(new_plugin_manager(), registry, ep, is_builtin)
                return registry
    return None


def _load_entry_point(pm: pluggy.PluginManager, registry: Registry, ep: md.EntryPoint,
                      builtin: bool) -> None:
    """Import one entry point's module and register it (an import failure marks it broken)."""
    dist = ep.dist.name if ep.dist is not None else "?"
    version = ep.dist.version if ep.dist is not None else "?"
    info = PluginInfo(ep.name, ep.value, dist, version, builtin)
    try:
        module = ep.load()
    except (Exception, SystemExit) as exc:  # sys.exit() at import must not end tfx
        info.error = f"{type(exc).__name__} while importing {ep.value}: {exc}"
        missing = missing_extra(exc)
        info.missing_extra = str(missing) if missing is not None else None
        registry.plugins.append(info)
        return
    register_plugin(pm, registry, info, module)


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loading the plugins on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry()
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    """Drop (or replace) the process-wide registry; tests use it to add and remove fakes."""
    global _REGISTRY
    _REGISTRY = registry


def get(kind: str, name: str) -> Any:
    """The spec of ``kind`` called ``name`` in the process-wide registry
    (``get_registry().get(kind, name)``); an unknown name while a built-in plugin could not
    load for a missing extra is that MissingExtraError (install the extra, not a typo)."""
    registry = get_registry()
    try:
        return registry.get(kind, name)
    except UnknownNameError:
        missing = next((p for p in registry.plugins if p.builtin and p.missing_extra), None)
        if missing is None:
            raise
        raise MissingExtraError(f"'{name}' is unknown because the built-in plugin "
                                f"'{missing.name}' could not load. {missing.missing_extra}"
                                ) from None
