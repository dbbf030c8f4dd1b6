"""The plugin system: built-ins through entry points, third-party packages, broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from registry_helpers import fake_distribution

from transfusion_cli import hookspecs
from transfusion_cli.hookspecs import hookimpl
from transfusion_cli.plugins import OWN_DISTRIBUTION, load_registry, new_plugin_manager
from transfusion_cli.registry import ArchitectureSpec, get_registry

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PKG = ROOT / "tests" / "plugin_pkg"


def run_tfx(*args: str, env_extra: dict[str, str] | None = None, pythonpath: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `tfx` entry point in a subprocess."""
    env = {**os.environ, **(env_extra or {})}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", "transfusion_cli", *args], capture_output=True,
                            text=True, env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result




def test_builtins_load_cleanly_and_come_first():
    registry = get_registry()
    broken = [(p.name, p.error) for p in registry.plugins if p.error]
    assert not broken
    builtin_flags = [p.builtin for p in registry.plugins]
    assert builtin_flags == sorted(builtin_flags, reverse=True)


def test_declared_entry_points_match_plugin_modules():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]["tfx"]
    hooked = set()
    for path in (ROOT / "plugins").rglob("*.py"):
        if path.name != "__init__.py" and "tfx_register_" in path.read_text():
            dotted = str(path.relative_to(ROOT / "plugins").with_suffix("")).replace(os.sep, ".")
            hooked.add(f"tfx_plugins.{dotted}")
    assert set(declared.values()) == hooked


def test_hooks_are_documented_with_exact_signatures():
    import inspect

    doc = (ROOT / "docs" / "plugins.md").read_text()
    for name in dir(hookspecs):
        if name.startswith("tfx_"):
            assert f"`{name}{inspect.signature(getattr(hookspecs, name))}`" in doc, name


def test_misspelt_hook_is_an_error_and_the_plugin_is_skipped():
    class Misspelt:
        @hookimpl
        def tfx_register_architecture(self, register):  # missing "s"
            register(ArchitectureSpec("never", lambda **_: None))

    registry = load_registry(extra_plugins=[("misspelt", Misspelt())])
    info = next(p for p in registry.plugins if p.name == "misspelt")
    assert "tfx_register_architecture" in info.error
    assert "never" not in registry.names("architectures")
    pm = new_plugin_manager()
    pm.register(Misspelt())
    with pytest.raises(Exception, match="unknown hook"):
        pm.check_pending()


def test_duplicate_name_is_reported_and_skipped():
    class Clash:
        @hookimpl
        def tfx_register_architectures(self, register):
            register(ArchitectureSpec("cbr-tiny", lambda **_: None))
            register(ArchitectureSpec("clash-new", lambda **_: None))

    registry = load_registry(extra_plugins=[("clash", Clash())])
    info = next(p for p in registry.plugins if p.name == "clash")
    assert registry.owner("architectures", "cbr-tiny") == "cbr"
    assert any("cbr-tiny" in w for w in info.warnings)
    assert info.registered["architectures"] == ["clash-new"]


def test_plugin_that_raises_is_rolled_back():
    class Raises:
        @hookimpl
        def tfx_register_architectures(self, register):
            register(ArchitectureSpec("half-way", lambda **_: None))
            raise RuntimeError("boom")

    registry = load_registry(extra_plugins=[("raises", Raises())])
    info = next(p for p in registry.plugins if p.name == "raises")
    assert "boom" in info.error
    assert "half-way" not in registry.names("architectures")


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """The example plugin package under tests/ installed by pip into its own target folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(PLUGIN_PKG)],
                   check=True, capture_output=True, timeout=300)
    return target


def test_third_party_plugin_is_listed_and_usable(installed_example, third_party_plugins):
    plugins = json.loads(run_tfx("plugins", "--json", pythonpath=installed_example).stdout)
    example = next(p for p in plugins if p["name"] == "example")
    assert example["distribution"] == "tfx-example-plugin" and example["version"] == "0.3.0"
    assert example["builtin"] is False and example["error"] is None
    assert example["registered"]["datasets"] == ["example-stripes"]
    archs = json.loads(run_tfx("list", "architectures", "--json",
                               pythonpath=installed_example).stdout)
    row = next(a for a in archs if a["name"] == "example-twoblock")
    assert row["plugin"] == "example" and row["blocks"] == ["block1", "block2", "head"]
    usable = run_tfx("data", "stats", "--data", "example-stripes", "--json",
                     pythonpath=installed_example)
    assert json.loads(usable.stdout)


def test_third_party_plugin_trains(installed_example, third_party_plugins, tmp_path):
    result = run_tfx("fit", "--data", "example-stripes", "--arch", "example-twoblock",
                     "--steps", "4", "--batch-size", "16", "--out", str(tmp_path / "run"),
                     "--json", pythonpath=installed_example)
    summary = json.loads(result.stdout)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    assert summary["run_dir"]


def test_tfx_load_plugins_limits_third_party(installed_example):
    plugins = json.loads(run_tfx("plugins", "--json", pythonpath=installed_example,
                                 env_extra={"TFX_LOAD_PLUGINS": ""}).stdout)
    assert all(p["distribution"] == OWN_DISTRIBUTION for p in plugins)
    plugins = json.loads(run_tfx("plugins", "--json", pythonpath=installed_example,
                                 env_extra={"TFX_LOAD_PLUGINS": "example"}).stdout)
    assert any(p["name"] == "example" for p in plugins)


def test_broken_third_party_plugins_do_not_break_the_cli(tmp_path, third_party_plugins):
    site = fake_distribution(
        tmp_path / "site", "tfx-broken-plugins",
        {"broken-import": "broken_import_mod", "misspelt": "misspelt_mod", "clash": "clash_mod"},
        {
            "broken_import_mod": "import module_that_does_not_exist\n",
            "misspelt_mod": """
                from transfusion_cli.hookspecs import hookimpl

                @hookimpl
                def tfx_register_dataset(register):
                    pass
            """,
            "clash_mod": """
                from transfusion_cli.hookspecs import hookimpl
                from transfusion_cli.registry import ArchitectureSpec

                @hookimpl
                def tfx_register_architectures(register):
                    register(ArchitectureSpec("cbr-tiny", lambda **kw: None))
            """,
        })
    help_result = run_tfx("--help", pythonpath=site)
    assert "fit" in help_result.stdout
    listing = json.loads(run_tfx("plugins", "--json", pythonpath=site).stdout)
    plugins = {p["name"]: p for p in listing}
    assert "module_that_does_not_exist" in plugins["broken-import"]["error"]
    assert "tfx_register_dataset" in plugins["misspelt"]["error"]
    assert plugins["clash"]["error"] is None and plugins["clash"]["warnings"]
    archs = json.loads(run_tfx("list", "architectures", "--json", pythonpath=site).stdout)
    tiny = next(a for a in archs if a["name"] == "cbr-tiny")
    assert tiny["plugin"] == "cbr" and tiny["params"] == 1_079_845
