"""Preprocessed-image cache: each split's images decoded and resized once, then memory-mapped.

A cache lives in ``cache_root()/<dataset>/<split>-<size>px-<key>/``; the key hashes the
dataset, split, file list (with sizes and modification times), image size and preprocessing
options, so a changed file or setting gets a new cache. Files there:

- ``images.u8.partial``: (N, H, W, C) uint8, filled as images are first read (the first
  epoch, in every loader worker at once) or by ``fill`` (threads);
- ``filled.u8``: one byte per image: 0 not yet, 1 cached, 2 unreadable;
- ``images.u8``: the same file renamed once every slot is filled (the atomic step); later
  runs read it with ``np.memmap`` and never decode an image again;
- ``meta.json`` (what the cache holds) and ``bad.json`` (unreadable images, on completion).

Nothing is ever written next to the user's data.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from transfusion_cli.console import info
from transfusion_cli.data.build import cache_root
from transfusion_cli.data.bundles import make_target
from transfusion_cli.data.preprocess import load_prepared, prepare_image
from transfusion_cli.errors import DataError
from transfusion_cli.io import (
    STORAGE_ERRNOS,
    OutputPathError,
    check_writable,
    storage_error,
    write_json,
)
from transfusion_cli.progress import track

if TYPE_CHECKING:
    from transfusion_cli.registry import PreprocessSpec

# Bump when preprocessing changes what a cached image holds: old caches are then ignored.
# 2: JPEGs decoded at a reduced DCT scale (preprocess.read_image(min_size=...)).
CACHE_FORMAT = 2
EMPTY, FILLED, BAD = 0, 1, 2
NVJPEG_BATCH = 32  # photos per GPU decode batch (TFX_JPEG_DECODER=nvjpeg)
SKIP_HINT = "fix or remove it, or pass --skip-bad-images to skip unreadable images"


def fill_workers() -> int:
    """Threads that decode images while filling a cache: one per CPU this process may use, up
    to 32 (libjpeg decoding, resizing and a preprocessing step's numpy work release the
    GIL)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(32, cpus))


class ImageSource:
    """Where a split's images come from: ``load(i)`` gives image i prepared (H, W, C) uint8."""

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> np.ndarray:
        """Image ``index`` decoded and preprocessed; an unreadable one raises DataError."""
        raise NotImplementedError

    def name(self, index: int) -> str:
        """How messages name image ``index`` (its file)."""
        raise NotImplementedError

    def fingerprint(self) -> Any:
        """Plain data that changes whenever the images would (part of the cache key)."""
        raise NotImplementedError


class FileSource(ImageSource):
    """Image files (PNG, JPEG, DICOM, ...), prepared exactly as ``tfx predict`` prepares them."""

    def __init__(self, paths: Sequence[Path], image_size: int, channels: int,
                 step: PreprocessSpec | None = None):
        self.paths = [Path(p) for p in paths]
        self.image_size, self.channels, self.step = image_size, channels, step

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        return load_prepared(self.paths[index], self.image_size, self.channels, self.step)

    def name(self, index: int) -> str:
        return str(self.paths[index])

    def fingerprint(self) -> Any:
        entries = []
        for path in self.paths:
            try:
                stat = path.stat()
            except FileNotFoundError:
                raise DataError(f"Image {path} does not exist.") from None
            entries.append((str(path), stat.st_size, stat.st_mtime_ns))
        fingerprint = {"files": entries,
                       "preprocess": self.step.name if self.step is not None else None}
        if self.gpu_decoding():  # GPU-decoded pixels differ slightly: a cache of their own
            fingerprint["jpeg_decoder"] = "nvjpeg"
        return fingerprint

    def gpu_decoding(self) -> bool:
        """Whether cache filling decodes these JPEGs with nvjpeg (``TFX_JPEG_DECODER``)."""
        from transfusion_cli.data.nvjpeg import JPEG_SUFFIXES, nvjpeg_requested

        return (bool(self.paths) and nvjpeg_requested()
                and all(p.suffix.lower() in JPEG_SUFFIXES for p in self.paths))

    def decode_on_gpu(self, indices: Sequence[int]) -> dict[int, Image.Image]:
        """Images ``indices`` decoded as one nvjpeg batch; {} when the batch fails (the CPU
        then decodes each image and reports any unreadable one as usual)."""
        from transfusion_cli.data.nvjpeg import decode_reduced
        from transfusion_cli.data.preprocess import check_pixel_count

        safe = []
        for index in indices:  # headers only: oversized or broken files go the CPU way
            try:
                with Image.open(self.paths[int(index)]) as image:
                    check_pixel_count(image, self.paths[int(index)])
                safe.append(int(index))
            except (DataError, OSError, ValueError, SyntaxError):
                continue
        try:
            images = decode_reduced([self.paths[i] for i in safe], self.image_size)
        except (RuntimeError, OSError, ValueError):
            return {}
        return dict(zip(safe, images, strict=True))

    def prepare_decoded(self, image: Image.Image) -> np.ndarray:
        """A decoded image prepared as ``load`` prepares a file."""
        return prepare_image(image, self.image_size, self.channels, self.step)


