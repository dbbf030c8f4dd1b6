"""The output guard, the one check every writer goes through before it writes anything:

- an output is never one of the command's inputs, nor inside (or around) a file or folder a
  dataset it reads (``data.build.DataSource.input_roots``: image folders, CSV manifests and
  their image roots, ``.npz`` files; symlinks resolved, and the path as typed checked too);
- a file output that exists is replaced only when tfx wrote it (``OutputFile.made_by_tfx``:
  ONNX metadata, a JSON ``format`` key, a card's marker line, a PNG's ``Software`` text), and
  is never a folder;
- a folder a command writes its files into (``OutputFolder``) is never an existing file;
- a folder that `fit`, `compare-inits` or `reproduce` fills (``claim_folder``) is new, empty,
  or one tfx made as that kind (``runfolder.FolderKind``: its marker file says so);
- every output is writable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from transfusion_cli.errors import ConfigError
from transfusion_cli.io import check_writable
from transfusion_cli.runfolder import FOLDER_KINDS, FolderKind

PathLike = str | os.PathLike
TFX_HIDDEN_PREFIX = ".tfx-"  # tfx's lock and temp files (io.TEMP_PATTERN, runfolder.LOCK_FILE)
PNG_SOFTWARE = "tfx"  # the Software text of every PNG tfx draws: how it knows its own


class OutputOverlapError(ConfigError):
    """An output path that is an input, or lies inside a dataset folder being read."""


class NotMadeByTfxError(ConfigError):
    """An output file or folder that exists and that tfx did not write."""


@dataclass(frozen=True)
class OutputFile:
    """A file a command writes (replacing what is there): ``made_by_tfx(path)`` tells whether
    an existing file is one tfx wrote (None: any existing file may be replaced); ``writer``
    names the command in the refusal."""

    path: PathLike
    made_by_tfx: Callable[[Path], bool] | None = None
    writer: str = "tfx"


@dataclass(frozen=True)
class OutputFolder:
    """A folder a command writes its files into, made when missing; ``holds`` names those
    files in the refusal when the path is an existing file, and ``files`` are the ones it may
    write there, each refused like an ``OutputFile`` when it exists and tfx did not write it."""

    path: PathLike
    holds: str = "its files"
    files: tuple[OutputFile, ...] = ()


def _real(path: PathLike) -> Path:
    """The absolute path with every symlink resolved (a missing file resolves as far as it can)."""
    return Path(path).expanduser().resolve(strict=False)


def _forms(path: PathLike) -> set[Path]:
    """The path as typed (absolute, normalised) and with its symlinks resolved: an output
    reached through a link into a dataset is inside it either way."""
    typed = Path(os.path.normpath(os.path.abspath(Path(path).expanduser())))
    return {typed, _real(path)}


def refuse_overwriting_inputs(outputs: dict[str, PathLike | OutputFile | OutputFolder | None],
                              inputs: Iterable[PathLike | None] = (),
                              data_dirs: Iterable[PathLike | None] = ()) -> None:
    """Raise OutputOverlapError if an output (``{"--out": path}``) is one of ``inputs``, lies
    inside one of ``data_dirs`` (every file and folder a dataset reads), or is a folder holding
    either; symlinks and hard links count as the same file. Then NotMadeByTfxError for an
    ``OutputFile`` that is a folder or a file tfx did not write, or an ``OutputFolder`` that is
    a file or holds such a file among its ``files``, and OutputPathError for an output that
    cannot be written: all before the first byte is written."""
    real_inputs = [(Path(p), _real(p)) for p in inputs if p is not None]
    real_dirs = [(Path(d), _forms(d)) for d in data_dirs if d is not None]
    paths = {flag: (o.path if isinstance(o, OutputFile | OutputFolder) else o)
             for flag, o in outputs.items() if o is not None}
    for flag, output in paths.items():
        target = _real(output)
        targets = _forms(output)
        for given, real in real_inputs:
            if target == real or _same_file(target, real):
                raise OutputOverlapError(
                    f"{flag} {output} is also an input ({given}); writing it would destroy "
                    "that input. Choose another output path.")
            if real.is_relative_to(target):  # a folder output that holds an input
                raise OutputOverlapError(
                    f"{flag} {output} contains the input {given}; choose an output folder "
                    "that holds none of the inputs.")
        for given, forms in real_dirs:
            if any(t == d or t.is_relative_to(d) for t in targets for d in forms):
                raise OutputOverlapError(
                    f"{flag} {output} is inside the dataset folder {given} being read; write "
                    "outputs outside the data. Choose another path.")
            if any(d.is_relative_to(t) for t in targets for d in forms):
                raise OutputOverlapError(
                    f"{flag} {output} contains the dataset folder {given} being read; choose "
                    "an output folder outside the data.")
    for flag, output in outputs.items():
        if isinstance(output, OutputFile):
            refuse_replacing_foreign_file(flag, output)
        elif isinstance(output, OutputFolder):
            refuse_file_as_folder(flag, output)
            for file in output.files:
                refuse_replacing_foreign_file(flag, file)
    for flag, output in paths.items():  # then writability, before any work starts
        check_writable(output, flag)


def refuse_replacing_foreign_file(flag: str, output: OutputFile) -> None:
    """NotMadeByTfxError when ``output`` is a folder, or an existing file tfx did not write."""
    path = Path(output.path).expanduser()
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError:  # e.g. a name too long: check_writable says so
        return
    if is_dir:
        raise NotMadeByTfxError(f"{flag} {path} is a folder where {output.writer} writes a "
                                "file; move the folder away or choose another output path.")
    if output.made_by_tfx is not None and exists and not output.made_by_tfx(path):
        raise NotMadeByTfxError(f"{flag} {path} exists and was not written by "
                                f"{output.writer}; tfx never replaces a file it did not write. "
                                "Move it away or choose another output path.")


def refuse_file_as_folder(flag: str, output: OutputFolder) -> None:
    """NotMadeByTfxError when ``output`` is an existing file (found before the work, not when
    the first file is written into it)."""
    path = Path(output.path).expanduser()
    try:
        is_file = path.exists() and not path.is_dir()
    except OSError:  # e.g. a name too long: check_writable says so
        return
    if is_file:
        raise NotMadeByTfxError(f"{flag} {path} is a file; give a folder for {output.holds} "
                                "(tfx makes it when missing).")


def has_json_format(path: Path, formats: Iterable[str], legacy_keys: Iterable[str] = ()
                    ) -> bool:
    """Whether ``path`` holds a JSON object whose ``"format"`` is one of ``formats`` (or, when
    ``legacy_keys`` are given, one without a format key that has all of them: the same file as
    an older tfx wrote it)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if not isinstance(data, dict):
        return False
    if "format" in data:
        return data["format"] in set(formats)
    legacy = tuple(legacy_keys)
    return bool(legacy) and all(key in data for key in legacy)


