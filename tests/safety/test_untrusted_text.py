"""Text from users and files stays text wherever tfx shows or writes it: never rich markup,
never a raw terminal control sequence, never a spreadsheet formula, never an HTML element or
a file embedded from outside the study (issue 20, items 8, 9 and 10)."""

from __future__ import annotations

import base64
import csv
import io

import pytest
from input_files import flat_png, log_mean_model
from tree_snapshot import assert_tree_unchanged, snapshot_tree

from transfusion_cli.console import terminal_safe
from transfusion_cli.io import csv_safe

ESC = "\x1b"


def test_file_names_with_brackets_print_as_themselves(tfx, tmp_path):
    """Item 10: `[left eye]` and `[right eye]` are not markup tags; `scan[/1].png` (a closing
    tag) does not crash predict."""
    model = log_mean_model(tmp_path / "m.onnx")
    (tmp_path / "scan[").mkdir()
    names = ["patient 7 [left eye].png", "patient 7 [right eye].png", "scan[/1].png"]
    images = [flat_png(tmp_path / name, 255) for name in names]
    result = tfx("predict", model, *images)
    assert result.exit_code == 0, result.stderr
    for name in names:
        assert name in result.stdout
    assert "patient 7 .png" not in result.stdout


def test_control_sequences_in_file_names_are_escaped(tfx, tmp_path):
    """Item 10: an escape sequence in a file name reaches the terminal as visible text."""
    model = log_mean_model(tmp_path / "m.onnx")
    image = flat_png(tmp_path / f"clear{ESC}[2J{ESC}]0;owned\a.png", 255)
    result = tfx("predict", model, image)
    assert result.exit_code == 0, result.stderr
    assert ESC not in result.stdout + result.stderr and "\a" not in result.stdout + result.stderr
    assert "clear\\x1b[2J\\x1b]0;owned\\x07.png" in result.stdout


def test_error_lines_escape_control_sequences(tfx, tmp_path):
    """Item 10: the one `Error:` line shows a hostile name escaped, not interpreted."""
    missing = tmp_path / f"gone{ESC}[31m.onnx"
    result = tfx("predict", missing, tmp_path / "x.png")
    assert result.exit_code == 1
    line = result.error_line()
    assert ESC not in result.stderr and "gone\\x1b[31m.onnx" in line


def test_markup_in_an_environment_variable_is_an_error_not_a_crash(tfx, tmp_path):
    """Item 10: TFX_LOAD_PLUGINS="[/x]" crashed rich; it is now a bad plugin-name list."""
    before = snapshot_tree(tmp_path)
    result = tfx("list", "inits", env={"TFX_LOAD_PLUGINS": "[/x]"})
    assert result.exit_code == 1
    line = result.error_line()
    assert "TFX_LOAD_PLUGINS='[/x]'" in line and "plugin names" in line
    assert_tree_unchanged(tmp_path, before)


def test_warnings_show_markup_literally(capsys):
    """Item 10: a warning's text is plain text (the "warning:" prefix is tfx's own style)."""
    from transfusion_cli.console import warn

    warn("plugin [bold]x[/bold] and scan[/1].png")
    assert "plugin [bold]x[/bold] and scan[/1].png" in capsys.readouterr().err


def test_a_line_break_in_a_name_cannot_forge_a_line_of_its_own(capsys):
    """A file name holding a newline stays inside its one warning or info line."""
    from transfusion_cli.console import info, warn

    name = "eye.png\nError: forged\rwarning: also forged"
    warn(f"{name}: looks synthetic")
    info(f"wrote {name}")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["warning: eye.png\\nError: forged\\rwarning: also forged: looks synthetic",
                     "wrote eye.png\\nError: forged\\rwarning: also forged"]


@pytest.mark.parametrize(("text", "shown"), [
    (f"a{ESC}[31mb", "a\\x1b[31mb"),
    ("a\rb", "a\\rb"),
    ("a\u202eb", "a\\u202eb"),
    ("a\x9bb", "a\\x9bb"),
    ("line one\nline two\tend", "line one\nline two\tend"),
])
def test_one_sanitiser_escapes_every_control_character(text, shown):
    assert terminal_safe(text) == shown


