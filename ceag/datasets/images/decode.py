"""Decoding many image files into one uint8 array, row by row on every core, with notes on what was done."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ceag.datasets.images.array import CachedPixels, block
from ceag.datasets.images.pixels import ORIENTATIONS, SUPPORTED, image_shape, read_image
from ceag.datasets.layouts import DatasetError, shown

EXAMPLES = 3


ALIKE_SAMPLE = 64  # rows looked at by ``same_images_warning``


ALIKE_SIDE = 32    # ... at about this many pixels per side


def decode_workers() -> int:
    """Threads that decode at once: every core (Pillow releases the GIL while decoding)."""
    return max(1, os.cpu_count() or 1)


@dataclass
class Decoded:
    """What decoding N files gave besides their pixels."""

    ok: np.ndarray       # (N,) bool: rows that hold their image
    refused: np.ndarray  # (N,) bool: files whose pixel format is not read (never in ``ok``)
    notes: list[str]     # what was done to the pixels, one line per kind, with counts and an example file


@dataclass
class _Tally:
    """What one block of rows met; blocks are merged in row order, so examples come first to last."""

    kinds: Counter = field(default_factory=Counter)
    alpha: Counter = field(default_factory=Counter)
    transparent: int = 0
    turned: list = field(default_factory=list)    # (row, orientation) of the first few; ``n_turned`` in all
    n_turned: int = 0
    refused: dict = field(default_factory=dict)   # what the file holds -> [count, first row]
    sizes: dict = field(default_factory=dict)     # (h, w) of rows not of the reference size -> [count, rows]

    def merge(self, other: _Tally) -> None:
        self.kinds.update(other.kinds)
        self.alpha.update(other.alpha)
        self.transparent += other.transparent
        self.turned += other.turned[:max(0, EXAMPLES - len(self.turned))]
        self.n_turned += other.n_turned
        for table, more in ((self.refused, other.refused), (self.sizes, other.sizes)):
            for key, (n, first) in more.items():
                if key in table:
                    table[key][0] += n
                    if isinstance(first, list):
                        table[key][1] = (table[key][1] + first)[:EXAMPLES]
                else:
                    table[key] = [n, first]


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _notes(tally: _Tally, label) -> list[str]:
    notes = [f"{_plural(n, 'image is', 'images are')} {kind}" for kind, n in tally.kinds.items()]
    if tally.alpha:
        total = sum(tally.alpha.values())
        marks = ", ".join(f"{k} {n:,}" for k, n in tally.alpha.items())
        t = tally.transparent
        done = (f"{t:,} of them {'has' if t == 1 else 'have'} transparent pixels, composited on a white background"
                if t else "none has a transparent pixel")
        notes.append(f"{_plural(total, 'image has', 'images have')} an alpha channel or a transparent colour "
                     f"({marks}); {done}")
    if tally.n_turned:
        row, orientation = tally.turned[0]
        n = tally.n_turned
        notes.append(f"{_plural(n, 'image carries', 'images carry')} an EXIF orientation (e.g. {label(row)}: "
                     f"{ORIENTATIONS[orientation]}): turned as {'it is' if n == 1 else 'they are'} displayed")
    if tally.refused:
        n = sum(v[0] for v in tally.refused.values())
        examples = "; ".join(f"{label(row)}: {why}" for why, (_, row) in list(tally.refused.items())[:EXAMPLES])
        notes.append(f"{_plural(n, 'image', 'images')} skipped: unsupported pixel format (e.g. {examples}); "
                     f"supported: {SUPPORTED}")
    return notes


def _size_error(tally: _Tally, ok: np.ndarray, reference: tuple[int, int], label) -> DatasetError:
    sizes = {reference: [int(ok.sum()), [int(i) for i in np.flatnonzero(ok)[:EXAMPLES]]], **tally.sizes}
    order = sorted(sizes, key=lambda s: -sizes[s][0])  # stable: the reference first among equals
    common, rest = order[0], order[1:]
    parts = [f"{_plural(sizes[s][0], 'is', 'are')} {s[0]}x{s[1]} (e.g. {', '.join(label(i) for i in sizes[s][1])})"
             for s in rest[:5]]
    more = f"; and {len(rest) - 5} more sizes" if len(rest) > 5 else ""
    return DatasetError(f"images have different sizes: {sizes[common][0]:,} are {common[0]}x{common[1]} (height x "
                        f"width); {'; '.join(parts)}{more}; set image_size (--image-size N) to resize them all to "
                        "one size")


def decode_into(paths: list[Path], size: int | None, out: np.ndarray, names: list[str] | None = None) -> Decoded:
    """Decode ``paths`` into ``out`` (N, 3, H, W) uint8 row by row, on ``decode_workers`` threads.

    Rows of undecodable or refused files are left as they were (False in ``ok``). ``names``
    (N,) name the files in notes and messages (default: the file names). Raises DatasetError when
    images differ in size and no ``size`` was given, naming the less common sizes with counts and
    example files.
    """
    n = len(paths)
    ok = np.zeros(n, dtype=bool)
    refused = np.zeros(n, dtype=bool)
    height, width = out.shape[2], out.shape[3]

    def label(i: int) -> str:
        return shown(names[i] if names is not None else paths[i].name)

    def work(bounds: tuple[int, int]) -> _Tally:
        tally = _Tally()
        for i in range(*bounds):
            read = read_image(paths[i], size)
            if read.refused is not None:
                refused[i] = True
                tally.refused.setdefault(read.refused, [0, i])[0] += 1
                continue
            arr = read.pixels
            if arr is None:
                continue
            if arr.shape[:2] != (height, width):
                seen = tally.sizes.setdefault(arr.shape[:2], [0, []])
                seen[0] += 1
                if len(seen[1]) < EXAMPLES:
                    seen[1].append(i)
                continue
            out[i] = arr.transpose(2, 0, 1)
            ok[i] = True
            if read.kind:
                tally.kinds[read.kind] += 1
            if read.alpha:
                tally.alpha[read.alpha] += 1
                tally.transparent += read.transparent
            if read.turned:
                tally.n_turned += 1
                if len(tally.turned) < EXAMPLES:
                    tally.turned.append((i, read.turned))
        return tally

    chunk = max(1, min(256, n // (decode_workers() * 4) or 1))
    total = _Tally()
    with ThreadPoolExecutor(max_workers=decode_workers()) as pool:
        for tally in pool.map(work, [(s, min(n, s + chunk)) for s in range(0, n, chunk)]):
            total.merge(tally)
    if total.sizes:
        raise _size_error(total, ok, (height, width), label)
    return Decoded(ok, refused, _notes(total, label))


def decode_all(paths: list[Path], size: int | None, names: list[str] | None = None) -> tuple[np.ndarray, Decoded]:
    height, width = image_shape(paths, size)
    out = np.zeros((len(paths), 3, height, width), dtype=np.uint8)
    return out, decode_into(paths, size, out, names)


def decode(paths: list[Path], size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 (N, 3, H, W), ok (N,) bool), decoded in memory (no cache)."""
    out, decoded = decode_all(paths, size)
    return out, decoded.ok


