"""Finds the packages (plugins/ installs as tfx_plugins) and ships model_zoo.yaml in the wheel."""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


class BuildPyWithZoo(build_py):
    """build_py that also copies model_zoo.yaml (a top-level data file) into the package."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "transfusion_cli" / "model_zoo.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / "model_zoo.yaml", target)


def discovered_packages() -> list[str]:
    """Every package under transfusion_cli/ and plugins/, so a new subpackage is never left out."""
    core = find_packages(where=str(HERE), include=["transfusion_cli", "transfusion_cli.*"])
    plugins = find_packages(where=str(HERE), include=["plugins", "plugins.*"])
    return core + ["tfx_plugins" + name[len("plugins"):] for name in plugins]


setup(packages=discovered_packages(), cmdclass={"build_py": BuildPyWithZoo},
      # The built-in `tfx reproduce` profiles (smoke, paper) and the paper's evidence file
      # (`tfx reproduce --judge paper`) are data files of the package.
      package_data={"transfusion_cli.reproduce": ["profiles/*.yaml",
                                                    "paper_evidence.json"],
                    # The `tfx serve` page: HTML, script and styles, served from the package.
                    "transfusion_cli.deploy.serve": ["static/*"]})
