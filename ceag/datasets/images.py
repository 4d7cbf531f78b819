"""Decoding image files into one uint8 array, once: straight into a preallocated array, and
cached on disk as a memory-mappable file keyed by the data's fingerprint and the image size.

Peak memory while decoding is near the size of the pixels (each image is decoded, resized and
written into its row; no list of decoded images, no stack, no transpose copy). A cached load
copies nothing: splits are memory-mapped views of the file (``block``), read as training reads
them and shared through the page cache by every process of a grid. The cache
folder ``<cache>/images/<key>/`` is built in a temporary folder and renamed into place, under
an exclusive lock: a killed writer leaves only a temporary folder (removed by the next writer),
and a second process asking for the same key waits and then reads what the first wrote.

Every pixel format is read with its own value range, or refused (``to_rgb8``): 16-bit
grayscale is scaled from 0–65535 to 0–255, floats in [0, 1] to 0–255, transparent pixels are
composited on white, and photos are turned as their EXIF orientation says. What was done is
returned as notes (one line per kind, with counts and an example file), kept with the cache
entry so a cached load says the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .layouts import DatasetError, shown

CACHE_VERSION = 2  # bump when decoding changes (resampling filter, colour conversion, value ranges, orientation)

# Pixel formats (Pillow modes) and how each is read.
EIGHT_BIT = frozenset({"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})  # as Pillow converts them
GRAY16 = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})                                 # scaled to 0–255
ALPHA = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})                                   # composited on white
SUPPORTED = ("8-bit 1, L, P, RGB, RGBX, CMYK, YCbCr, LAB, HSV; 16-bit grayscale (I;16, I;16B, I;16L, I;16N, or I "
             "when the file says its samples are 16-bit); 16-bit RGB, RGBA and CMYK (read at 8 bits); float (F) "
             "with values in [0, 1]; alpha channels and transparent colours (composited on white)")
# EXIF orientation (tag 0x0112) -> how the stored pixels are turned to be shown as viewers show them
ORIENTATIONS = {2: "mirrored left to right", 3: "rotated 180°", 4: "mirrored top to bottom",
                5: "mirrored across its diagonal", 6: "rotated 90° clockwise", 7: "mirrored across its other diagonal",
                8: "rotated 90° counter-clockwise"}
EXAMPLES = 3
ALIKE_SAMPLE = 64  # rows looked at by ``same_images_warning``
ALIKE_SIDE = 32    # ... at about this many pixels per side


class Refused(ValueError):
    """A pixel format that is not read; the message says what the file holds."""


@dataclass
class Converted:
    """One image as (H, W, 3) uint8 RGB, and what was done to get there."""

    pixels: np.ndarray
    kind: str | None = None    # how the value range was changed, e.g. "16-bit grayscale (I;16): scaled from ..."
    alpha: str | None = None   # how the image marks transparency ("RGBA", "P with a transparent colour")
    transparent: bool = False  # some pixel is not opaque: composited on white


def _scale(values: np.ndarray, top: int) -> np.ndarray:
    """Integers in 0..``top`` to uint8 0..255, to the nearest level (``top`` odd: no ties)."""
    return ((values.astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8)


def to_rgb8(img, *, rawmode: str | None = None, bits: int | None = None) -> Converted:
    """(H, W, 3) uint8 RGB of a Pillow image, read with its real value range.

    ``rawmode`` and ``bits`` are what the file says of its samples (``_file_samples``: Pillow's
    raw mode, the TIFF BitsPerSample). 8-bit modes convert as Pillow converts them; 16-bit
    grayscale (``I;16*``, or ``I`` when the file says 16 bits) scales 0..2**bits-1 to 0..255,
    rounded; ``F`` in [0, 1] scales to 0..255; an alpha channel or transparent colour is
    composited on white; 16-bit RGB(A)/CMYK, which Pillow reads as their high bytes, are taken as
    read. Raises ``Refused`` (what the file holds) for anything else: ``I`` without 16-bit samples,
    ``F`` outside [0, 1] or NaN, 16-bit values outside 0..65535, other modes.
    """
    mode = img.mode
    kind = alpha_kind = None
    alpha = None
    if mode in GRAY16 or mode == "I":
        values = np.asarray(img)
        if mode == "I":
            if bits != 16:
                raise Refused(f"32-bit integer (I){f', {bits}-bit samples' if bits and bits != 32 else ''}, "
                              "which has no standard value range")
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi > 65535:
                raise Refused(f"16-bit integer samples (I) with values from {lo} to {hi}, outside 0–65535")
            top, what = 65535, "16-bit grayscale (I, 16-bit samples)"
        else:
            top = 2 ** bits - 1 if bits and 8 < bits < 16 else 65535
            if int(values.max()) > top:
                top = 65535
            what = f"{top.bit_length()}-bit grayscale ({mode})"
        kind = f"{what}: scaled from 0–{top} to 0–255"
        gray = _scale(values, top)
        key = img.info.get("transparency")
        if isinstance(key, int):
            alpha, alpha_kind = np.where(values == key, 0, 255).astype(np.uint8), f"{mode} with a transparent colour"
        rgb = np.repeat(gray[..., None], 3, axis=2)
    elif mode == "F":
        values = np.asarray(img, dtype=np.float64)
        finite = values[np.isfinite(values)]
        nan = finite.size < values.size
        if nan or finite.min() < 0 or finite.max() > 1:
            found = (f"values from {finite.min():g} to {finite.max():g}{' and NaN' if nan else ''}" if finite.size
                     else "NaN values only")
            raise Refused(f"float (F) with {found}, outside [0, 1]")
        kind = "float (F) with values in [0, 1]: scaled to 0–255"
        rgb = np.repeat(np.rint(values * 255).astype(np.uint8)[..., None], 3, axis=2)
    elif mode in ALPHA or (mode in EIGHT_BIT and "transparency" in img.info):
        rgba = np.asarray((img.convert("LA") if mode == "La" else img).convert("RGBA"))
        rgb, alpha = rgba[..., :3], rgba[..., 3]
        alpha_kind = mode if mode in ALPHA else f"{mode} with a transparent colour"
    elif mode in EIGHT_BIT:
        rgb = np.asarray(img if mode == "RGB" else img.convert("RGB"))
    else:
        raise Refused(f"pixel format {mode}")
    if rawmode and ";16" in rawmode and (mode in EIGHT_BIT or mode in ALPHA):
        kind = (f"16-bit {rawmode.split(';')[0]} ({rawmode}): read at 8 bits per channel, the high byte of each "
                "sample (0–65535 to 0–255)")
    transparent = alpha is not None and int(alpha.min()) < 255
    if transparent:
        a = alpha.astype(np.uint32)[..., None]
        rgb = ((rgb.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
    return Converted(np.ascontiguousarray(rgb, dtype=np.uint8), kind, alpha_kind, transparent)


def _file_samples(img) -> tuple[str | None, int | None]:
    """(Pillow's raw mode, bits per sample) as the file says, read before the pixels are loaded."""
    rawmode = None
    if img.tile:
        args = img.tile[0][3]
        if isinstance(args, tuple) and args and isinstance(args[0], str):
            rawmode = args[0]
        elif isinstance(args, str):
            rawmode = args
    bits = None
    tags = getattr(img, "tag_v2", None)
    if tags is not None and tags.get(258):
        per_sample = tags.get(258)
        bits = int(per_sample[0] if isinstance(per_sample, tuple) else per_sample)
    elif rawmode and ";16" in rawmode:
        bits = 16
    return rawmode, bits


def _orientation(img) -> int:
    """The EXIF orientation (2..8) that turns the stored pixels into the displayed image; 0 if upright."""
    try:
        value = img.getexif().get(0x0112)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):
        return 0
    return value if value in ORIENTATIONS else 0


