"""The one-way layers of docs/architecture.md hold: import-linter's contract in .importlinter
(also run by .ci/run as `lint-imports`)."""

from __future__ import annotations

from pathlib import Path

import pytest

lint = pytest.importorskip("importlinter.cli", reason="import-linter is in the dev extra")

ROOT = Path(__file__).resolve().parents[2]


def test_layers_contract_is_kept(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = lint.lint_imports(config_filename=str(ROOT / ".importlinter"), no_cache=True,
                             no_logo=True)
    assert code == lint.EXIT_STATUS_SUCCESS, capsys.readouterr().out


def test_every_layer_named_in_the_contract_is_documented():
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    layers = parser["importlinter:contract:layers"]["layers"]
    names = {n.strip(" ()") for line in layers.split("\n") if line.strip()
             for n in line.replace(":", "|").split("|")}
    drawing = (ROOT / "docs" / "architecture.md").read_text()
    assert not [n for n in names if n not in drawing]
