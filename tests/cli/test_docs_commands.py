"""Every `tfx ...` command in the docs' code blocks is checked, so that none silently breaks.

All of them: the subcommand exists and every flag is one it declares, with a valid choice.
The paper recipes (docs/reproduce-the-paper.md): each `compare-inits` sweep is planned for real
(`--plan-only`: names, inits, weights pairing, architectures), and each `fit` runs for two steps
with synthetic data in place of the real dataset (the other flags as written).
"""

from __future__ import annotations

import enum
import re
import shlex
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from transfusion_cli.cli import app

DOCS = Path(__file__).resolve().parents[2] / "docs"
REPRODUCE = DOCS / "reproduce-the-paper.md"
FENCE = re.compile(r"```(?:bash|sh|shell|console)?\n(.*?)```", re.S)
ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$", re.S)
LOOP = re.compile(r"^for (\w+) in (.+?); do$")
VARIABLE = re.compile(r"\$\{?(\w+)\}?")
# Flags whose value names a file the command reads: placeholders are made for them.
READ_PATHS = re.compile(r"\.(pt|pth|safetensors)$")


@dataclass(frozen=True)
class DocCommand:
    """One documented `tfx` command: its file and line, and its arguments after `tfx`."""

    doc: str
    line: int
    args: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: tfx {shlex.join(self.args)}"


def logical_lines(block: str) -> list[tuple[int, str]]:
    """(offset, line) with backslash continuations joined."""
    lines, current, start = [], "", 0
    for offset, raw in enumerate(block.splitlines()):
        if not current:
            start = offset
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        lines.append((start, current.strip()))
        current = ""
    return lines


