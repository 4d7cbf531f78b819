"""Reading one image file: every pixel format with its own value range, or refused, and EXIF orientation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    if transparent and alpha is not None:
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
    """One file as read by ``read_image``: its pixels (H, W, 3) uint8, or None when undecodable or refused."""

    pixels: np.ndarray | None
    kind: str | None = None
    alpha: str | None = None
    transparent: bool = False
    turned: int = 0             # the EXIF orientation applied
    refused: str | None = None  # what the file holds, when its pixel format is not read


def read_image(path: Path, size: int | None) -> Read:
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
        pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))
    return Read(pixels, converted.kind, converted.alpha, converted.transparent, turned)


def image_shape(paths: list[Path], size: int | None) -> tuple[int, int]:
    if size is not None:
        return size, size
    for path in paths:
        arr = read_image(path, None).pixels
        if arr is not None:
            return arr.shape[0], arr.shape[1]
    return 1, 1
