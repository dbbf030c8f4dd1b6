"""The plugin boundary both ways: plugins import only ``transfusion_cli.api``; the core names
no built-in plugin, so a third-party init or metric gets the checks a built-in one gets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import transfusion_cli.api as api
from transfusion_cli.api import ArchitectureSpec, ConfigError, InitSpec, MetricSpec, hookimpl
from transfusion_cli.registry import get_registry

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCES = [ROOT / "plugins", ROOT / "tests" / "plugin_pkg" / "tfx_example_plugin"]
CORE = ROOT / "transfusion_cli"
# Identifiers that once held built-in plugin names inside the core.
RETIRED = {"CCA_FAMILY", "PRETRAINED_INITS", "MOMENTS_WITHOUT_ROW_NORMS"}
# `tfx reproduce` is the paper's experiment list: it names the paper's arms (random vs
# ImageNet ResNet50, ...) by design, as data, and adds no behaviour to any init or metric.
PAPER_RECIPE = CORE / "reproduce"
# The same word meaning something else: (file, value) -> what it means there.
HOMONYMS = {
    ("transfusion_cli/evaluation/evaluate.py", "checkpoint"): "the input kind (.pt vs .onnx)",
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


def test_plugins_import_only_the_public_api():
    files = python_files(*PLUGIN_SOURCES)
    assert len(files) > 10
    offending = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for path in files
                 for line, module in imported_modules(ast.parse(path.read_text()))
                 if module.split(".")[0] == "transfusion_cli" and module != "transfusion_cli.api"]
    assert offending == []


def test_public_api_names_all_exist():
    assert sorted(set(api.__all__)) == sorted(api.__all__)
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []


def built_in_names() -> set[str]:
    """Names the built-in plugins registered (inits, metrics, datasets, architectures) and the
    architecture families they build."""
    registry = get_registry()
    names = {n for kind in ("inits", "metrics", "datasets", "architectures")
             for n in registry.names(kind) if "*" not in n}
    names |= {spec.family for spec in registry.specs("architectures") if spec.family}
    assert {"checkpoint", "transfusion", "svcca", "cbr", "timm"} <= names
    return names


def _constants(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [v for element in node.elts for v in _constants(element)]
    return []


def special_cases(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """Comparisons (==, !=, in, not in, match cases) against a built-in plugin's name, and
    retired identifiers."""
    found = []
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
    names = built_in_names()
    offending = [f"{path.relative_to(ROOT)}:{line} special-cases {value!r}"
                 for path in python_files(CORE) if PAPER_RECIPE not in path.parents
                 for line, value in special_cases(ast.parse(path.read_text()), names)
                 if (str(path.relative_to(ROOT)), value) not in HOMONYMS]
    assert offending == []


def test_special_case_detector_finds_what_it_looks_for():
    names = {"checkpoint", "svcca", "cbr"}
    source = ('"""checkpoint in a docstring is fine."""\n'
              'if name == "checkpoint": pass\n'
              'if family in ("cbr", "other"): pass\n'
              'ok = {"svcca": 1}["svcca"]\n'
              'x = CCA_FAMILY\n')
    assert special_cases(ast.parse(source), names) == [(2, "checkpoint"), (3, "cbr"),
                                                       (5, "CCA_FAMILY")]


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
    from transfusion_cli.similarity.analysis import compare_models

    calls = []
    hungry = MetricSpec("my-cca", lambda x, y: calls.append(1) or 1.0,
                        needs_more_points_than_neurons=True)
    relaxed = MetricSpec("my-cka", lambda x, y: calls.append(1) or 1.0)
    torch.manual_seed(0)
    model = get_registry().get("architectures", "cbr-tiny").build(num_classes=2, in_chans=3)
    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)

    def run(metric):
        return compare_models(model, model, [batch], prepare_a=lambda b: b.float() / 255,
                              prepare_b=lambda b: b.float() / 255, pairs=[("block4", "block4")],
                              metrics=[metric], inputs=4)

    with pytest.raises(SimilarityError, match="my-cca need more points than neurons"):
        run(hungry)
    assert calls == []
    assert run(relaxed)[0].metrics["my-cka"].value == 1.0
