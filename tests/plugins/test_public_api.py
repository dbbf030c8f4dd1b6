"""The plugin boundary both ways: plugins import only the contract, ``transfusion_cli.api``,
which docs/plugins.md documents name by name; the core names no built-in plugin, so a
third-party init, metric or preprocessing step gets the checks a built-in one gets."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import transfusion_cli.api as api
from transfusion_cli.api import ArchitectureSpec, ConfigError, InitSpec, MetricSpec, hookimpl
from transfusion_cli.plugins import get_registry

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SOURCES = [ROOT / "plugins", ROOT / "tests" / "plugin_pkg" / "tfx_example_plugin"]
CORE = ROOT / "transfusion_cli"
PLUGIN_DOCS = ROOT / "docs" / "plugins.md"
# Identifiers that once held built-in plugin names inside the core.
RETIRED = {"CCA_FAMILY", "PRETRAINED_INITS", "MOMENTS_WITHOUT_ROW_NORMS"}
# `tfx reproduce` is the paper's experiment list: it names the paper's arms (random vs
# ImageNet ResNet50, ...) by design, as data, and adds no behaviour to any init or metric.
PAPER_RECIPE = CORE / "reproduce"
# The same word meaning something else: (file, value) -> what it means there.
HOMONYMS = {
    ("transfusion_cli/evaluation/evaluate.py", "checkpoint"): "the input kind (.pt vs .onnx)",
    ("transfusion_cli/data/bundles.py", "fundus_crop"): "tfx 0.1's checkpoint key, read as a step",
}


def python_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, nested ones included."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "transfusion_cli":  # `from transfusion_cli import x`
                found += [(node.lineno, f"transfusion_cli.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def test_plugins_import_only_the_contract():
    files = python_files(*PLUGIN_SOURCES)
    assert len(files) > 10
    offending = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for path in files
                 for line, module in imported_modules(ast.parse(path.read_text()))
                 if module.split(".")[0] == "transfusion_cli" and module != "transfusion_cli.api"]
    assert offending == []


def test_contract_names_all_exist():
    assert sorted(set(api.__all__)) == sorted(api.__all__)
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []


def documented_contract() -> list[str]:
    """The names in the first column of the table under docs/plugins.md's contract heading."""
    text = PLUGIN_DOCS.read_text()
    section = text.split("## The contract: `transfusion_cli.api`", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("| `") and len(cells) > 2:
            names += re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cells[1])
    return names


def test_the_contract_is_exactly_what_docs_plugins_md_documents():
    documented = documented_contract()
    assert len(documented) == len(set(documented)), "a name is documented twice"
    assert sorted(documented) == sorted(api.__all__)


def test_the_contract_is_what_plugins_use():
    """No name in the contract that neither tfx's plugins nor the example use (notebook
    conveniences belong in transfusion_cli.notebook); ``warn`` completes ``info``, and
    ``TfxModel`` documents what an architecture's model carries (for hints)."""
    used = set()
    for path in python_files(*PLUGIN_SOURCES):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "transfusion_cli.api":
                used |= {alias.name for alias in node.names}
    assert set(api.__all__) - used <= {"warn", "TfxModel"}
    assert used <= set(api.__all__)


