"""Decoded images cached on disk, once per fingerprint and image size, as a memory-mappable file.

A cached load copies nothing: splits are memory-mapped views of the file (``array.block``), read as
training reads them and shared through the page cache by every process of a grid. The cache folder
``<cache>/images/<key>/`` is built in a temporary folder and renamed into place, under an exclusive
lock: a killed writer leaves only a temporary folder (removed by the next writer), and a second process
asking for the same key waits and then reads what the first wrote. The notes of the decoding (pixel
formats, orientations, refused files) are kept with the entry, so a cached load says the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ceag.datasets.images.array import CachedPixels
from ceag.datasets.images.decode import Decoded, decode_all, decode_into, same_images_warning
from ceag.datasets.images.pixels import image_shape
from ceag.datasets.layouts import DatasetError

CACHE_VERSION = 2  # bump when decoding changes (resampling filter, colour conversion, value ranges, orientation)


def cache_key(fingerprint: str, size: int | None, names: list[str]) -> str:
    """The cache entry of these files (``names``, relative, in order) at this size and fingerprint.
    Names are hashed as the file system holds them (``os.fsencode``), UTF-8 or not."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{fingerprint}|{size}".encode())
    for name in names:
        h.update(os.fsencode(name) + b"\0")
    return h.hexdigest()[:20]


@dataclass
class Images:
    """The decoded images of a list of files, and what decoding did to them."""

    pixels: np.ndarray | CachedPixels  # (N, 3, H, W) uint8; read rows with ``block``
    ok: np.ndarray                     # (N,) bool: rows that hold their image
    refused: np.ndarray                # (N,) bool: files skipped for their pixel format
    notes: list[str]                   # what was done to the pixels (``decode_into``)
    warnings: list[str]                # e.g. the images look alike (``same_images_warning``)
    how: str                           # "cache" | "decoded" | "decoded (no cache: why)"


def load_images(root: Path, names: list[str], size: int | None, *, cache_dir: Path | None,
                fingerprint: str | None) -> Images:
    """The files ``names`` (relative to ``root``), in that order, decoded (``decode_into``).

    With a cache folder and a fingerprint, pixels are the ``CachedPixels`` of the cache entry
    (decoded into it first when absent, with the notes and the refused rows beside it). Without,
    or when the folder cannot be written, they are decoded into memory. Raises DatasetError when
    images differ in size and no ``size`` was given.
    """
    def paths() -> list[Path]:
        return [root / n for n in names]

    if cache_dir is None or fingerprint is None:
        pixels, decoded = decode_all(paths(), size, names)
        return _images(pixels, decoded, "decoded")
    entry = Path(cache_dir) / "images" / cache_key(fingerprint, size, names)
    created = [p for p in (entry.parent, entry.parent.parent) if not p.exists()]
    lock = entry.parent / f"{entry.name}.lock"
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with _lock(lock):
            if not _complete(entry, len(names)):
                _write(entry, paths(), size, names)
                how = "decoded"
            else:
                how = "cache"
            decoded = _entry_decoded(entry)
    except OSError as err:
        pixels, decoded = decode_all(paths(), size, names)
        return _images(pixels, decoded, f"decoded (no cache: {err.strerror or err})")
    except BaseException:
        # Bad data (e.g. images of different sizes) leaves the results folder as it was.
        if not entry.exists():
            lock.unlink(missing_ok=True)
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    return _images(CachedPixels(entry / "pixels.npy"), decoded, how)


def _images(pixels: np.ndarray | CachedPixels, decoded: Decoded, how: str) -> Images:
    warning = same_images_warning(pixels, decoded.ok)
    return Images(pixels, decoded.ok, decoded.refused, decoded.notes, [warning] if warning else [], how)


def load_or_decode(root: Path, names: list[str], size: int | None, *, cache_dir: Path | None,
                   fingerprint: str | None) -> tuple[np.ndarray | CachedPixels, np.ndarray, str]:
    """(pixels (N, 3, H, W) uint8, ok (N,) bool, how: "cache" | "decoded" | "decoded (no cache: why)")
    of the files ``names`` (relative to ``root``), in that order: ``load_images`` without its notes."""
    got = load_images(root, names, size, cache_dir=cache_dir, fingerprint=fingerprint)
    return got.pixels, got.ok, got.how


def _complete(entry: Path, n: int) -> bool:
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    if (meta.get("n") != n or meta.get("version") != CACHE_VERSION or not isinstance(meta.get("notes"), list)
            or not (entry / "ok.npy").is_file() or not (entry / "refused.npy").is_file()):
        return False
    try:  # a damaged file (truncated, or not ours) is decoded again, not served
        return len(CachedPixels(entry / "pixels.npy")) == n
    except (OSError, ValueError, DatasetError):
        return False


def _entry_decoded(entry: Path) -> Decoded:
    meta = json.loads((entry / "meta.json").read_text())
    return Decoded(np.load(entry / "ok.npy"), np.load(entry / "refused.npy"), list(meta["notes"]))


def _write(entry: Path, paths: list[Path], size: int | None, names: list[str] | None = None) -> None:
    # Only the lock holder gets here: leftovers of a killed writer can go.
    for stale in entry.parent.glob(f".{entry.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(entry, ignore_errors=True)  # an incomplete entry of an older layout
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=entry.parent))
    try:
        height, width = image_shape(paths, size)
        pixels = np.lib.format.open_memmap(tmp / "pixels.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(paths), 3, height, width))
        decoded = decode_into(paths, size, pixels, names)
        pixels.flush()
        del pixels
        np.save(tmp / "ok.npy", decoded.ok)
        np.save(tmp / "refused.npy", decoded.refused)
        (tmp / "meta.json").write_text(json.dumps({"n": len(paths), "size": size, "version": CACHE_VERSION,
                                                   "shape": [3, height, width], "notes": decoded.notes}))
        for name in ("pixels.npy", "ok.npy", "refused.npy", "meta.json"):
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
