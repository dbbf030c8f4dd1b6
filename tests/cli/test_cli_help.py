"""Every command's `--help` as `tfx` prints it: it exits 0, shows boolean flags as flags (never
`--json <bool>`), keeps help text literal (an install hint keeps its `[extra]`) and ends with
examples; the top-level help has examples and shell completion, which works."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer

from transfusion_cli.cli import app, command_tree

BRACKETED = re.compile(r"\[[A-Za-z][\w-]*\]")  # [slurm], [tensorboard], [mlflow], ...


def named_commands(command=None, path=()):
    """(words after `tfx`, click command) for tfx and every command and subcommand below it,
    as typer builds them from the source (help not yet made literal)."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from named_commands(sub, (*path, name))


COMMANDS = list(named_commands())


def source_help(command) -> list[str]:
    """The help texts of a command as written in the source: its own and its visible
    parameters'."""
    texts = [command.help or "", command.short_help or ""]
    return texts + [p.help or "" for p in command.params
                    if getattr(p, "help", None) and not getattr(p, "hidden", False)]


def test_every_command_is_walked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "fit", "compare-inits", "reproduce", "evaluate", "similarity", "figures",
            "data", "data show", "data stats", "list", "predict", "export"} <= names
    assert any(BRACKETED.search(text) for _, command in COMMANDS
               for text in source_help(command)), "no [extra] hint left to check"


@pytest.mark.parametrize(("path", "command"), COMMANDS,
                         ids=[" ".join(("tfx", *path)) for path, _ in COMMANDS])
def test_help_exits_0_with_flags_as_flags_and_literal_text(tfx, path, command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = tfx(*path, "--help")
    assert result.exit_code == 0, result.stderr
    usage = result.stdout.lstrip()
    assert usage.startswith("Usage: tfx"), result.stdout[:200]
    assert "<bool>" not in result.stdout
    hints = {hint for text in source_help(command) for hint in BRACKETED.findall(text)}
    for hint in hints:
        assert hint in result.stdout, f"tfx {' '.join(path)} --help lost {hint} (read as markup)"
    if not hasattr(command, "commands"):  # a command, not a group: examples come last
        head, _, tail = result.stdout.rpartition(" Examples")
        assert head and "╭" not in tail and f"tfx {' '.join(path)}" in tail, result.stdout[-600:]


def test_every_boolean_is_a_flag_that_takes_no_value(tfx, capsys):
    flags = [(path, p) for path, command in COMMANDS for p in command.params
             if getattr(p, "is_flag", False)]
    assert len(flags) > 10
    result = tfx("plugins", "--json", "true")
    assert result.exit_code == 2 and "unexpected extra argument" in result.stderr


def test_the_examples_of_a_command_are_shown_literally():
    tree = command_tree()
    epilog = tree.commands["compare-inits"].epilog
    assert epilog.startswith("[bold]Examples[/bold]") and "[dim]# aggregate" in epilog


def test_top_level_help_has_examples_and_shell_completion(tfx, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = tfx("--help")
    assert result.exit_code == 0
    for text in ("--install-completion", "--show-completion", "Examples",
                 "tfx fit --data synthetic-retina", "tfx --install-completion"):
        assert text in result.stdout, text
    result = tfx()  # no command: the help, once
    assert result.exit_code == 2 and result.stdout.count("Usage: tfx") == 1


def complete(words: str, index: int) -> list[str]:
    """What bash completion offers for word ``index`` of ``words`` (typer's protocol)."""
    env = dict(os.environ, _TFX_COMPLETE="complete_bash", COMP_WORDS=words,
               COMP_CWORD=str(index))
    run = subprocess.run([sys.executable, "-m", "transfusion_cli"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_shell_completion_offers_commands_flags_and_choices():
    assert complete("tfx compare-in", 1) == ["compare-inits"]
    assert complete("tfx similarity A B --meas", 4) == ["--measure"]
    assert complete("tfx evaluate m.pt --split ", 4) == ["train", "val", "test"]
    assert "--install-completion" in complete("tfx --inst", 1)