@dataclass
class Read:
    """One file as read by ``_read``: its pixels (H, W, 3) uint8, or None when undecodable or refused."""

    pixels: np.ndarray | None
    kind: str | None = None
    alpha: str | None = None
    transparent: bool = False
    turned: int = 0             # the EXIF orientation applied
    refused: str | None = None  # what the file holds, when its pixel format is not read


def decode_workers() -> int:
    """Threads that decode at once: every core (Pillow releases the GIL while decoding)."""
    return max(1, os.cpu_count() or 1)


def _read(path: Path, size: int | None) -> Read:
    """One file, turned upright and resized to ``size`` x ``size`` when given (``to_rgb8``)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            rawmode, bits = _file_samples(img)
            img.load()
            turned = _orientation(img)
            upright = ImageOps.exif_transpose(img) if turned else img
            converted = to_rgb8(upright, rawmode=rawmode, bits=bits)
    except Refused as why:
        return Read(None, refused=str(why))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return Read(None)
    pixels = converted.pixels
    if size is not None and pixels.shape[:2] != (size, size):
        pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))
    return Read(pixels, converted.kind, converted.alpha, converted.transparent, turned)


def _shape(paths: list[Path], size: int | None) -> tuple[int, int]:
    if size is not None:
        return size, size
    for path in paths:
        arr = _read(path, None).pixels
        if arr is not None:
            return arr.shape[0], arr.shape[1]
    return 1, 1


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
            read = _read(paths[i], size)
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


def _decode(paths: list[Path], size: int | None, names: list[str] | None = None) -> tuple[np.ndarray, Decoded]:
    height, width = _shape(paths, size)
    out = np.zeros((len(paths), 3, height, width), dtype=np.uint8)
    return out, decode_into(paths, size, out, names)


def decode(paths: list[Path], size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 (N, 3, H, W), ok (N,) bool), decoded in memory (no cache)."""
    out, decoded = _decode(paths, size)
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
        pixels, decoded = _decode(paths(), size, names)
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
        pixels, decoded = _decode(paths(), size, names)
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
        height, width = _shape(paths, size)
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