def same_images_warning(pixels: np.ndarray | CachedPixels, ok: np.ndarray) -> str | None:
    """A warning when the decoded images (N, C, H, W) uint8 are all alike (within a level of their
    mean image on average, e.g. every pixel white): a sign that their pixels were misread; None
    otherwise.

    Looks at ``ALIKE_SAMPLE`` rows of ``ok`` (N,) bool spread evenly over the array, each at
    about ``ALIKE_SIDE`` pixels per side: a few hundred kilobytes read, whatever N and the size.
    """
    rows = np.flatnonzero(ok)
    if len(rows) < 2:
        return None
    pick = np.unique(rows[np.linspace(0, len(rows) - 1, min(ALIKE_SAMPLE, len(rows))).astype(np.int64)])
    height, width = pixels.shape[2], pixels.shape[3]
    step = max(1, -(-max(height, width) // ALIKE_SIDE))
    view = block(pixels, 0, len(pixels))
    sample = np.stack([np.asarray(view[i, :, ::step, ::step], dtype=np.float32) for i in pick])
    spread = float(np.abs(sample - sample.mean(axis=0)).mean())
    if spread >= 1.0:
        return None
    mean = float(sample.mean())
    colour = ", all white" if mean > 254 else ", all black" if mean < 1 else ""
    return (f"the images look alike: {len(pick)} sampled across the folder differ from their mean by "
            f"{spread:.1f} of 255 levels on average{colour}: a sign that the pixels were misread (a bit depth or "
            "pixel format read wrongly) or that the folder holds copies of one image; look at a few of the files, "
            "and at the notes on how they were read")
