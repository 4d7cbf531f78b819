"""Data that is easy to misread: pixel formats with other value ranges, EXIF orientation, images
that are all alike, label files in other encodings, paths that leave the data folder, file names
that are not UTF-8, and groups a split has no sample of. Every folder is tiny and generated here."""

import codecs
import csv
import json
import os
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps, PngImagePlugin

from ceag.config.run_config import RunConfig
from ceag.datasets import DatasetError, load_dataset
from ceag.datasets import fingerprint as fp_module
from ceag.datasets.custom import load_custom
from ceag.datasets.faces import load_fairface, load_utkface
from ceag.datasets.fingerprint import files_read
from ceag.datasets.images.cache import load_images
from ceag.datasets.images.decode import decode, same_images_warning
from ceag.datasets.images.pixels import to_rgb8
from ceag.datasets.labels import read_csv
from ceag.run.data import resolve
from tests.helpers import ceag_main

TINY = dict(model="cnn", image_size=8, dense_epochs=1, prune_epochs=1, finetune_epochs=1, val_fraction=0.0,
            device="cpu", sparsity=0.5)


# -- writing files by hand ---------------------------------------------------------------------
def png16(arr: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG of ``arr`` (H, W, C) uint16: IHDR, one zlib'd IDAT (filter 0 per row), IEND."""
    h, w = arr.shape[:2]

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def tiff(arr: np.ndarray, sample_format: int = 1, extra_samples: tuple[int, ...] = ()) -> bytes:
    """A little-endian, uncompressed, one-strip TIFF of ``arr`` (H, W, C) with the bits of its dtype."""
    h, w, c = arr.shape
    bits = arr.dtype.itemsize * 8
    data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    data += b"\0" * (len(data) % 2)
    tags = {256: (4, [w]), 257: (4, [h]), 258: (3, [bits] * c), 259: (3, [1]), 262: (3, [2 if c >= 3 else 1]),
            273: (4, [8]), 277: (3, [c]), 278: (4, [h]), 279: (4, [h * w * c * bits // 8]), 284: (3, [1]),
            339: (3, [sample_format] * c)}
    if extra_samples:
        tags[338] = (3, list(extra_samples))
    overflow, entries, at = b"", [], 8 + len(data)
    for tag in sorted(tags):
        kind, values = tags[tag]
        raw = struct.pack("<" + {3: "H", 4: "I"}[kind] * len(values), *values)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\0")
        else:
            field = struct.pack("<I", at + len(overflow))
            overflow += raw + b"\0" * (len(raw) % 2)
        entries.append(struct.pack("<HHI", tag, kind, len(values)) + field)
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", at + len(overflow)) + data + overflow + ifd


def save(img: Image.Image, path, fmt: str, **params) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **params)


def write_labels(folder, rows, columns=("file", "class", "grp")):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)


def custom_cfg(folder, **changes) -> RunConfig:
    settings = {**TINY, "target": "class", "groups": ("grp",), **changes}
    return RunConfig(dataset="custom", data_dir=str(folder), **settings)


def notes_of(data) -> str:
    return " | ".join(data.report["notes"])


def rint(values) -> np.ndarray:
    return np.rint(np.asarray(values, dtype=np.float64)).astype(np.uint8)


def over_white(rgb, alpha) -> np.ndarray:
    """``rgb`` (..., 3) composited with ``alpha`` (...) on white, to the nearest level."""
    rgb, a = np.asarray(rgb, dtype=np.float64), np.asarray(alpha, dtype=np.float64)[..., None] / 255
    return rint(rgb * a + 255 * (1 - a))


# -- 1. pixel formats -------------------------------------------------------------------------
def test_16_bit_grayscale_pngs_keep_their_brightness_through_the_cache(tmp_path):
    folder = tmp_path / "data"
    rng = np.random.default_rng(0)
    rows, values = [], {}
    for grp in ("a", "b", "c"):
        for cls, level in (("dim", 8000), ("bright", 30000)):
            for k in range(4):
                name = f"img/{grp}_{cls}_{k}.png"
                v = (level + rng.integers(-300, 300, (8, 8))).astype(np.uint16)
                save(Image.fromarray(v), folder / name, "PNG")
                assert Image.open(folder / name).mode == "I;16"
                rows.append((name, cls, grp))
                values[name] = v
    write_labels(folder, rows)
    names = sorted(values)
    pixels, ok = decode([folder / n for n in names], None)
    assert ok.all()
    for i, name in enumerate(names):
        expected = rint(values[name] / 65535 * 255)
        assert all(np.array_equal(pixels[i, c], expected) for c in range(3)), name

    results = tmp_path / "results"
    cfg = resolve(custom_cfg(folder), results)
    first = load_custom(cfg, results / "cache")
    again = load_custom(cfg, results / "cache")
    assert (first.report["image_source"], again.report["image_source"]) == ("decoded", "cache")
    for data in (first, again):
        assert "24 images are 16-bit grayscale (I;16): scaled from 0–65535 to 0–255" in notes_of(data)
        assert not data.skipped and not data.report["warnings"]
        by_class = {}
        for split in data.splits.values():
            x = split.inputs().float().mean(dim=(1, 2, 3)).numpy()
            for c in (0, 1):
                by_class.setdefault(c, []).extend(x[split.y.numpy() == c])
        # class 0 is "bright" (sorted names), class 1 "dim": 30000 -> 117, 8000 -> 31
        assert abs(np.mean(by_class[0]) - 116.7) < 1.5 and abs(np.mean(by_class[1]) - 31.1) < 1.5


def _img(mode, arr, **info):
    img = Image.fromarray(arr) if mode is None else Image.frombytes(mode, arr.shape[1::-1], arr.tobytes())
    img.info.update(info)
    return img


G16 = np.array([[0, 255, 256, 8000], [30000, 32767, 32768, 65535]], dtype=np.uint16)
RGB8 = np.array([[[10, 20, 30], [200, 100, 0]], [[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
ALPHA = np.array([[0, 128], [255, 7]], dtype=np.uint8)
PALETTE = [10, 20, 30, 200, 100, 0, 0, 0, 0, 255, 255, 255] + [0] * (256 * 3 - 12)


def _paletted():
    img = Image.frombytes("P", (2, 2), bytes([0, 1, 2, 3]))
    img.putpalette(PALETTE)
    return img


def _paletted_alpha():
    img = Image.frombytes("PA", (2, 2), bytes([0, int(ALPHA[0, 0]), 1, int(ALPHA[0, 1]), 2, int(ALPHA[1, 0]),
                                               3, int(ALPHA[1, 1])]))
    img.putpalette(PALETTE)
    return img


def _file_cases():
    """(id, writer(path), expected pixels (H, W, 3) or None when refused, words of its note)."""
    gray16 = np.rint(G16 / 65535 * 255).astype(np.uint8)
    f01 = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    rgb16 = np.array([[[8000, 30000, 65535], [0x1280, 0x12FF, 0x0100]], [[65535, 1, 32768], [0, 0, 0]]],
                     dtype=np.uint16)
    a16 = np.array([[0, 32768], [65535, 65535]], dtype=np.uint16)
    return [
        ("1", lambda p: save(Image.fromarray(np.array([[True, False], [False, True]])), p, "PNG"),
         np.repeat(np.array([[255, 0], [0, 255]], np.uint8)[..., None], 3, 2), None),
        ("L", lambda p: save(Image.fromarray(RGB8[..., 0]), p, "PNG"), np.repeat(RGB8[..., :1], 3, 2), None),
        ("P", lambda p: save(_paletted(), p, "PNG"), RGB8, None),
        ("RGB", lambda p: save(Image.fromarray(RGB8), p, "PNG"), RGB8, None),
        ("CMYK", lambda p: save(Image.fromarray(RGB8).convert("CMYK"), p, "TIFF"),
         np.asarray(Image.fromarray(RGB8).convert("CMYK").convert("RGB")), None),
        ("YCbCr", lambda p: save(Image.fromarray(RGB8).convert("YCbCr"), p, "TIFF"),
         np.asarray(Image.fromarray(RGB8).convert("YCbCr").convert("RGB")), None),
        ("I;16 png", lambda p: save(Image.fromarray(G16), p, "PNG"), np.repeat(gray16[..., None], 3, 2),
         "2 images are 16-bit grayscale (I;16): scaled from 0–65535 to 0–255"),
        ("I;16 tiff", lambda p: p.write_bytes(tiff(G16[..., None])), np.repeat(gray16[..., None], 3, 2),
         "16-bit grayscale (I;16): scaled from 0–65535 to 0–255"),
        ("I;16B tiff", lambda p: save(Image.fromarray(G16.astype(">u2")), p, "TIFF"),
         np.repeat(gray16[..., None], 3, 2), "16-bit grayscale (I;16B): scaled from 0–65535 to 0–255"),
        ("I;16 png with a transparent value", lambda p: save(Image.fromarray(G16), p, "PNG", transparency=8000),
         np.repeat(np.where(G16 == 8000, 255, gray16)[..., None], 3, 2),
         "2 of them have transparent pixels, composited on a white background"),
        ("I 32-bit tiff", lambda p: p.write_bytes(tiff(G16.astype(np.uint32)[..., None])), None,
         "32-bit integer (I)"),
        ("I signed 16-bit tiff, negative values", lambda p: p.write_bytes(tiff(np.array([[-5, 7]], np.int16)[..., None],
                                                                               sample_format=2)), None,
         "values from -5 to 7"),
        ("I signed 16-bit tiff, values in range", lambda p: p.write_bytes(tiff((G16[..., None] // 2).astype(np.int16),
                                                                               sample_format=2)),
         np.repeat(rint((G16 // 2) / 65535 * 255)[..., None], 3, 2), "16-bit grayscale (I, 16-bit samples)"),
        ("F in [0, 1]", lambda p: save(Image.fromarray(f01), p, "TIFF"),
         np.repeat(rint(f01 * 255)[..., None], 3, 2), "float (F) with values in [0, 1]: scaled to 0–255"),
        ("F above 1", lambda p: save(Image.fromarray(f01 * 4), p, "TIFF"), None, "values from 0 to 4"),
        ("F NaN", lambda p: save(Image.fromarray(np.where(f01 > 0.4, np.nan, f01).astype(np.float32)), p, "TIFF"),
         None, "NaN"),
        ("RGBA", lambda p: save(Image.fromarray(np.dstack([RGB8, ALPHA])), p, "PNG"), over_white(RGB8, ALPHA),
         "have an alpha channel or a transparent colour (RGBA 2)"),
        ("LA", lambda p: save(Image.fromarray(np.dstack([RGB8[..., 0], ALPHA])), p, "PNG"),
         over_white(np.repeat(RGB8[..., :1], 3, 2), ALPHA), "LA 2"),
        ("PA", lambda p: save(_paletted_alpha(), p, "TIFF"), over_white(RGB8, ALPHA), "PA 2"),
        ("P with transparency", lambda p: save(_paletted(), p, "PNG", transparency=1),
         over_white(RGB8, np.array([[255, 0], [255, 255]])), "P with a transparent colour 2"),
        ("L with transparency", lambda p: save(Image.fromarray(RGB8[..., 0]), p, "PNG", transparency=200),
         over_white(np.repeat(RGB8[..., :1], 3, 2), np.array([[255, 0], [255, 255]])),
         "L with a transparent colour 2"),
        ("RGB with transparency", lambda p: save(Image.fromarray(RGB8), p, "PNG", transparency=(0, 0, 0)),
         over_white(RGB8, np.array([[255, 255], [0, 255]])), "RGB with a transparent colour 2"),
        ("RGBA opaque", lambda p: save(Image.fromarray(np.dstack([RGB8, np.full((2, 2), 255, np.uint8)])), p, "PNG"),
         RGB8, "none has a transparent pixel"),
        ("16-bit RGB png", lambda p: p.write_bytes(png16(rgb16, 2)), (rgb16 >> 8).astype(np.uint8),
         "16-bit RGB (RGB;16B): read at 8 bits per channel"),
        ("16-bit RGBA png", lambda p: p.write_bytes(png16(np.dstack([rgb16, a16]), 6)),
         over_white((rgb16 >> 8).astype(np.uint8), (a16 >> 8)), "16-bit RGBA (RGBA;16B)"),
        ("16-bit gray+alpha png", lambda p: p.write_bytes(png16(np.dstack([G16[:, :2], a16]), 4)),
         over_white(np.repeat((G16[:, :2] >> 8).astype(np.uint8)[..., None], 3, 2), (a16 >> 8)),
         "16-bit LA (LA;16B)"),
        ("16-bit RGB tiff", lambda p: p.write_bytes(tiff(rgb16)), (rgb16 >> 8).astype(np.uint8),
         "16-bit RGB (RGB;16L): read at 8 bits per channel"),
        ("16-bit RGBA tiff", lambda p: p.write_bytes(tiff(np.dstack([rgb16, a16]), extra_samples=(2,))),
         over_white((rgb16 >> 8).astype(np.uint8), (a16 >> 8)), "16-bit RGBA (RGBA;16L)"),
    ]


@pytest.mark.parametrize("case", _file_cases(), ids=lambda c: c[0])
def test_each_pixel_format_is_read_with_its_value_range_or_refused(tmp_path, case):
    name, write, expected, words = case
    folder = tmp_path / "img"
    folder.mkdir()
    files = ["a.img", "b.img"]
    for f in files:
        write(folder / f)
    got = load_images(folder, files, None, cache_dir=None, fingerprint=None)
    notes = " | ".join(got.notes)
    if expected is None:
        assert not got.ok.any() and got.refused.all()
        assert "2 images skipped: unsupported pixel format" in notes and "a.img" in notes
        assert "supported: 8-bit" in notes
    else:
        assert got.ok.all() and not got.refused.any()
        for i in range(2):
            assert np.array_equal(np.asarray(got.pixels)[i].transpose(1, 2, 0), expected), np.asarray(got.pixels)[i]
    if words:
        assert words in notes, notes
    else:
        assert not got.notes, notes


def test_16_bit_rgb_is_the_high_byte_within_one_level_of_exact_scaling(tmp_path):
    v = np.arange(0, 65536, 97, dtype=np.uint16)[:675].reshape(15, 15, 3)
    (tmp_path / "rgb.png").write_bytes(png16(v, 2))
    (tmp_path / "rgb.tif").write_bytes(tiff(v))
    got = load_images(tmp_path, ["rgb.png", "rgb.tif"], None, cache_dir=None, fingerprint=None)
    for i in range(2):
        px = np.asarray(got.pixels)[i].transpose(1, 2, 0).astype(int)
        assert np.array_equal(px, v >> 8)
        assert np.abs(px - v / 65535 * 255).max() < 1


@pytest.mark.parametrize("mode", ["I;16", "I;16L", "I;16B", "I;16N"])
def test_every_16_bit_grayscale_mode_is_scaled(mode):
    dtype = {"I;16B": ">u2", "I;16L": "<u2", "I;16": "<u2", "I;16N": "=u2"}[mode]
    img = Image.frombytes(mode, (4, 2), G16.astype(dtype).tobytes())
    out = to_rgb8(img)
    assert out.kind == f"16-bit grayscale ({mode}): scaled from 0–65535 to 0–255"
    assert np.array_equal(out.pixels[..., 0], rint(G16 / 65535 * 255))


def test_premultiplied_alpha_is_composited_on_white():
    rgba = np.dstack([RGB8, ALPHA])
    premultiplied = Image.fromarray(rgba).convert("RGBa")
    out = to_rgb8(premultiplied)
    assert out.alpha == "RGBa" and out.transparent
    assert np.abs(out.pixels.astype(int) - over_white(RGB8, ALPHA)).max() <= 2  # premultiplying rounds
    la = Image.frombytes("La", (2, 2), np.dstack([rint(RGB8[..., 0] / 255 * ALPHA), ALPHA]).tobytes())
    out = to_rgb8(la)
    assert out.alpha == "La" and np.abs(out.pixels[..., 0].astype(int) - over_white(
        np.repeat(RGB8[..., :1], 3, 2), ALPHA)[..., 0]).max() <= 2


def test_a_png_that_this_pillow_opens_as_32_bit_integers_is_scaled_as_16_bit(tmp_path, monkeypatch):
    # Older Pillows open 16-bit grayscale PNGs as mode I (rawmode I;16B): the file says 16 bits.
    monkeypatch.setitem(PngImagePlugin._MODES, (16, 0), ("I", "I;16B"))
    save(Image.fromarray(G16), tmp_path / "g.png", "PNG")
    assert Image.open(tmp_path / "g.png").mode == "I"
    got = load_images(tmp_path, ["g.png"], None, cache_dir=None, fingerprint=None)
    assert got.ok.all() and np.array_equal(np.asarray(got.pixels)[0, 0], rint(G16 / 65535 * 255))
    assert "1 image is 16-bit grayscale (I, 16-bit samples): scaled from 0–65535 to 0–255" in got.notes


def test_refused_images_are_counted_by_group_and_named_in_the_notes(tmp_path):
    folder = tmp_path / "data"
    rows = []
    rng = np.random.default_rng(1)
    for grp in ("a", "b"):
        for k in range(12):
            name = f"img/{grp}{k:02d}.png"
            save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), folder / name, "PNG")
            rows.append((name, ["x", "y"][k % 2], grp))
    (folder / "img" / "deep.tif").write_bytes(tiff(np.full((8, 8, 1), 70000, np.uint32)))
    save(Image.fromarray(np.full((8, 8), 2.5, np.float32)), folder / "img" / "hdr.tif", "TIFF")
    rows += [("img/deep.tif", "x", "b"), ("img/hdr.tif", "y", "b")]
    write_labels(folder, rows)
    data = load_custom(custom_cfg(folder))
    assert data.skipped == {"unsupported pixel format": 2}
    assert data.report["skipped_by_group"] == {"b": {"unsupported pixel format": 2}}
    notes = notes_of(data)
    assert "2 images skipped: unsupported pixel format (e.g. img/deep.tif: 32-bit integer (I)" in notes
    assert "img/hdr.tif: float (F) with values from 2.5 to 2.5, outside [0, 1]" in notes
    assert "supported: 8-bit 1, L, P, RGB" in notes


# -- 2. EXIF orientation and sizes ------------------------------------------------------------
def _exif_jpeg(path, arr, orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    exif = img.getexif()
    if orientation:
        exif[0x0112] = orientation
    img.save(path, "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied_and_noted(tmp_path):
    folder = tmp_path / "data"
    rng = np.random.default_rng(2)
    rows = []
    for i in range(60):
        name = f"img/{i:03d}.jpg"
        if i == 37:  # stored on its side (16 wide, 12 high), displayed upright (12 wide, 16 high)
            _exif_jpeg(folder / name, rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), orientation=6)
        else:
            _exif_jpeg(folder / name, rng.integers(0, 256, (16, 12, 3), dtype=np.uint8))
        rows.append((name, ["x", "y"][i % 2], ["a", "b"][i // 30]))
    write_labels(folder, rows)
    got = load_images(folder, [r[0] for r in rows], None, cache_dir=None, fingerprint=None)
    assert got.ok.all() and np.asarray(got.pixels).shape == (60, 3, 16, 12)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(folder / "img/037.jpg")).convert("RGB"))
    assert np.array_equal(np.asarray(got.pixels)[37].transpose(1, 2, 0), upright)
    assert ("1 image carries an EXIF orientation (e.g. img/037.jpg: rotated 90° clockwise): turned as it is displayed"
            in got.notes)
    data = load_custom(custom_cfg(folder, image_size=None))
    assert not data.skipped and "EXIF orientation" in notes_of(data)


def test_a_size_mismatch_names_the_odd_file_even_when_it_comes_first(tmp_path):
    folder = tmp_path / "img"
    rng = np.random.default_rng(3)
    names = [f"{i:03d}.png" for i in range(60)]
    for i, name in enumerate(names):
        shape = (12, 16, 3) if i in (0, 41) else (16, 12, 3)
        save(Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)), folder / name, "PNG")
    with pytest.raises(DatasetError) as err:
        load_images(folder, names, None, cache_dir=None, fingerprint=None)
    message = str(err.value)
    assert "images have different sizes: 58 are 16x12 (height x width); 2 are 12x16 (e.g. 000.png, 041.png)" in message
    assert "--image-size" in message
    assert "001.png" not in message


# -- 3. images that are all alike -------------------------------------------------------------
def test_a_folder_of_identical_images_gets_a_warning(tmp_path):
    folder = tmp_path / "data"
    rows = []
    for i in range(24):
        name = f"img/{i:02d}.png"
        save(Image.fromarray(np.full((8, 8, 3), 255, np.uint8)), folder / name, "PNG")
        rows.append((name, ["x", "y"][i % 2], ["a", "b"][i // 12]))
    write_labels(folder, rows)
    data = load_custom(custom_cfg(folder))
    (warning,) = data.report["warnings"]
    assert "images look alike" in warning and "all white" in warning and "misread" in warning


def test_varied_images_get_no_such_warning(tmp_path):
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    assert same_images_warning(pixels, np.ones(40, dtype=bool)) is None
    flat = np.repeat(rng.integers(0, 256, (40, 3, 1, 1), dtype=np.uint8), 8, axis=2).repeat(8, axis=3)
    assert same_images_warning(flat, np.ones(40, dtype=bool)) is None  # flat, but each its own colour
    near = np.clip(pixels[:1].astype(int) + rng.integers(-1, 2, (40, 3, 8, 8)), 0, 255).astype(np.uint8)
    assert "images look alike" in same_images_warning(near, np.ones(40, dtype=bool))
    assert same_images_warning(near, np.eye(1, 40, dtype=bool)[0]) is None  # one readable image


def test_the_alike_check_reads_a_bounded_sample():
    row = np.random.default_rng(5).integers(0, 256, (1, 3, 200, 200), dtype=np.uint8)
    huge = np.broadcast_to(row, (24_000, 3, 200, 200))  # 2.9 GB if it were ever copied
    start = time.perf_counter()
    warning = same_images_warning(huge, np.ones(24_000, dtype=bool))
    assert time.perf_counter() - start < 2.0
    assert "images look alike" in warning


# -- 4. label text ------------------------------------------------------------------------------
def _custom_with_labels(folder, text: bytes, n=12):
    rng = np.random.default_rng(6)
    for i in range(n):
        save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), folder / f"{i}.png", "PNG")
    (folder / "labels.csv").write_bytes(text)
    return folder


def test_shift_jis_group_names_are_refused_not_merged(tmp_path):
    lines = ["file,class,grp"] + [f"{i}.png,{'xy'[i % 2]},{['成人', '小人'][i // 6]}" for i in range(12)]
    folder = _custom_with_labels(tmp_path, "\n".join(lines).encode("shift_jis"))
    with pytest.raises(DatasetError) as err:
        load_custom(custom_cfg(folder))
    message = str(err.value)
    assert "labels.csv is not UTF-8" in message and "shift_jis" in message and "成人" in message
    assert "CSV UTF-8" in message and "\ufffd" not in message


def test_text_that_windows_1252_and_shift_jis_read_differently_is_refused(tmp_path):
    lines = ["file,class,grp"] + [f"{i}.png,{'xy'[i % 2]},{['ｱ', 'ｲ'][i // 6]}" for i in range(12)]
    folder = _custom_with_labels(tmp_path, "\n".join(lines).encode("shift_jis"))
    assert (folder / "labels.csv").read_bytes().decode("cp1252")  # it does decode, as ± and ²
    with pytest.raises(DatasetError, match=r"as Windows-1252 .*'±'.* as shift_jis .*'ｱ'"):
        load_custom(custom_cfg(folder))


def test_latin_windows_1252_is_read_and_noted(tmp_path):
    lines = ["file,class,grp"] + [f"{i}.png,{'xy'[i % 2]},{['Québec', 'Zürich'][i // 6]}" for i in range(12)]
    folder = _custom_with_labels(tmp_path, "\r\n".join(lines).encode("cp1252"))
    data = load_custom(custom_cfg(folder))
    assert data.group_names == ["Québec", "Zürich"]
    assert "labels.csv is Windows-1252 text (not UTF-8): read as such" in notes_of(data)


@pytest.mark.parametrize("encoding,bom", [("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE),
                                          ("utf-16-le", b""), ("utf-16-be", b""),
                                          ("utf-32-le", codecs.BOM_UTF32_LE), ("utf-32-be", codecs.BOM_UTF32_BE),
                                          ("utf-8", codecs.BOM_UTF8)])
def test_unicode_label_files_are_read(tmp_path, encoding, bom):
    # Excel's "Unicode Text": UTF-16LE with a byte-order mark, tab-separated, Windows line ends
    lines = ["file\tclass\tgrp"] + [f"{i}.png\t{'xy'[i % 2]}\t{['成人', '小人'][i // 6]}" for i in range(12)]
    folder = _custom_with_labels(tmp_path, bom + "\r\n".join(lines).encode(encoding))
    data = load_custom(custom_cfg(folder))
    assert data.group_names == ["小人", "成人"] and not data.skipped
    family = encoding[:6].upper()
    if family == "UTF-8":
        assert "encoding" not in notes_of(data) and "UTF" not in notes_of(data)
    else:
        mark = "with a byte-order mark" if bom else "without a byte-order mark"
        assert f"labels.csv is {family} text ({mark}): read as such" in notes_of(data)


def test_a_column_named_twice_is_refused(tmp_path):
    folder = _custom_with_labels(tmp_path, b"file,grp,class,grp\n" + b"".join(
        f"{i}.png,a,{'xy'[i % 2]},b\n".encode() for i in range(12)))
    with pytest.raises(DatasetError, match=r"labels.csv names the column 'grp' twice \(columns 2 and 4\)"):
        load_custom(custom_cfg(folder))


def test_fairface_csvs_are_read_by_the_same_rules(tmp_path):
    folder = tmp_path / "fairface"
    rng = np.random.default_rng(7)
    for split, name in (("train", "fairface_label_train.csv"), ("val", "fairface_label_val.csv")):
        lines = ["file\tage\tgender\trace"]
        for i in range(7):
            save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), folder / split / f"{i}.jpg",
                 "JPEG")
            lines.append(f"{split}/{i}.jpg\t20-29\t{['Male', 'Female'][i % 2]}\tWhite")
        (folder / name).write_bytes("\r\n".join(lines).encode("utf-16"))
    data = load_fairface(RunConfig(dataset="fairface", data_dir=str(tmp_path), **TINY))
    assert len(data.splits["train"]) == 7 and "fairface_label_val.csv is UTF-16 text" in notes_of(data)
    (folder / "fairface_label_val.csv").write_bytes(b"file,age,age,gender,race\n")
    with pytest.raises(DatasetError, match="names the column 'age' twice"):
        load_fairface(RunConfig(dataset="fairface", data_dir=str(tmp_path), **TINY))


def test_read_csv_never_decodes_with_replacement_characters(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"file,grp\na.png,\x81\x8d\x8f\x90\x9d\n")  # bytes Windows-1252 leaves undefined
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_csv(path, ("file",), "test")


# -- 5. paths outside the data folder -----------------------------------------------------------
def test_paths_outside_the_data_folder_are_skipped_and_never_read(tmp_path):
    folder = tmp_path / "data"
    rng = np.random.default_rng(8)
    rows = []
    for i in range(20):
        name = f"img/{i:02d}.png"
        save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), folder / name, "PNG")
        rows.append((name, "xy"[i % 2], "ab"[i // 10]))
    secret = tmp_path / "secret.png"
    save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), secret, "PNG")
    target = tmp_path / "kept elsewhere.png"
    save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), target, "PNG")
    (folder / "img" / "linked.png").symlink_to(target)  # a link inside the folder is the user's own
    rows += [(str(secret), "x", "a"), ("../secret.png", "y", "a"), ("img/../../secret.png", "x", "b"),
             ("img/linked.png", "y", "b")]
    write_labels(folder, rows)
    data = load_custom(custom_cfg(folder))
    assert data.skipped == {"path outside the data folder": 3}
    assert data.report["skipped_by_group"] == {"a": {"path outside the data folder": 2},
                                               "b": {"path outside the data folder": 1}}
    assert sum(len(s) for s in data.splits.values()) == 21  # the linked file is read
    assert (f"3 rows of labels.csv name files outside the data folder and were skipped (e.g. {secret}, "
            "../secret.png, img/../../secret.png)") in notes_of(data)
    listed = files_read("custom", folder)
    assert "img/linked.png" in listed and not any(".." in f or f.startswith("/") for f in listed)
    cfg = custom_cfg(folder)
    before = fp_module.fingerprint(cfg)
    secret.write_bytes(b"changed")  # not part of the data: never hashed
    assert fp_module.fingerprint(cfg) == before
    target.write_bytes(b"changed")  # read through the link: part of the data
    assert fp_module.fingerprint(cfg) != before


def test_fairface_rows_outside_the_folder_are_skipped(tmp_path):
    folder = tmp_path / "fairface"
    rng = np.random.default_rng(9)
    outside = tmp_path / "elsewhere.jpg"
    save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), outside, "JPEG")
    for split, name in (("train", "fairface_label_train.csv"), ("val", "fairface_label_val.csv")):
        lines = ["file,age,gender,race"]
        lines.append(f"{outside},20-29,Male,White")  # first: must not decide where images lie either
        for i in range(7):
            save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), folder / split / f"{i}.jpg",
                 "JPEG")
            lines.append(f"{split}/{i}.jpg,20-29,{['Male', 'Female'][i % 2]},White")
        lines.append("../elsewhere.jpg,20-29,Female,Black")
        (folder / name).write_text("\n".join(lines))
    data = load_fairface(RunConfig(dataset="fairface", data_dir=str(tmp_path), **TINY))
    assert data.skipped == {"path outside the data folder": 4}
    assert data.report["skipped_by_group"] == {"White": {"path outside the data folder": 2},
                                               "Black": {"path outside the data folder": 2}}
    assert "rows of fairface_label_train.csv, fairface_label_val.csv name files outside the data folder" \
        in notes_of(data)
    assert not any(".." in f or f.startswith("/") for f in files_read("fairface", folder))


# -- 6. file names that are not UTF-8 ---------------------------------------------------------
def _utk_folder_with_a_latin1_name(root):
    folder = root / "UTKFace"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(10)
    i = 0
    for race in range(5):
        for gender in range(2):
            for k in range(4):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                    folder / f"{20 + 10 * k}_{gender}_{race}_2017{i:08d}.jpg.chip.jpg", "JPEG")
                i += 1
    odd = os.path.join(os.fsencode(folder), b"25_0_1_20170116\xe9.jpg.chip.jpg")
    with open(odd, "wb") as fh:
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(fh, "JPEG")
    return root, os.fsdecode(odd)


