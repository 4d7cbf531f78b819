"""Decoding image files into one uint8 array, once: straight into a preallocated array, and
cached on disk as a memory-mappable file keyed by the data's fingerprint and the image size.

Peak memory while decoding is near the size of the pixels (each image is decoded, resized and
written into its row; no list of decoded images, no stack, no transpose copy). A cached load
copies nothing: splits are memory-mapped views of the file (``block``), read as training reads
them and shared through the page cache by every process of a grid. The cache
folder ``<cache>/images/<key>/`` is built in a temporary folder and renamed into place, under
an exclusive lock: a killed writer leaves only a temporary folder (removed by the next writer),
and a second process asking for the same key waits and then reads what the first wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .layouts import DatasetError

CACHE_VERSION = 1  # bump when decoding changes (resampling filter, colour conversion)


def decode_workers() -> int:
    """Threads that decode at once: every core (Pillow releases the GIL while decoding)."""
    return max(1, os.cpu_count() or 1)


def _read(path: Path, size: int | None) -> np.ndarray | None:
    """(H, W, 3) uint8 pixels of one file, resized to ``size`` x ``size`` when given; None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _shape(paths: list[Path], size: int | None) -> tuple[int, int]:
    if size is not None:
        return size, size
    for path in paths:
        arr = _read(path, None)
        if arr is not None:
            return arr.shape[0], arr.shape[1]
    return 1, 1


def decode_into(paths: list[Path], size: int | None, out: np.ndarray) -> np.ndarray:
    """Decode ``paths`` into ``out`` (N, 3, H, W) uint8 row by row; returns the ok mask (N,) bool.

    Rows of undecodable files are left as they were (and marked False). Raises DatasetError when
    images differ in size and no ``size`` was given.
    """
    n = len(paths)
    ok = np.zeros(n, dtype=bool)
    height, width = out.shape[2], out.shape[3]
    odd: list[tuple[str, tuple[int, int]]] = []

    def work(bounds: tuple[int, int]) -> None:
        for i in range(*bounds):
            arr = _read(paths[i], size)
            if arr is None:
                continue
            if arr.shape[:2] != (height, width):
                odd.append((paths[i].name, arr.shape[:2]))
                continue
            out[i] = arr.transpose(2, 0, 1)
            ok[i] = True

    chunk = max(1, min(256, n // (decode_workers() * 4) or 1))
    with ThreadPoolExecutor(max_workers=decode_workers()) as pool:
        list(pool.map(work, [(s, min(n, s + chunk)) for s in range(0, n, chunk)]))
    if odd:
        name, shape = odd[0]
        raise DatasetError(f"images have different sizes ({len(odd)} differ from {height}x{width}, e.g. {name} is "
                           f"{shape[0]}x{shape[1]}); set image_size (--image-size N) to resize them to one size")
    return ok


def decode(paths: list[Path], size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 (N, 3, H, W), ok (N,) bool), decoded in memory (no cache)."""
    height, width = _shape(paths, size)
    out = np.zeros((len(paths), 3, height, width), dtype=np.uint8)
    return out, decode_into(paths, size, out)


def cache_key(fingerprint: str, size: int | None, names: list[str]) -> str:
    """The cache entry of these files (``names``, relative, in order) at this size and fingerprint."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{fingerprint}|{size}".encode())
    for name in names:
        h.update(name.encode() + b"\0")
    return h.hexdigest()[:20]


def load_or_decode(root: Path, names: list[str], size: int | None, *, cache_dir: Path | None,
                   fingerprint: str | None) -> tuple[np.ndarray | CachedPixels, np.ndarray, str]:
    """(pixels (N, 3, H, W) uint8, ok (N,) bool, how: "cache" | "decoded" | "decoded (no cache: why)")
    of the files ``names`` (relative to ``root``), in that order.

    With a cache folder and a fingerprint, pixels are the ``CachedPixels`` of the cache entry
    (decoded into it first when absent; read rows with ``block``). Without, or when the folder
    cannot be written, they are decoded into memory.
    """
    def paths() -> list[Path]:
        return [root / n for n in names]

    if cache_dir is None or fingerprint is None:
        return (*decode(paths(), size), "decoded")
    entry = Path(cache_dir) / "images" / cache_key(fingerprint, size, names)
    created = [p for p in (entry.parent, entry.parent.parent) if not p.exists()]
    lock = entry.parent / f"{entry.name}.lock"
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with _lock(lock):
            if not _complete(entry, len(names)):
                _write(entry, paths(), size)
                how = "decoded"
            else:
                how = "cache"
    except OSError as err:
        return (*decode(paths(), size), f"decoded (no cache: {err.strerror or err})")
    except BaseException:
        # Bad data (e.g. images of different sizes) leaves the results folder as it was.
        if not entry.exists():
            lock.unlink(missing_ok=True)
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    return CachedPixels(entry / "pixels.npy"), np.load(entry / "ok.npy"), how


class CachedPixels:
    """The pixels of a cache entry (N, C, H, W) uint8, mapped into memory block by block (``block``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
            end = fh.seek(0, os.SEEK_END)
        if fortran or dtype != np.uint8 or len(shape) != 4:
            raise DatasetError(f"{self.path} is not a cache of uint8 images; delete it to rebuild it")
        self.shape = tuple(shape)
        if end < self.offset + int(np.prod(self.shape)):
            raise DatasetError(f"{self.path} is truncated; delete it to rebuild it")

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = np.array(self.block(0, len(self)))
        return out if dtype is None else out.astype(dtype)

    def block(self, first: int, last: int) -> np.ndarray:
        """(last - first, C, H, W) uint8: rows ``first`` to ``last`` (excluded) as a private
        (copy-on-write) memory map of the file: nothing is read until a row is used, and writes,
        if any, never reach the file."""
        if last <= first:
            return np.empty((0, *self.shape[1:]), dtype=np.uint8)
        row = int(np.prod(self.shape[1:]))
        return np.memmap(self.path, dtype=np.uint8, mode="c", offset=self.offset + first * row,
                         shape=(last - first, *self.shape[1:]))


def block(pixels: np.ndarray | CachedPixels, first: int, last: int) -> np.ndarray:
    """Rows ``first`` to ``last`` (excluded) of an in-memory array or of a cache entry, as a view."""
    if isinstance(pixels, CachedPixels):
        return pixels.block(first, last)
    return pixels[first:last]


def _complete(entry: Path, n: int) -> bool:
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    if meta.get("n") != n or not (entry / "ok.npy").is_file():
        return False
    try:  # a damaged file (truncated, or not ours) is decoded again, not served
        return len(CachedPixels(entry / "pixels.npy")) == n
    except (OSError, ValueError, DatasetError):
        return False


def _write(entry: Path, paths: list[Path], size: int | None) -> None:
    # Only the lock holder gets here: leftovers of a killed writer can go.
    for stale in entry.parent.glob(f".{entry.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(entry, ignore_errors=True)  # an incomplete entry of an older layout
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=entry.parent))
    try:
        height, width = _shape(paths, size)
        pixels = np.lib.format.open_memmap(tmp / "pixels.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(paths), 3, height, width))
        ok = decode_into(paths, size, pixels)
        pixels.flush()
        del pixels
        np.save(tmp / "ok.npy", ok)
        (tmp / "meta.json").write_text(json.dumps({"n": len(paths), "size": size, "version": CACHE_VERSION,
                                                   "shape": [3, height, width]}))
        for name in ("pixels.npy", "ok.npy", "meta.json"):
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def _lock(path: Path):
    fh = open(path, "a+")  # noqa: SIM115
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        fh.close()
