"""`tfx data fetch medmnist/NAME --size N`: download one official MedMNIST+ 2D file and check
its published MD5 before it gets its name.

The addresses and checksums are those of the ``medmnist`` package's own table (``INFO`` in
medmnist/info.py, version 3.0.2: Zenodo record 10519652); a file whose MD5 differs is never
kept. The download goes to a temporary file in the destination folder and is renamed only
when complete and checked; an existing file of the same name is kept as it is: left alone
when its MD5 matches, refused (never overwritten) when it differs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from transfusion_cli.api import DataError, info

RECORD = "https://zenodo.org/records/10519652/files"
SIZES = (28, 64, 128, 224)
# MD5 of each 2D file at 28, 64, 128 and 224 px (medmnist 3.0.2, INFO[name]["MD5"],
# ["MD5_64"], ["MD5_128"], ["MD5_224"]).
MD5 = {
    "pathmnist": ("a8b06965200029087d5bd730944a56c1", "55aa9c1e0525abe5a6b9d8343a507616",
                 "ac42d08fb904d92c244187169d1fd1d9", "2c51a510bcdc9cf8ddb2af93af1eadec"),
    "chestmnist": ("02c8a6516a18b556561a56cbdd36c4a8", "9de6cd0b934ebb5b7426cfba5efbae16",
                  "db107e5590b27930b62dbaf558aebee3", "45bd33e6f06c3e8cdb481c74a89152aa"),
    "dermamnist": ("0744692d530f8e62ec473284d019b0c7", "b70a2f5635c6199aeaa28c31d7202e1f",
                  "2defd784463fa5243564e855ed717de1", "8974907d8e169bef5f5b96bc506ae45d"),
    "octmnist": ("c68d92d5b585d8d81f7112f81e2d0842", "e229e9440236b774d9f0dfef9d07bdaf",
                "0a97e76651ace45c5d943ee3f65b63ae", "abc493b6d529d5de7569faaef2773ba3"),
    "pneumoniamnist": ("28209eda62fecd6e6a2d98b1501bb15f", "8f4eceb4ccffa70c672198ea285246c6",
                      "05b46931834c231683c68f40c47b2971", "d6a3c71de1b945ea11211b03746c1fe1"),
    "retinamnist": ("bd4c0672f1bba3e3a89f0e4e876791e4", "afda852cc34dcda56f86ad2b2457dbcc",
                   "e48e916a24454daf90583d4e6efb1a18", "eae7e3b6f3fcbda4ae613ebdcbe35348"),
    "breastmnist": ("750601b1f35ba3300ea97c75c52ff8f6", "742edef2a1fd1524b2efff4bd7ba9364",
                   "363e4b3f8d712e9b5de15470a2aaadf1", "b56378a6eefa9fed602bb16d192d4c8b"),
    "bloodmnist": ("7053d0359d879ad8a5505303e11de1dc", "2b94928a2ae4916078ca51e05b6b800b",
                  "adace1e0ed228fccda1f39692059dd4c", "b718ff6835fcbdb22ba9eacccd7b2601"),
    "tissuemnist": ("ebe78ee8b05294063de985d821c1c34b", "123ece2eba09d0aa5d698fda57103344",
                   "61b955355d7425a89687b06cca3ce0c2", "b077128c4a949f0a4eb01517f9037b9c"),
    "organamnist": ("68e3f8846a6bd62f0c9bf841c0d9eacc", "2dcccc29b88e6da5a01161ef20cda288",
                   "eeae80d0a227a8d099027e1b3cfd3b60", "50747347e05c87dd3aaf92c49f9f3170"),
    "organcmnist": ("b9ceb9546e10131b32923c5bbeaea2b1", "3ce34a8724ea6f548e6db4744d03b6a9",
                   "773c1f009daa3fe5d9a2a201b2a7ed94", "050f5e875dc056f6768abf94ec9995d1"),
    "organsmnist": ("9ab87b696fb54e2a387ebe992d6ed5f1", "53a6d115339d874c25e309a994ff46d3",
                   "ded0c5fa01a95dc4978b956f613e9b8e", "b354719e553fbbb2513d5533f52a4cb1"),
}
CHUNK = 1 << 20
TIMEOUT_S = 60


def file_name(name: str, size: int) -> str:
    """The official file name: ``retinamnist.npz`` (28 px), ``retinamnist_64.npz``, ..."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def published(name: str, size: int) -> tuple[str, str]:
    """(download address, MD5) of one file; a DataError names the choices otherwise."""
    if name not in MD5:
        raise DataError(f"medmnist/{name}: not a MedMNIST 2D dataset tfx knows; choose one of "
                        f"{', '.join(sorted(MD5))}.")
    if size not in SIZES:
        raise DataError(f"--size {size}: MedMNIST+ files come at {', '.join(map(str, SIZES))} "
                        "px.")
    return f"{RECORD}/{file_name(name, size)}?download=1", MD5[name][SIZES.index(size)]


def md5_of(path: Path) -> str:
    """The MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, size: int, folder: Path) -> Path:
    """Download ``name`` at ``size`` px into ``folder`` (checked; atomic); return its path."""
    url, expected = published(name, size)
    folder = Path(folder).expanduser()
    target = folder / file_name(name, size)
    if target.exists():
        if not target.is_file():
            raise DataError(f"{target} exists and is not a file; choose another folder.")
        found = md5_of(target)
        if found == expected:
            info(f"{target} is already there and its MD5 matches the published one; kept.")
            return target
        raise DataError(f"{target} already exists and is not the published file (MD5 {found}, "
                        f"published {expected}); tfx does not overwrite it: move it away or "
                        "choose another folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise DataError(f"Cannot write into {folder} ({exc.strerror}); choose a writable "
                        "folder.") from None
    temp_path = Path(temp)
    try:
        with os.fdopen(handle, "wb") as out:
            found, size_bytes = _download(url, out)
            out.flush()
            os.fsync(out.fileno())
        if found != expected:
            raise DataError(f"The download of {url} has MD5 {found}, not the published "
                            f"{expected} ({size_bytes} bytes); nothing was kept. Try again "
                            "later; if it persists, the file on Zenodo has changed.")
        os.replace(temp_path, target)
    finally:
        temp_path.unlink(missing_ok=True)
    info(f"Downloaded {file_name(name, size)} ({size_bytes / 1e6:.1f} MB, MD5 {found} as "
         f"published) to {target}.")
    return target


def _download(url: str, out) -> tuple[str, int]:
    """Stream ``url`` into ``out``; (MD5, bytes)."""
    digest = hashlib.md5(usedforsecurity=False)
    total = 0
    info(f"Downloading {url} ...")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                total += len(chunk)
    except urllib.error.HTTPError as exc:
        raise DataError(f"Cannot download {url}: HTTP {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"Cannot download {url} ({reason}); check the network connection, or "
                        "download the file by hand and check its MD5.") from None
    return digest.hexdigest(), total
