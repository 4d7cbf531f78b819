"""Decoding image files into one uint8 array, once: straight into a preallocated array, and
cached on disk as a memory-mappable file keyed by the data's fingerprint and the image size.

Peak memory while decoding is near the size of the pixels (each image is decoded, resized and
written into its row; no list of decoded images, no stack, no transpose copy). The cache
folder ``<cache>/images/<key>/`` is built in a temporary folder and renamed into place, under
an exclusive lock: a killed writer leaves only a temporary folder (removed by the next writer),
and a second process asking for the same key waits and then reads what the first wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .layouts import DatasetError

HUGE_PAGES_FROM = 64 << 20  # bytes: smaller arrays gain nothing from huge pages
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


def load_or_decode(paths: list[Path], size: int | None, *, cache_dir: Path | None, fingerprint: str | None,
                   names: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """(pixels (N, 3, H, W) uint8, ok (N,) bool, how: "cache" | "decoded" | "decoded (no cache: why)").

    With a cache folder and a fingerprint, pixels are a ``CachedPixels`` of the cache entry
    (decoded into it first when absent); use ``take`` for rows. Without, or when the folder cannot be written, they are
    decoded in memory.
    """
    if cache_dir is None or fingerprint is None:
        return (*decode(paths, size), "decoded")
    entry = Path(cache_dir) / "images" / cache_key(fingerprint, size, names)
    created = [p for p in (entry.parent, entry.parent.parent) if not p.exists()]
    lock = entry.parent / f"{entry.name}.lock"
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with _lock(lock):
            if not _complete(entry, len(paths)):
                _write(entry, paths, size)
                how = "decoded"
            else:
                how = "cache"
    except OSError as err:
        return (*decode(paths, size), f"decoded (no cache: {err.strerror or err})")
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
    """The pixels of a cache entry, read row by row into the arrays that need them.

    Rows are read with plain file reads (no memory map), so a process holds only the rows it
    took, once: loading a dataset peaks near the size of its pixels.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran or dtype != np.uint8 or len(shape) != 4:
            raise DatasetError(f"{self.path} is not a cache of uint8 images; delete it to rebuild it")
        self.shape = tuple(shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = self.take(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), C, H, W) uint8: the given rows, in the given order."""
        return self.take_many({"rows": rows})["rows"]

    def take_many(self, parts: dict[str, np.ndarray], chunk_bytes: int = 32 << 20) -> dict[str, np.ndarray]:
        """{name: rows} -> {name: (len(rows), C, H, W) uint8}, in one sequential pass over the file
        (chunks of ``chunk_bytes``), so memory holds the outputs and one chunk."""
        size = int(np.prod(self.shape[1:]))
        out = {k: empty_pixels((len(v), *self.shape[1:])) for k, v in parts.items()}
        # destination of every source row: (part, position), sorted by source row
        src = np.concatenate([np.asarray(v, dtype=np.int64) for v in parts.values()] or [np.zeros(0, np.int64)])
        part = np.concatenate([np.full(len(v), i) for i, v in enumerate(parts.values())] or [np.zeros(0, int)])
        pos = np.concatenate([np.arange(len(v)) for v in parts.values()] or [np.zeros(0, int)])
        order = np.argsort(src, kind="stable")
        src, part, pos = src[order], part[order], pos[order]
        names = list(parts)
        flats = [out[k].reshape(len(out[k]), size) for k in names]
        per_chunk = max(1, chunk_bytes // size)
        buffer = np.empty((per_chunk, size), dtype=np.uint8)
        with open(self.path, "rb", buffering=0) as fh:
            start = 0
            while start < len(src):
                first = int(src[start])
                stop = int(np.searchsorted(src, first + per_chunk, side="left"))
                last = int(src[stop - 1])
                count = last - first + 1
                fh.seek(self.offset + first * size)
                view = memoryview(buffer[:count].reshape(-1))
                if fh.readinto(view) != count * size:
                    raise DatasetError(f"{self.path} is truncated; delete it to rebuild it")
                sel = slice(start, stop)
                for k in range(len(names)):
                    mask = part[sel] == k
                    if not mask.any():
                        continue
                    rows, where = src[sel][mask] - first, pos[sel][mask]
                    if where[-1] - where[0] + 1 == len(where) and (np.diff(where) == 1).all():
                        # sorted parts land in a contiguous block: one copy, straight into place
                        # (mode="clip": rows are in range, and mode="raise" would copy through a buffer)
                        np.take(buffer, rows, axis=0, out=flats[k][where[0]:where[-1] + 1], mode="clip")
                    else:
                        flats[k][where] = buffer[rows]
                start = stop
        return out


def empty_pixels(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialized uint8 array; a large one in anonymous memory backed by huge pages where the
    kernel offers them, so filling it costs a fraction of the page faults (2.9 GB: about 0.6 s
    instead of 4.5 s here)."""
    size = int(np.prod(shape))
    if size < HUGE_PAGES_FROM or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.empty(shape, dtype=np.uint8)
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(OSError):  # a kernel without transparent huge pages: ordinary pages
        region.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(region, dtype=np.uint8).reshape(shape)  # the array keeps the region alive


def take_many(pixels, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{name: rows} of an in-memory array or of a cache entry, each as a new contiguous array."""
    if isinstance(pixels, CachedPixels):
        return pixels.take_many(parts)
    return {k: np.ascontiguousarray(pixels[v]) for k, v in parts.items()}


def _complete(entry: Path, n: int) -> bool:
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("n") == n and (entry / "pixels.npy").is_file() and (entry / "ok.npy").is_file()


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
