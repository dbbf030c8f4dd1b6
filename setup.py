"""Ships the top-level model_zoo.yaml inside the `transfusion_cli` package of a built wheel."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithZoo(build_py):
    """build_py that also copies model_zoo.yaml (a top-level data file) into the package."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "transfusion_cli" / "model_zoo.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(__file__).parent / "model_zoo.yaml", target)


setup(cmdclass={"build_py": BuildPyWithZoo})