def _rows(path):
    return list(csv.reader(io.StringIO(path.read_text())))


def test_csv_cells_never_start_a_formula(tfx, tmp_path, monkeypatch):
    """Item 9: a file name and class names from the model's metadata that begin with = + - @
    are written with a leading apostrophe; numbers such as -0.5 stay numbers."""
    monkeypatch.chdir(tmp_path)
    model = log_mean_model(tmp_path / "m.onnx",
                           class_names='["=cmd|\' /C calc\'!A0", "@SUM(1+1)", "+1+1"]')
    flat_png(tmp_path / "=2+5+cmd|' -C calc'!A0.png", 255)
    result = tfx("predict", model, "=2+5+cmd|' -C calc'!A0.png", "--csv", "out.csv")
    assert result.exit_code == 0, result.stderr
    header, row = _rows(tmp_path / "out.csv")
    assert row[0] == "'=2+5+cmd|' -C calc'!A0.png"
    assert row[header.index("predicted")] == "'=cmd|' /C calc'!A0"
    assert all(not cell.startswith(("=", "+", "@", "\t", "\r")) for cell in header + row)
    assert csv_safe("-0.5") == "-0.5" and csv_safe("-1+cmd") == "'-1+cmd" and csv_safe(3) == 3


def test_compare_results_csv_uses_the_same_rule():
    """Item 9: results.csv of a sweep neutralises its cells by the same rule."""
    from transfusion_cli.compare.report import GroupResult, Results, csv_text

    group = GroupResult(arch="=HYPERLINK(\"http://x\")", init="@evil", train_size=None,
                        seeds_done=1, seeds_planned=1, best_mean=-0.5, best_std=float("nan"),
                        final_mean=0.5, final_std=float("nan"), test_mean=None, test_std=None,
                        reached=0, steps_to_target_mean=None, steps_to_target_std=None,
                        params=10, wall_time_s_mean=1.0)
    results = Results(data="d", metric="auc", target_metric=None, groups=[group], cells=[],
                      pending=[])
    header, row = list(csv.reader(io.StringIO(csv_text(results))))
    assert row[0] == "'=HYPERLINK(\"http://x\")" and row[1] == "'@evil"
    assert row[header.index("best_mean")] == "-0.5"


def _profile_with_description(tmp_path, description: str):
    from transfusion_cli.reproduce.study import profile_path

    text = profile_path("smoke").read_text()
    text = text.replace("description: >\n", f"description: |\n  {description}\n", 1)
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_report_html_embeds_no_file_from_outside_the_study(tmp_path):
    """Item 8: a description line `![f](/abs/secret)` or `![f](../secret.png)` stays text in
    report.html; the file's bytes are never read into the page."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n top secret bytes")
    encoded = base64.b64encode(secret.read_bytes()).decode()
    from transfusion_cli.reproduce.report import markdown_to_html

    study = tmp_path / "study"
    (study / "figures").mkdir(parents=True)
    (study / "figures" / "fig2.png").write_bytes(secret.read_bytes())
    for link in (str(secret), "../secret.png", "figures/../../secret.png", "figures/fig2.png"):
        page = markdown_to_html(f"# T\n\n![f]({link})\n<script>x</script>\n", study, "T",
                                figures=[])
        assert encoded not in page and "<script>" not in page and "&lt;script&gt;" in page
    page = markdown_to_html("![f](figures/fig2.png)\n", study, "T",
                            figures=[study / "figures" / "fig2.png"])
    assert encoded in page  # a figure tfx wrote is embedded


def test_report_only_study_with_a_hostile_description(tfx, tmp_path):
    """Item 8 through the CLI: `reproduce --report-only` writes report.html without the file
    a description names, and shows the description escaped."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n top secret bytes")
    encoded = base64.b64encode(secret.read_bytes()).decode()
    profile = _profile_with_description(tmp_path, f"![f]({secret}) <img src=x onerror=alert(1)>")
    result = tfx("reproduce", "--profile", profile, "-o", tmp_path / "study", "--report-only")
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "study" / "report.html").read_text()
    assert encoded not in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