def test_a_file_name_that_is_not_utf8_is_read_like_any_other(tmp_path):
    root, _ = _utk_folder_with_a_latin1_name(tmp_path / "data")
    results = tmp_path / "results"
    cfg = resolve(RunConfig(dataset="utkface", data_dir=str(root), **TINY), results)
    data = load_dataset(cfg, results / "cache")
    assert data.report["rows_read"] == 41 and not data.skipped
    assert sum(len(s) for s in data.splits.values()) == 41
    again = load_utkface(cfg, results / "cache")
    assert again.report["image_source"] == "cache"


def test_a_note_naming_such_a_file_shows_its_byte_safely(tmp_path):
    root, odd = _utk_folder_with_a_latin1_name(tmp_path / "data")
    with open(odd, "wb") as fh:
        fh.write(tiff(np.full((12, 12, 1), 9, np.uint32)))
    data = load_utkface(RunConfig(dataset="utkface", data_dir=str(root), **TINY))
    assert data.skipped == {"unsupported pixel format": 1}
    notes = notes_of(data)
    assert "25_0_1_20170116\\xe9.jpg.chip.jpg" in notes
    json.dumps(data.report, ensure_ascii=False).encode("utf-8")  # no lone surrogate anywhere


def test_the_run_command_works_on_a_folder_with_such_a_name(tmp_path):
    root, _ = _utk_folder_with_a_latin1_name(tmp_path / "data")
    code, out, err = ceag_main("run", "--dataset", "utkface", "--data-dir", root, "--results", tmp_path / "results",
                               "--image-size", "8", "--model", "mlp", "--dense-epochs", "1", "--prune-epochs", "1",
                               "--epochs", "3", "--json")
    assert code == 0, err
    assert "41" in out


# -- 7. groups a split has no sample of -------------------------------------------------------
def test_groups_without_samples_in_a_split_are_named(tmp_path):
    folder = tmp_path / "data"
    rng = np.random.default_rng(11)
    rows = []
    i = 0
    for race in ("Asian", "Black", "Others"):
        for sex in ("Female", "Male"):
            for k in range(8):
                split = ["train", "train", "train", "test"][k % 4]
                if (race, sex) == ("Others", "Female"):
                    split = "train"
                name = f"img/{i:03d}.png"
                save(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)), folder / name, "PNG")
                rows.append((name, "xy"[k % 2], race, sex, split))
                i += 1
    write_labels(folder, rows, ("file", "class", "race", "sex", "split"))
    data = load_custom(custom_cfg(folder, groups=("race", "sex")))
    assert data.report["empty_groups"] == {"Others × Female": ["test"]}
    assert "no samples of Others × Female in test; its metrics there are undefined" in notes_of(data)
    full = load_custom(custom_cfg(folder, groups=("race",)))
    assert full.report["empty_groups"] == {}
