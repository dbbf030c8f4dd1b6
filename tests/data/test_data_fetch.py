"""`tfx data fetch medmnist/NAME`: a checked, atomic download, served by a local HTTP server on
127.0.0.1 (nothing here touches the internet: the published table is pointed at it)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from tfx_plugins.datasets import medmnist_files

from transfusion_cli.data.build import build_dataset


def write_npz(path: Path) -> str:
    """A tiny file in the MedMNIST layout; its MD5."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 10), ("val", 5), ("test", 10)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 5).reshape(n, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return hashlib.md5(path.read_bytes()).hexdigest()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local server of ``served/`` whose files the published table names; (folder, md5)."""
    served = tmp_path / "served"
    served.mkdir()
    md5 = write_npz(served / "retinamnist.npz")
    (served / "retinamnist_64.npz").write_bytes(b"not the published file")
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(medmnist_files, "RECORD", f"http://127.0.0.1:{httpd.server_port}")
    monkeypatch.setitem(medmnist_files.MD5, "retinamnist", (md5, "0" * 32, "1" * 32, "2" * 32))
    yield served, md5
    httpd.shutdown()
    httpd.server_close()


def test_fetch_downloads_checks_and_keeps_the_file(tfx, server, tmp_path):
    served, md5 = server
    dest = tmp_path / "data"
    result = tfx("data", "fetch", "medmnist/retinamnist", "--out", dest)
    assert result.exit_code == 0, result.stderr
    target = dest / "retinamnist.npz"
    assert result.stdout.strip() == str(target)
    assert target.read_bytes() == (served / "retinamnist.npz").read_bytes()
    assert md5 in result.stderr and "as published" in result.stderr
    assert [p.name for p in dest.iterdir()] == ["retinamnist.npz"]  # no temp file left
    bundle = build_dataset("medmnist", data_dir=dest, options={"subset": "retinamnist"})
    assert len(bundle.train) == 10
    # Again: the file is there and matches, so it is kept and nothing is downloaded.
    (served / "retinamnist.npz").unlink()
    result = tfx("data", "fetch", "medmnist/retinamnist", "--out", dest)
    assert result.exit_code == 0 and "already there" in result.stderr


def test_fetch_into_tfx_data_dir(tfx, server, tmp_path, monkeypatch):
    monkeypatch.setenv("TFX_DATA_DIR", str(tmp_path / "root"))
    result = tfx("data", "fetch", "medmnist/retinamnist")
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip()) == tmp_path / "root" / "medmnist" / "retinamnist.npz"


def test_checksum_mismatch_keeps_nothing(tfx, server, tmp_path):
    dest = tmp_path / "data"
    result = tfx("data", "fetch", "medmnist/retinamnist", "--size", "64", "--out", dest)
    assert result.exit_code != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "not the published" in last
    assert "Traceback" not in result.stderr
    assert not any(dest.iterdir())  # neither the file nor its temporary part


def test_a_different_existing_file_is_never_overwritten(tfx, server, tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    mine = dest / "retinamnist.npz"
    mine.write_bytes(b"the user's own file")
    result = tfx("data", "fetch", "medmnist/retinamnist", "--out", dest)
    assert result.exit_code != 0 and "does not overwrite" in result.stderr
    assert mine.read_bytes() == b"the user's own file"


def test_missing_file_on_the_server_is_a_clear_error(tfx, server, tmp_path):
    served, _ = server
    (served / "retinamnist.npz").unlink()
    result = tfx("data", "fetch", "medmnist/retinamnist", "--out", tmp_path / "d")
    last = result.stderr.strip().splitlines()[-1]
    assert result.exit_code != 0 and last.startswith("Error: ") and "HTTP 404" in last
    assert not any((tmp_path / "d").iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (["medmnist/notadataset"], "choose one of"),
    (["medmnist/retinamnist", "--size", "32"], "28, 64, 128, 224"),
    (["retinamnist"], "DATASET/NAME"),
    (["synthetic-retina/x"], "has no files tfx can download"),
])
def test_bad_requests_name_the_fix(tfx, args, message, tmp_path, monkeypatch):
    monkeypatch.setattr(medmnist_files, "RECORD", "http://127.0.0.1:9")  # never reached
    result = tfx("data", "fetch", *args, "--out", tmp_path / "d")
    assert result.exit_code != 0 and result.stderr.startswith("Error: ")
    assert message in result.stderr


def test_without_a_destination_it_asks_for_one(tfx, tmp_path, monkeypatch):
    monkeypatch.delenv("TFX_DATA_DIR", raising=False)
    result = tfx("data", "fetch", "medmnist/retinamnist")
    assert result.exit_code != 0 and "--out" in result.stderr and "TFX_DATA_DIR" in result.stderr


def test_the_table_holds_the_published_checksums_of_the_shared_files():
    """The 28 px RetinaMNIST entry is the MD5 the shared data's README gives for its copy."""
    assert medmnist_files.published("retinamnist", 28) == (
        "https://zenodo.org/records/10519652/files/retinamnist.npz?download=1",
        "bd4c0672f1bba3e3a89f0e4e876791e4")
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "medmnist"
    if not (shared / "retinamnist.npz").is_file():
        pytest.skip("../shared/data/medmnist is absent")
    assert medmnist_files.md5_of(shared / "retinamnist.npz") == \
        medmnist_files.MD5["retinamnist"][0]