def expand(text: str, variables: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def doc_commands(path: Path) -> list[DocCommand]:
    """The `tfx` commands of a markdown file's code blocks, shell variables and loop variables
    (first value) expanded, comments and redirections dropped."""
    text = path.read_text()
    commands = []
    variables: dict[str, str] = {}
    for match in FENCE.finditer(text):
        first_line = text[:match.start(1)].count("\n") + 1
        for offset, line in logical_lines(match.group(1)):
            assigned = ASSIGNMENT.match(line)
            if assigned:
                variables[assigned.group(1)] = " ".join(shlex.split(assigned.group(2)))
                continue
            loop = LOOP.match(line)
            if loop:
                variables[loop.group(1)] = shlex.split(loop.group(2))[0]
                continue
            if not line.startswith("tfx ") or "$(" in line or "..." in line:
                continue
            tokens = shlex.split(expand(line, variables), comments=True)[1:]
            for index, token in enumerate(tokens):
                if token in (">", ">>", "|", "&&", ";"):
                    tokens = tokens[:index]
                    break
            commands.append(DocCommand(path.name, first_line + offset, tuple(tokens)))
    return commands


ALL = [c for doc in sorted(DOCS.glob("*.md")) for c in doc_commands(doc)]


def resolve(args: tuple[str, ...]) -> tuple[Any, list[str]]:
    """The click command the arguments name, and the arguments after its name (duck-typed:
    typer may vendor its own click)."""
    command = typer.main.get_command(app)
    rest = list(args)
    while hasattr(command, "list_commands") and rest and not rest[0].startswith("-"):
        sub = command.get_command(type(command).context_class(command), rest[0])
        assert sub is not None, f"no command '{rest[0]}'"
        command, rest = sub, rest[1:]
    return command, rest


def choices(param: Any) -> tuple[str, ...] | None:
    """The values a parameter accepts (an Enum or Literal annotation, or a click Choice)."""
    kind = getattr(param, "type", None)
    if hasattr(kind, "choices"):
        return tuple(kind.choices)
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(str(m.value) for m in annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    return None


def test_the_docs_have_commands_to_check():
    assert len(ALL) >= 25
    assert any(c.args[:1] == ("compare-inits",) for c in ALL)
    assert any(c.args[:1] == ("figures",) for c in ALL)


@pytest.mark.parametrize("command", ALL, ids=str)
def test_documented_command_uses_existing_flags(command):
    cli, rest = resolve(command.args)
    options = {name: param for param in cli.params if param.param_type_name == "option"
               for name in (*param.opts, *param.secondary_opts)}
    arguments = [p for p in cli.params if p.param_type_name == "argument"]
    index = position = 0
    while index < len(rest):
        token = rest[index]
        if token.startswith("-") and token != "-":
            name, _, inline = token.partition("=")
            assert name in options, f"{command}: '{name}' is not a flag of tfx " \
                f"{cli.name} ({', '.join(sorted(options))})"
            param = options[name]
            if not param.is_flag and not param.count:
                value = inline or rest[index + 1]
                index += 0 if inline else 1
                if choices(param) is not None:
                    assert value in choices(param), f"{command}: {name} {value}"
        else:
            if position < len(arguments) and choices(arguments[position]) is not None:
                assert token in choices(arguments[position]), f"{command}: {token}"
            position += 1
        index += 1


def _with_placeholders(args: tuple[str, ...], root: Path) -> list[str]:
    """Files the command reads (weights, checkpoints) created as empty placeholders under
    ``root`` (they are only checked for existence by a plan), outputs moved under it."""
    out = []
    for token in args:
        name, sep, value = token.rpartition("=") if "=" in token else ("", "", token)
        prefix, colon, path = value.partition(":") if value.startswith("checkpoint:") else \
            ("", "", value)
        if READ_PATHS.search(path) and not Path(path).is_absolute():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        out.append(token)
    return out


PLANS = [c for c in doc_commands(REPRODUCE)
         if c.args[:1] == ("compare-inits",) and "--report" not in c.args
         and "--cell" not in c.args]
FITS = [c for c in doc_commands(REPRODUCE) if c.args[:1] == ("fit",)]


@pytest.mark.parametrize("command", PLANS, ids=str)
def test_documented_sweep_plans(tfx, command, tmp_path, monkeypatch):
    """Section 4 once failed here ('cbr-small' is not one of the compared architectures)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TFX_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    args = _with_placeholders(command.args, tmp_path)
    result = tfx(*args, "--plan-only", "--json")
    assert result.exit_code == 0, f"{command}\n{result.stderr}"
    assert '"cells"' in result.stdout


REAL_TO_SYNTHETIC = {"retina": "synthetic-retina", "chexpert": "synthetic-chest",
                     "nih-cxr14": "synthetic-chest", "image-folder": "synthetic-retina",
                     "csv": "synthetic-retina", "medmnist": "synthetic-retina"}
DROPPED = {"--data-dir": 1, "--epochs": 1, "--steps": 1, "--image-size": 1, "--out": 1,
           "--eval-every": 1, "--batch-size": 1, "-b": 1, "-o": 1, "--option": 1}


def tiny(args: tuple[str, ...], out: Path) -> list[str]:
    """The fit command on synthetic data, two steps of 32 px images; its other flags kept."""
    kept, index = [], 0
    while index < len(args):
        token = args[index]
        if token in DROPPED:
            index += 1 + DROPPED[token]
            continue
        if token in ("--data", "-d"):
            kept += [token, REAL_TO_SYNTHETIC.get(args[index + 1], args[index + 1])]
            index += 2
            continue
        kept.append(token)
        index += 1
    return [*kept, "--image-size", "32", "--steps", "2", "--eval-every", "2", "--batch-size",
            "8", "--option", "train_size=32", "--option", "val_size=16", "--option",
            "test_size=16", "--out", str(out)]


@pytest.mark.slow
@pytest.mark.parametrize("command", FITS, ids=str)
def test_documented_fit_runs_on_synthetic_data(tfx, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = tfx(*tiny(command.args, tmp_path / "run"))
    assert result.exit_code == 0, f"{command}\n{result.stderr}"
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
