"""Shared pieces of the hostile-input tests: run the real CLI in-process, tiny inputs."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SMALL = ["--image-size", "32", "--option", "train_size=64", "--option", "val_size=32",
         "--option", "test_size=32"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`tfx ARGS` in this process: (exit code, stdout, stderr); ``env`` is set meanwhile."""
    from transfusion_cli.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, out.getvalue(), err.getvalue()


def error_line(stderr: str) -> str:
    """The one `Error: ...` line; fails if there is none, several, or a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, stderr
    assert "internal error" not in lines[0], lines[0]
    return lines[0]


def image_folder(root: Path, per_class: int = 12, size: int = 40) -> Path:
    """root/normal/*.png and root/sick/*.png of colour noise."""
    rng = np.random.default_rng(0)
    for name in ("normal", "sick"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                root / name / f"{k}.png")
    return root


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A PNG whose header says side x side grey pixels (a decompression bomb); its data are a
    few compressed rows only: tfx must refuse it from the header, before decoding anything."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = zlib.compress(b"\x00" * (side + 1) * 4)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))
    return path


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid




def run_tfx_subprocess(*args: str, pythonpath: Path, env: dict[str, str] | None = None
                       ) -> subprocess.CompletedProcess:
    """The real `tfx` in a subprocess with ``pythonpath`` first (for plugin tests)."""
    full = {**os.environ, **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), full.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "transfusion_cli", *args], capture_output=True,
                          text=True, env=full, timeout=300)
