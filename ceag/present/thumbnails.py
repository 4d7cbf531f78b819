"""Pictures of samples for the casualty gallery and the report: small JPEGs of the images a run predicted on.

A sample read from a file (``file``: its path under the data folder, from the run's predictions) is read again
from the data folder, upright and in its real value range (``ceag.datasets.images.pixels.read_image``), and
resized to ``size`` × ``size``, the square the model saw. The built-in digits render their 8×8 inputs,
enlarged, ink dark on white. Anything else gets no picture and a reason: synthetic samples are vectors, a
file outside the data folder, moved since the run or unreadable. Nothing here raises for a bad file.

``gallery_html`` lays out thumbnails with their captions; the dashboard and the self-contained HTML report
both use it (each image a ``data:`` URI, the details in its hover text).
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

SIZE = 96        # pixels per side of a face thumbnail
DIGIT_SIZE = 64  # pixels per side of an enlarged 8x8 digit


@dataclass(frozen=True)
class Thumb:
    """One picture: ``jpeg`` bytes, or None with ``reason`` (why there is none)."""

    jpeg: bytes | None
    reason: str | None = None

    @property
    def data_uri(self) -> str | None:
        return None if self.jpeg is None else "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode()


def _jpeg(rgb: np.ndarray) -> bytes:
    """JPEG at quality 75 with optimised Huffman tables: a 64 px face is about 1.1 KB (1.5 KB as base64)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=75, optimize=True)
    return out.getvalue()


def file_thumb(data_root: str | os.PathLike, file: str | None, size: int = SIZE) -> Thumb:
    """The image ``file`` (relative to ``data_root``) as a ``size`` × ``size`` JPEG, or the reason there is none."""
    from ceag.datasets.images.pixels import read_image
    from ceag.datasets.layouts import outside_folder

    if not isinstance(file, str) or not file:
        return Thumb(None, "this run's predictions do not name the sample's file (made before files were recorded)")
    if outside_folder(file):
        return Thumb(None, f"{file} lies outside the data folder; it is not read")
    root = Path(data_root)
    path = root / file
    if not path.is_file():
        return Thumb(None, f"{file} is not in the data folder {root} (moved since the run, or another folder)")
    read = read_image(path, size)
    if read.pixels is None:
        return Thumb(None, f"{file} could not be read: {read.refused or 'not a decodable image'}")
    return Thumb(_jpeg(read.pixels))


@lru_cache(maxsize=8)
def _digit_inputs(val_fraction: float, rare: tuple[int, ...], rare_count: int) -> dict[str, np.ndarray]:
    from ceag.config.run_config import RunConfig
    from ceag.datasets.builtin import load_digits_dataset

    cfg = RunConfig(dataset="digits", model="mlp", val_fraction=val_fraction, rare_groups=rare,
                    rare_train_count=rare_count)
    return {name: split.x.numpy()[:, 0] for name, split in load_digits_dataset(cfg).splits.items()}


def digit_thumb(cfg, split: str, sample_id: int, size: int = DIGIT_SIZE) -> Thumb:
    """Sample ``sample_id`` of ``split`` of the built-in digits under the run's ``cfg`` (its split settings),
    enlarged to ``size`` × ``size``."""
    images = _digit_inputs(float(cfg.val_fraction), tuple(cfg.rare_groups or ()), int(cfg.rare_train_count))
    if split not in images or not 0 <= sample_id < len(images[split]):
        return Thumb(None, f"sample {sample_id} is not in the digits' {split} split")
    ink = np.clip(images[split][sample_id] + 0.5, 0.0, 1.0)  # inputs are value/16 - 0.5
    grey = (255 * (1.0 - ink)).astype(np.uint8)
    scale = max(1, size // grey.shape[0])
    big = np.kron(grey, np.ones((scale, scale), dtype=np.uint8))
    return Thumb(_jpeg(np.repeat(big[..., None], 3, axis=2)))


def sample_thumb(cfg, data_root: str | os.PathLike, split: str, sample_id: int, file: str | None,
                 size: int = SIZE) -> Thumb:
    """The picture of one sample of a run with config ``cfg``, whatever its dataset."""
    if cfg.dataset == "digits":
        return digit_thumb(cfg, split, int(sample_id))
    if cfg.dataset == "synthetic":
        return Thumb(None, "synthetic samples are vectors, not images")
    if cfg.dataset == "cifar100":
        return Thumb(None, "CIFAR-100 samples are rows of its pickles, not files: no picture is read back")
    return file_thumb(data_root, file, size)


@dataclass(frozen=True)
class Tile:
    """One sample in a gallery: its picture, a short caption and the full details (hover text)."""

    thumb: Thumb
    caption: str
    details: str


def gallery_html(tiles: Sequence[Tile], size: int = SIZE) -> str:
    """The tiles as an HTML grid (no script, inline styles): each image a ``data:`` URI with its details as
    hover text, or a grey box with the reason it is missing."""
    cells = []
    for tile in tiles:
        details = html.escape(tile.details, quote=True)
        if tile.thumb.jpeg is not None:
            picture = (f'<img src="{tile.thumb.data_uri}" width="{size}" height="{size}" title="{details}" '
                       f'alt="{html.escape(tile.caption.splitlines()[0], quote=True)}" style="display:block">')
        else:
            why = html.escape(tile.thumb.reason or "no picture", quote=True)
            picture = (f'<div title="{why}" style="width:{size}px;height:{size}px;background:#eee;color:#555;'
                       f'font-size:10px;overflow:hidden;display:flex;align-items:center;justify-content:center;'
                       f'text-align:center">no picture: {why}</div>')
        caption = (f'<figcaption style="font-size:11px;line-height:1.25;overflow-wrap:anywhere;white-space:pre-line;'
                   f'color:#333">{html.escape(tile.caption)}</figcaption>')
        cells.append(f'<figure style="margin:0;width:{max(size, 112)}px">{picture}{caption}</figure>')
    return f'<div style="display:flex;flex-wrap:wrap;gap:8px">{"".join(cells)}</div>'


def _class(class_names: Sequence[str] | None, value) -> str:
    try:
        index = int(value)
    except (TypeError, ValueError):
        return "?"
    return str(class_names[index]) if class_names and 0 <= index < len(class_names) else str(index)


def tiles_for(rows, class_names: Sequence[str] | None, thumb, note=None) -> list[Tile]:
    """A tile per row of ``ceag.analysis.casualties.ranked`` (in order): ``thumb(row)`` gives its picture,
    ``note(row)`` (optional) a last line, e.g. what another run made of the same sample."""
    tiles = []
    for row in rows.itertuples(index=False):
        name = row.file.rsplit("/", 1)[-1] if isinstance(row.file, str) and row.file else f"#{row.sample_id}"
        short = name if len(name) <= 26 else name[:12] + "…" + name[-12:]
        true, dense, sparse = (_class(class_names, v) for v in (row.y_true, row.dense_pred, row.y_pred))
        extra = note(row) if note else None
        caption = f"{short}\ntrue: {true}\ndense: {dense}\npruned: {sparse}" + (f"\n{extra}" if extra else "")
        details = (f"{row.file if isinstance(row.file, str) and row.file else f'sample {row.sample_id}'}; true "
                   f"{true}; dense model: {dense} (p {row.dense_p_pred:.2f}); pruned model: {sparse} "
                   f"(p {row.p_pred:.2f})" + (f"; {extra}" if extra else ""))
        tiles.append(Tile(thumb(row), caption, details))
    return tiles