class NpzArraySource(ImageSource):
    """One image array inside an ``.npz`` file (MedMNIST), loaded on first use per process."""

    def __init__(self, path: Path, key: str, image_size: int, channels: int):
        self.path, self.key = Path(path), key
        self.image_size, self.channels = image_size, channels
        self._array: np.ndarray | None = None
        self._length = npz_member_shape(self.path, key)[0]

    def __len__(self) -> int:
        return self._length

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    def load(self, index: int) -> np.ndarray:
        if self._array is None:
            with np.load(self.path, allow_pickle=False) as npz:
                self._array = npz[self.key]
        array = self._array[index]
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        image = Image.fromarray(np.ascontiguousarray(array))
        return prepare_image(image, self.image_size, self.channels)

    def name(self, index: int) -> str:
        return f"{self.path}[{self.key}][{index}]"

    def fingerprint(self) -> Any:
        stat = self.path.stat()
        return {"npz": str(self.path.resolve()), "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns, "key": self.key}


def npz_member_shape(path: Path, key: str) -> tuple[int, ...]:
    """Shape of one array in an .npz file, from its header (the data is not read)."""
    return npz_member_header(path, key)[0]


def npz_member_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of one array in an .npz file from its header; a broken file or member
    is a DataError naming it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"Cannot read {key} in {path} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'truncated'}); is the .npz "
                        "file complete?") from None
    return tuple(shape), dtype


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on a cache folder across processes (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process per cache is the user's job
        yield
        return
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TB"


def _reserve(path: Path, nbytes: int, directory: Path, label: str) -> None:
    """Create ``path`` with ``nbytes`` of disk reserved, so a full disk fails here, not later."""
    free = shutil.disk_usage(directory).free
    if free < nbytes:
        raise DataError(f"The image cache for {label} needs {_human(nbytes)} but {directory} has "
                        f"{_human(free)} free; set TFX_CACHE_DIR to a larger disk or lower "
                        "--image-size.")
    with open(path, "wb") as handle:
        try:
            try:
                os.posix_fallocate(handle.fileno(), 0, max(nbytes, 1))
            except AttributeError:  # no posix_fallocate (macOS, Windows): a sparse file
                handle.truncate(nbytes)
            except OSError as exc:
                if exc.errno in STORAGE_ERRNOS:
                    raise
                handle.truncate(nbytes)  # a file system without fallocate: a sparse file
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DataError(f"No space left for the image cache of {label} in {directory}; "
                                "set TFX_CACHE_DIR to a larger disk or lower --image-size."
                                ) from None
            if exc.errno in STORAGE_ERRNOS:  # a quota or a file-size limit
                raise storage_error(path, exc) from None
            raise


class ImageCache:
    """The on-disk cache of one split: open lazily per process, fill, read, finalise."""

    def __init__(self, directory: Path, count: int, shape: tuple[int, int, int], label: str,
                 meta: dict[str, Any]):
        self.directory, self.count, self.shape = Path(directory), count, tuple(shape)
        self.label, self.meta = label, meta
        self._reset()

    def _reset(self) -> None:
        self._pid: int | None = None
        self._mapped: list[np.memmap] = []  # the maps themselves, for flush()
        # Plain ndarray views of the maps: indexing them skips np.memmap's per-call overhead.
        self._images: np.ndarray | None = None
        self._flags: np.ndarray | None = None
        self._complete = False
        self._ops = 0
        self._next_check = max(1, self.count // 8)

    def __getstate__(self) -> dict[str, Any]:  # loader workers reopen the files themselves
        state = dict(self.__dict__)
        state.update(_pid=None, _mapped=[], _images=None, _flags=None)
        return state

    def _map(self, path: Path, mode: str, shape: tuple[int, ...]) -> np.ndarray:
        mapped = np.memmap(path, dtype=np.uint8, mode=mode, shape=shape)
        self._mapped.append(mapped)
        return mapped.view(np.ndarray)

    @property
    def final_path(self) -> Path:
        return self.directory / "images.u8"

    @property
    def partial_path(self) -> Path:
        return self.directory / "images.u8.partial"

    @property
    def flags_path(self) -> Path:
        return self.directory / "filled.u8"

    @property
    def nbytes(self) -> int:
        return self.count * int(np.prod(self.shape))

    def is_complete(self) -> bool:
        """Every image is in the cache (the final file exists, of its recorded size)."""
        return self.final_path.exists() and not self._discard_if_truncated()

    def _discard_if_truncated(self) -> bool:
        """A final file of the wrong size (cut short by a full disk or a copy) is removed, with
        its flags, so the cache is rebuilt; True if that happened."""
        try:
            size = self.final_path.stat().st_size
        except FileNotFoundError:
            return False
        if size == self.nbytes:
            return False
        from transfusion_cli.console import warn

        with _locked(self.directory):
            if self.final_path.exists() and self.final_path.stat().st_size != self.nbytes:
                try:
                    for path in (self.final_path, self.flags_path, self.directory / "bad.json"):
                        path.unlink(missing_ok=True)
                except OSError as exc:
                    raise DataError(f"The image cache {self.directory} is damaged ({size} of "
                                    f"{self.nbytes} bytes) and cannot be removed ({exc.strerror})"
                                    "; delete that folder and rerun.") from None
                warn(f"{self.label}: the image cache in {self.directory} was damaged ({size} of "
                     f"{self.nbytes} bytes); rebuilding it.")
        return True

    def progress(self) -> int:
        """How many images are already cached (or known unreadable)."""
        if self.is_complete():
            return self.count
        if not self.flags_path.exists():
            return 0
        return int(np.count_nonzero(np.fromfile(self.flags_path, dtype=np.uint8)))

    def known_bad(self) -> list[int]:
        """Indices found unreadable so far (from bad.json once complete, else the flags)."""
        if self.is_complete():
            bad_file = self.directory / "bad.json"
            return json.loads(bad_file.read_text())["indices"] if bad_file.exists() else []
        if self.flags_path.exists():
            return np.flatnonzero(np.fromfile(self.flags_path, dtype=np.uint8) == BAD).tolist()
        return []

    def _open(self) -> None:
        if self._pid == os.getpid() and self._images is not None:
            return
        self._reset()
        shape = (self.count, *self.shape)
        if self.is_complete():
            self._images = self._map(self.final_path, "r", shape)
            self._complete = True
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            with _locked(self.directory):
                if self.final_path.exists():
                    self._images = self._map(self.final_path, "r", shape)
                    self._complete = True
                else:
                    if not self._partial_intact():
                        self._create()
                    self._images = self._map(self.partial_path, "r+", shape)
                    self._flags = self._map(self.flags_path, "r+", (self.count,))
        self._pid = os.getpid()

    def _partial_intact(self) -> bool:
        """A partial cache of the right size with its flags (else one was cut short)."""
        return (self.partial_path.exists() and self.flags_path.exists()
                and self.partial_path.stat().st_size == self.nbytes
                and self.flags_path.stat().st_size == self.count)

    def _create(self) -> None:
        write_json(self.directory / "meta.json", self.meta)
        np.zeros(self.count, dtype=np.uint8).tofile(self.flags_path)
        _reserve(self.partial_path, self.nbytes, self.directory, self.label)
        info(f"{self.label}: caching {self.count} preprocessed images "
             f"({self.shape[0]} px, {_human(self.nbytes)}) in {self.directory} as they are "
             "first read; later epochs and runs read the cache.")

    def _maybe_finalize(self, wrote: bool) -> None:
        """Check now and then whether every slot is filled (a scan of one byte per image).

        After a scan finds ``r`` empty slots the next one waits for ``r // 8`` writes here, so
        scans stay rare yet the end of the first epoch is caught even with several loader
        workers. A cache found full when a split is built is finalised then, so a missed
        check only delays the rename, never a later run's reuse.
        """
        self._ops += 1
        if self._ops >= (self._next_check if wrote else 1024):
            self._ops = 0
            self.finalize_if_full()

    def finalize_if_full(self) -> bool:
        """Rename the partial file to the final one once every slot is filled."""
        self._open()
        if self._complete:
            return True
        assert self._flags is not None and self._images is not None
        remaining = int(np.count_nonzero(self._flags == EMPTY))
        if remaining:
            self._next_check = max(1, remaining // 8)
            return False
        with _locked(self.directory):
            if not self.final_path.exists():
                for mapped in self._mapped:
                    mapped.flush()
                bad = np.flatnonzero(self._flags == BAD).tolist()
                write_json(self.directory / "bad.json",
                           {"indices": bad, "count": len(bad)})
                os.replace(self.partial_path, self.final_path)
                self.flags_path.unlink(missing_ok=True)
                info(f"{self.label}: image cache complete ({self.count} images, "
                     f"{_human(self.nbytes)}) in {self.directory}")
        self._complete = True
        return True

    def get(self, index: int, source: ImageSource) -> np.ndarray:
        """Image ``index`` from the cache, decoding and storing it on first read."""
        self._open()
        assert self._images is not None
        if self._complete:
            return np.array(self._images[index])
        assert self._flags is not None
        flag = self._flags[index]
        if flag == FILLED:
            self._maybe_finalize(wrote=False)
            return np.array(self._images[index])
        if flag == BAD:
            raise DataError(f"Image {source.name(index)} is unreadable (found while caching); "
                            f"{SKIP_HINT}.")
        try:
            image = self._store(index, source)
        except DataError as exc:
            self._flags[index] = BAD
            reason = (f"Cannot read image {source.name(index)} ({exc.__cause__})"
                      if exc.__cause__ is not None else str(exc).rstrip("."))
            raise DataError(f"{reason}; {SKIP_HINT}.") from exc
        self._maybe_finalize(wrote=True)
        return image

    def _store(self, index: int, source: ImageSource,
               decoded: Image.Image | None = None) -> np.ndarray:
        assert self._images is not None and self._flags is not None
        image = source.load(index) if decoded is None else source.prepare_decoded(decoded)
        if image.shape != self.shape:
            raise DataError(f"Image {source.name(index)} prepared to shape {image.shape}, "
                            f"expected {self.shape}.")
        self._images[index] = image
        self._flags[index] = FILLED
        return np.array(image)

    def fill(self, source: ImageSource, workers: int | None = None) -> list[int]:
        """Decode every image not yet cached (threads); returns the unreadable indices."""
        self._open()
        if self._complete:
            return self.known_bad()
        assert self._flags is not None
        todo = np.flatnonzero(self._flags == EMPTY)
        if len(todo):
            started = time.perf_counter()
            workers = workers or fill_workers()
            info(f"{self.label}: preprocessing {len(todo)} images with {workers} threads ...")

            def work(index: int, decoded: dict[int, Image.Image] | None = None) -> None:
                try:
                    self._store(int(index), source, (decoded or {}).get(int(index)))
                except DataError:
                    self._flags[index] = BAD

            with ThreadPoolExecutor(max_workers=workers) as pool, \
                    track(f"{self.label}: caching", len(todo), "images") as task:
                if isinstance(source, FileSource) and source.gpu_decoding():
                    # nvjpeg decodes a batch on the GPU, then the CPU threads prepare it.
                    for start in range(0, len(todo), NVJPEG_BATCH):
                        chunk = todo[start: start + NVJPEG_BATCH]
                        decoded = source.decode_on_gpu(chunk)
                        for _ in pool.map(lambda i, d=decoded: work(i, d), chunk):
                            task.advance()
                else:
                    for _ in pool.map(work, todo):
                        task.advance()
            rate = len(todo) / max(time.perf_counter() - started, 1e-9)
            info(f"{self.label}: preprocessed {len(todo)} images ({rate:.0f} images/s)")
        bad = np.flatnonzero(self._flags == BAD).tolist()
        self.finalize_if_full()
        return bad


def cache_key(payload: Any) -> str:
    """A short stable hash of plain data."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CachedImageSplit(Dataset):
    """A split whose images come from an ``ImageSource`` through an ``ImageCache``.

    ``labels`` (and ``ids``) are available without reading any image; ``keep`` selects the
    images that are used (unreadable ones are left out under ``--skip-bad-images``).
    """

    def __init__(self, source: ImageSource, cache: ImageCache, labels: np.ndarray, task: str,
                 ids: Sequence[str], keep: Sequence[int] | None = None):
        self.source, self.cache, self.task = source, cache, task
        self.all_labels = np.asarray(labels)
        self.all_ids = list(ids)
        self.keep = np.arange(len(source)) if keep is None else np.asarray(keep, dtype=np.int64)
        self.labels = self.all_labels[self.keep]
        self.ids = [self.all_ids[i] for i in self.keep]

    @property
    def paths(self) -> list[Path] | None:
        """The image files (None for array sources)."""
        if isinstance(self.source, FileSource):
            return [self.source.paths[i] for i in self.keep]
        return None

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.cache.get(int(self.keep[index]), self.source)
        return torch.from_numpy(image).permute(2, 0, 1), make_target(self.labels[index], self.task)

    def without(self, dropped: Sequence[int]) -> CachedImageSplit:
        """The same split minus source indices ``dropped``."""
        dropped_set = set(int(i) for i in dropped)
        keep = [int(i) for i in self.keep if int(i) not in dropped_set]
        return CachedImageSplit(self.source, self.cache, self.all_labels, self.task,
                                self.all_ids, keep)


# Cache folders this process started from nothing: a command that fails removes those still
# partial (a 40 GB half-written cache must not outlive the error that stopped it).
STARTED_HERE: dict[Path, Path] = {}  # cache folder -> its highest folder that was new


def discard_partial_caches() -> list[Path]:
    """Remove the caches this process started that never completed, and the folders made for
    them if they are left empty; returns the caches removed."""
    removed = []
    for directory, top in sorted(STARTED_HERE.items()):
        if directory.is_dir() and not (directory / "images.u8").exists():
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
            folder = directory.parent
            while folder == top or top in folder.parents:
                try:
                    folder.rmdir()  # only when empty: another process may be using it
                except OSError:
                    break
                folder = folder.parent
    STARTED_HERE.clear()
    return removed


def _highest_new_folder(directory: Path) -> Path:
    """The highest folder on the way to ``directory`` that does not exist yet."""
    top = directory
    for parent in directory.parents:
        if parent.exists():
            break
        top = parent
    return top


def cached_split(dataset: str, split: str, source: ImageSource, labels: np.ndarray, task: str,
                 ids: Sequence[str], image_size: int, channels: int,
                 skip_bad_images: bool, options: dict[str, Any] | None = None) -> CachedImageSplit:
    """A split backed by the cache for (dataset, split, source, size, channels, options).

    Reports on stderr whether the cache is reused. Unreadable images already known fail
    here (one line naming the file); with ``skip_bad_images`` every image is checked now
    (which fills the cache) and the unreadable ones are left out with a warning.
    """
    from transfusion_cli.console import warn

    label = f"{dataset}/{split}"
    shape = (image_size, image_size, channels)
    payload = {"format": CACHE_FORMAT, "dataset": dataset, "split": split, "shape": shape,
               "options": options or {}, "source": source.fingerprint()}
    key = cache_key(payload)
    meta = {"format": CACHE_FORMAT, "dataset": dataset, "split": split, "count": len(source),
            "shape": list(shape), "options": options or {}, "key": key,
            "first_image": source.name(0) if len(source) else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    cache = ImageCache(cache_root() / dataset / f"{split}-{image_size}px-{key}", len(source),
                       shape, label, meta)
    if not cache.is_complete():
        try:
            check_writable(cache.directory, "The image cache")
        except OutputPathError as exc:
            raise DataError(f"{exc} Set TFX_CACHE_DIR to a writable folder.") from None
        if cache.progress() == 0:
            STARTED_HERE[cache.directory] = _highest_new_folder(cache.directory)
    if not cache.is_complete() and cache.progress() == len(source) > 0:
        cache.finalize_if_full()
    if cache.is_complete():
        info(f"{label}: reusing the preprocessed-image cache in {cache.directory}")
    elif (done := cache.progress()) > 0:
        info(f"{label}: resuming the preprocessed-image cache in {cache.directory} "
             f"({done}/{len(source)} images cached)")
    split_data = CachedImageSplit(source, cache, labels, task, ids)
    if skip_bad_images:
        bad = cache.fill(source)
        if bad:
            warn(f"{label}: skipped {len(bad)} unreadable image(s) (first: {source.name(bad[0])}) "
                 "because of --skip-bad-images.")
            split_data = split_data.without(bad)
    else:
        bad = cache.known_bad()
        if bad:
            raise DataError(f"Image {source.name(bad[0])} is unreadable ({len(bad)} in {label} "
                            f"found so far); {SKIP_HINT}.")
    return split_data
