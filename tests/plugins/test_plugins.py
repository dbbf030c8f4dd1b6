"""The plugin system: built-ins through entry points, third-party packages, broken plugins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from registry_helpers import fake_distribution

from transfusion_cli import hookspecs
from transfusion_cli.hookspecs import hookimpl
from transfusion_cli.plugins import (
    OWN_DISTRIBUTION,
    get_registry,
    load_registry,
    new_plugin_manager,
)
from transfusion_cli.registry import ArchitectureSpec

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_PKG = ROOT / "tests" / "plugin_pkg"


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
    source = tmp_path_factory.mktemp("source") / "plugin_pkg"  # the build writes beside it
    shutil.copytree(PLUGIN_PKG, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    return target


def test_third_party_plugin_is_listed_and_usable(tfx, installed_example, third_party_plugins):
    plugins = json.loads(tfx.subprocess("plugins", "--json", pythonpath=[installed_example],
                                        check=True).stdout)
    example = next(p for p in plugins if p["name"] == "example")
    assert example["distribution"] == "tfx-example-plugin" and example["version"] == "0.3.0"
    assert example["builtin"] is False and example["error"] is None
    assert example["registered"]["datasets"] == ["example-stripes"]
    archs = json.loads(tfx.subprocess("list", "architectures", "--json",
                                      pythonpath=[installed_example], check=True).stdout)
    row = next(a for a in archs if a["name"] == "example-twoblock")
    assert row["plugin"] == "example" and row["blocks"] == ["block1", "block2", "head"]
    usable = tfx.subprocess("data", "stats", "--data", "example-stripes", "--json",
                            pythonpath=[installed_example], check=True)
    assert json.loads(usable.stdout)


def test_third_party_plugin_trains(tfx, installed_example, third_party_plugins, tmp_path):
    result = tfx.subprocess("fit", "--data", "example-stripes", "--arch", "example-twoblock",
                            "--steps", "4", "--batch-size", "16", "--out", str(tmp_path / "run"),
                            "--json", pythonpath=[installed_example], check=True)
    summary = json.loads(result.stdout)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    assert summary["run_dir"]


def test_tfx_load_plugins_limits_third_party(tfx, installed_example):
    plugins = json.loads(tfx.subprocess("plugins", "--json", pythonpath=[installed_example],
                                        env={"TFX_LOAD_PLUGINS": ""}, check=True).stdout)
    assert all(p["distribution"] == OWN_DISTRIBUTION for p in plugins)
    plugins = json.loads(tfx.subprocess("plugins", "--json", pythonpath=[installed_example],
                                        env={"TFX_LOAD_PLUGINS": "example"}, check=True).stdout)
    assert any(p["name"] == "example" for p in plugins)


def test_broken_third_party_plugins_do_not_break_the_cli(tfx, tmp_path, third_party_plugins):
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
    help_result = tfx.subprocess("--help", pythonpath=[site], check=True)
    assert "fit" in help_result.stdout
    listing = json.loads(tfx.subprocess("plugins", "--json", pythonpath=[site], check=True).stdout)
    plugins = {p["name"]: p for p in listing}
    assert "module_that_does_not_exist" in plugins["broken-import"]["error"]
    assert "tfx_register_dataset" in plugins["misspelt"]["error"]
    assert plugins["clash"]["error"] is None and plugins["clash"]["warnings"]
    archs = json.loads(tfx.subprocess("list", "architectures", "--json", pythonpath=[site],
                                      check=True).stdout)
    tiny = next(a for a in archs if a["name"] == "cbr-tiny")
    assert tiny["plugin"] == "cbr" and tiny["params"] == 1_079_845


def test_a_plugin_calling_sys_exit_does_not_stop_tfx(tfx, tmp_path, third_party_plugins):
    site = fake_distribution(tmp_path / "site", "tfx-exiting-plugin", {"exits": "exiting_mod"},
                             {"exiting_mod": "import sys\nsys.exit(3)\n"})
    plugins = tfx.subprocess("plugins", "--json", pythonpath=[site])
    assert plugins.exit_code == 0, plugins.stderr
    listed = {p["name"]: p for p in json.loads(plugins.stdout)}
    assert "SystemExit" in listed["exits"]["error"]
    assert listed["cbr"]["error"] is None and "cbr-tiny" in listed["cbr"]["registered"][
        "architectures"]  # the other plugins still loaded


def test_a_misspelt_tfx_load_plugins_name_warns_with_did_you_mean(tfx, tmp_path):
    site = fake_distribution(tmp_path / "site", "tfx-example-extra", {"example": "example_mod"},
                             {"example_mod": "X = 1\n"})
    result = tfx.subprocess("list", "inits", "--json", pythonpath=[site],
                            env={"TFX_LOAD_PLUGINS": "exampel"})
    assert result.exit_code == 0, result.stderr
    assert "TFX_LOAD_PLUGINS" in result.stderr and "Did you mean 'example'?" in result.stderr
    assert json.loads(result.stdout)
