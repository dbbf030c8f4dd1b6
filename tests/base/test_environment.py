"""Every environment variable tfx reads is parsed in one place (transfusion_cli/env.py), a bad
value is one `Error:` line naming it before any work, and docs/environment.md lists exactly
those variables (issue 20, items 10 and 21)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from input_files import flat_png, log_mean_model
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli import env
from transfusion_cli.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "environment.md"


@pytest.mark.parametrize(("name", "value"), [
    ("TFX_MAX_IMAGE_PIXELS", "inf"),
    ("TFX_MAX_IMAGE_PIXELS", "1e400"),
    ("TFX_MAX_IMAGE_PIXELS", "0"),
    ("TFX_MAX_IMAGE_PIXELS", "-5"),
    ("TFX_MAX_IMAGE_PIXELS", "nan"),
    ("TFX_MAX_IMAGE_PIXELS", "1e20"),
    ("TFX_MAX_IMAGE_SIZE", "²"),
    ("TFX_MAX_IMAGE_SIZE", "٣٢"),  # Arabic-Indic digits: str.isdigit() says yes
    ("TFX_MAX_IMAGE_SIZE", "4"),
    ("TFX_MAX_IMAGE_SIZE", "64.5"),
    ("TFX_JPEG_DECODER", "abc"),
    ("TFX_PROGRESS_INTERVAL", "abc"),
    ("TFX_PROGRESS_INTERVAL", "-1"),
    ("TFX_PROGRESS_INTERVAL", "inf"),
    ("TFX_LOAD_PLUGINS", "[/x]"),
    ("TFX_LOAD_PLUGINS", "ok,../evil"),
    ("TFX_OFFLINE", "maybe"),
])
def test_a_bad_value_is_one_error_naming_the_variable(tfx, tmp_path, name, value):
    """Item 21: each bad value fails before predict reads a file, naming the variable and
    what it takes; nothing is written."""
    model = log_mean_model(tmp_path / "m.onnx")
    image = flat_png(tmp_path / "a.png", 255)
    before = snapshot_tree(tmp_path)
    result = tfx("predict", model, image, "--csv", tmp_path / "out.csv", env={name: value})
    assert result.exit_code == 1 and result.stdout == ""
    line = result.error_line()
    assert line.startswith(f"Error: {name}=") and env.VARIABLES[name].allowed in line
    assert_tree_unchanged(tmp_path, before)


@pytest.mark.parametrize(("name", "value", "parsed"), [
    ("TFX_MAX_IMAGE_PIXELS", "200000000", 200_000_000),
    ("TFX_MAX_IMAGE_PIXELS", "2e8", 200_000_000),
    ("TFX_MAX_IMAGE_SIZE", " 4096 ", 4096),
    ("TFX_JPEG_DECODER", "NVJPEG", "nvjpeg"),
    ("TFX_PROGRESS_INTERVAL", "0.5", 0.5),
    ("TFX_OFFLINE", "yes", True),
    ("TFX_LOAD_PLUGINS", "a, b.c", frozenset({"a", "b.c"})),
    ("TFX_CACHE_DIR", "~/c", Path("~/c").expanduser()),
    ("TFX_MAX_IMAGE_SIZE", "", None),  # empty: unset, the default applies
])
def test_good_values_parse(monkeypatch, name, value, parsed):
    monkeypatch.setenv(name, value)
    assert env.value(name) == parsed
    env.check_all()


def test_the_readers_go_through_the_module(monkeypatch):
    """The limits tfx enforces come from env.py's parse, not a second parser."""
    from transfusion_cli.data.build import max_image_size
    from transfusion_cli.data.preprocess import max_image_pixels
    from transfusion_cli.progress import line_interval

    monkeypatch.setenv("TFX_MAX_IMAGE_PIXELS", "2e8")
    monkeypatch.setenv("TFX_MAX_IMAGE_SIZE", "4096")
    monkeypatch.setenv("TFX_PROGRESS_INTERVAL", "3")
    assert (max_image_pixels(), max_image_size(), line_interval()) == (200_000_000, 4096, 3.0)
    monkeypatch.setenv("TFX_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ConfigError, match="TFX_PROGRESS_INTERVAL"):
        line_interval()


def test_every_variable_tfx_reads_is_declared():
    """No module reads a TFX_* variable from os.environ except env.py (typer options read
    theirs through `envvar=`, declared with `option`)."""
    root = Path(__file__).resolve().parents[2]
    readers = re.compile(r"(?:os\.environ(?:\.get)?|os\.getenv)\(\s*[\"'](TFX_\w+)")
    for path in [*root.joinpath("transfusion_cli").rglob("*.py"),
                 *root.joinpath("plugins").rglob("*.py")]:
        if path.name == "env.py":
            continue
        assert not readers.findall(path.read_text()), path
        for name in re.findall(r"envvar=[\"'](TFX_\w+)", path.read_text()):
            assert env.VARIABLES[name].option, name


def test_docs_table_lists_exactly_the_declared_variables():
    rows = [line for line in DOCS.read_text().splitlines() if line.startswith("| `TFX_")]
    documented = [re.match(r"\| `(TFX_\w+)`", row).group(1) for row in rows]
    assert documented == list(env.VARIABLES)
    for row, variable in zip(rows, env.VARIABLES.values(), strict=True):
        cells = [c.strip().replace("`", "") for c in row.strip("|").split("|")]
        assert cells[3] == variable.allowed.replace("'", ""), variable.name