def png_made_by_tfx(path: Path) -> bool:
    """Whether ``path`` is a PNG tfx drew (its ``Software`` text is ``PNG_SOFTWARE``)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get("Software") == PNG_SOFTWARE
    except (OSError, ValueError, SyntaxError):  # not an image PIL can read
        return False


def folder_made_by_tfx(root: PathLike, kind: FolderKind) -> bool:
    """Whether ``root`` holds ``kind``'s marker file as tfx writes it."""
    return has_json_format(Path(root) / kind.marker, [kind.format], kind.legacy_keys)


def holds_no_files(root: PathLike) -> bool:
    """Nothing inside but folders and tfx's own hidden lock and temp files."""
    return all(p.is_dir() or p.name.startswith(TFX_HIDDEN_PREFIX)
               for p in Path(root).rglob("*"))


def claim_folder(root: PathLike, kind: FolderKind, flag: str = "--out") -> None:
    """The one rule for the folders `tfx fit`, `compare-inits` and `reproduce` fill: ``root``
    is new, holds no files (only empty folders or tfx's hidden ones), or is a ``kind`` folder
    tfx made (``folder_made_by_tfx``); anything else raises NotMadeByTfxError, since tfx never
    writes into a folder it did not make. The caller writes the marker before anything else."""
    root = Path(root).expanduser()
    refuse_file_as_folder(flag, OutputFolder(root, f"the {kind.name}"))
    if not root.exists() or folder_made_by_tfx(root, kind) or holds_no_files(root):
        return
    other = next((k for k in FOLDER_KINDS if k != kind and folder_made_by_tfx(root, k)), None)
    if other is not None:
        raise NotMadeByTfxError(f"{flag} {root} is a tfx {other.name} folder (made by "
                                f"`{other.command}`), not a {kind.name} folder; choose "
                                f"another {flag}.")
    raise NotMadeByTfxError(f"{flag} {root} exists and is not a tfx {kind.name} folder: it was "
                            f"not written by `{kind.command}` (no {kind.marker} with "
                            f"\"format\": \"{kind.format}\"), and tfx never writes into a "
                            f"folder it did not make. Choose a new {flag}.")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
