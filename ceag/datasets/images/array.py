"""Decoded pixels as an array: in memory, or a cache entry's file mapped block by block, never copied whole."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ceag.datasets.layouts import DatasetError


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