def test_importing_the_contract_loads_no_torch():
    """A plugin that imports only the hook marker and the specs stays light: `tfx predict`
    imports the built-in fundus step's plugin without torch."""
    code = ("import sys, transfusion_cli.api, tfx_plugins.preprocess.fundus; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_notebook_conveniences_all_exist():
    from transfusion_cli import notebook

    assert not set(notebook.__all__) & {"hookimpl", "DatasetSpec"}  # not a second contract
    assert [name for name in notebook.__all__ if not hasattr(notebook, name)] == []


def built_in_names() -> set[str]:
    """Names the built-in plugins registered (inits, metrics, datasets, architectures,
    preprocessing steps) and the architecture families they build."""
    registry = get_registry()
    names = {n for kind in ("inits", "metrics", "datasets", "architectures", "preprocessing")
             for n in registry.names(kind) if "*" not in n}
    names |= {spec.family for spec in registry.specs("architectures") if spec.family}
    assert {"checkpoint", "transfusion", "svcca", "cbr", "timm", "fundus_crop"} <= names
    return names


def built_in_inits() -> set[str]:
    """Names of the built-in inits."""
    names = set(get_registry().names("inits"))
    assert {"random", "imagenet"} <= names
    return names


def _constants(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [v for element in node.elts for v in _constants(element)]
    return []


def special_cases(tree: ast.AST, names: set[str], inits: frozenset[str] = frozenset()
                  ) -> list[tuple[int, str]]:
    """Comparisons (==, !=, in, not in, match cases) against a built-in plugin's name, retired
    identifiers, and module-level constants holding a built-in init's name (``RANDOM =
    "random"``: the init that plays a role is the one whose spec says so, e.g.
    ``InitSpec.baseline``)."""
    found = []
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            found += [(node.lineno, v) for v in _constants(node.value) if v in inits]
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                found += [(node.lineno, v) for v in _constants(operand) if v in names]
        elif isinstance(node, ast.MatchValue):
            found += [(node.lineno, v) for v in _constants(node.value) if v in names]
        elif isinstance(node, ast.Name) and node.id in RETIRED:
            found.append((node.lineno, node.id))
    return found


def test_core_names_no_built_in_plugin():
    names, inits = built_in_names(), frozenset(built_in_inits())
    offending = [f"{path.relative_to(ROOT)}:{line} special-cases {value!r}"
                 for path in python_files(CORE) if PAPER_RECIPE not in path.parents
                 for line, value in special_cases(ast.parse(path.read_text()), names, inits)
                 if (str(path.relative_to(ROOT)), value) not in HOMONYMS]
    assert offending == []


def test_special_case_detector_finds_what_it_looks_for():
    names = {"checkpoint", "svcca", "cbr"}
    source = ('"""checkpoint in a docstring is fine."""\n'
              'if name == "checkpoint": pass\n'
              'if family in ("cbr", "other"): pass\n'
              'ok = {"svcca": 1}["svcca"]\n'
              'x = CCA_FAMILY\n'
              'BASELINE = "random"\n'
              'LABEL: str = ("random", "other")\n')
    assert special_cases(ast.parse(source), names, frozenset({"random"})) == [
        (6, "random"), (7, "random"), (2, "checkpoint"), (3, "cbr"), (5, "CCA_FAMILY")]


# ----- the spec fields do the work for third-party plugins too --------------------------------

def _apply_nothing(model, context):
    return {"loaded": [], "reinitialised": [], "skipped": [], "source": None}


class ThirdPartyInits:
    """Inits a third party could write, with the spec fields built-ins use."""

    @hookimpl
    def tfx_register_inits(self, register):
        register(InitSpec("my-pretrained", _apply_nothing, "needs weights", needs_weights=True))
        register(InitSpec("my-depth", _apply_nothing, "takes a depth", takes_argument=True,
                          argument_name="DEPTH", check_argument=_check_depth))


def _check_depth(argument: str, arch: ArchitectureSpec) -> str:
    if not argument.isdigit():
        raise ConfigError(f"my-depth:{argument} on '{arch.name}': DEPTH must be a number.")
    return str(int(argument))  # normalised: "007" -> "7"


def _plan(inits, weights=None):
    from transfusion_cli.compare import make_plan

    return make_plan(data="synthetic-retina", archs=["cbr-tiny"], inits=inits, seeds=[0],
                     train_sizes=[None], fit={"steps": 1}, weights=weights)


def test_third_party_init_gets_the_weights_and_argument_checks(fake_registry, tmp_path):
    fake_registry(ThirdPartyInits())
    with pytest.raises(ConfigError, match="my-pretrained.*needs pretrained weights"):
        _plan(["my-pretrained"])
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    assert _plan(["my-pretrained"], [str(weights)]).cells[0].init == "my-pretrained"
    with pytest.raises(ConfigError, match="needs an argument: write my-depth:DEPTH"):
        _plan(["my-depth"])
    with pytest.raises(ConfigError, match="DEPTH must be a number"):
        _plan(["my-depth:x"])
    cell = _plan(["my-depth:007"]).cells[0]
    assert (cell.init, cell.label) == ("my-depth:7", "my-depth:007")


def test_third_party_metric_that_needs_points_fails_early():
    from transfusion_cli.similarity import SimilarityError
    from transfusion_cli.similarity.analysis import compare_representations

    calls = []
    hungry = MetricSpec("my-cca", lambda x, y: calls.append(1) or 1.0,
                        needs_more_points_than_neurons=True)
    relaxed = MetricSpec("my-cka", lambda x, y: calls.append(1) or 1.0)
    torch.manual_seed(0)
    model = get_registry().get("architectures", "cbr-tiny").build(num_classes=2, in_chans=3)
    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)

    def run(metric):
        return compare_representations(model, model, [batch],
                                       prepare_a=lambda b: b.float() / 255,
                                       prepare_b=lambda b: b.float() / 255,
                                       pairs=[("block4", "block4")], metrics=[metric], inputs=4)

    with pytest.raises(SimilarityError, match="my-cca need more points than neurons"):
        run(hungry)
    assert calls == []
    assert run(relaxed)[0].metrics["my-cka"].value == 1.0


def test_the_duplicate_check_is_public_api():
    import transfusion_cli.api as api

    assert "reject_duplicates" in api.__all__
    assert json.dumps(api.reject_duplicates.__doc__)
