"""Identity by content: the one definition of file hashing, the digests that name runs and phases, and the
fingerprint formula of a dataset (its rule and the files it read).

A run id is ``digest`` of its canonical settings; a dense checkpoint counts by its content; a dataset by
``files_fingerprint`` of its rule (``RULES``: bump one when its loader reads or splits the same files
differently) and of every file it reads (name, size, content hash). The built-in datasets need no folder,
so their fingerprints are known when a config is made (``builtin_fingerprint``). No torch.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

from ceag.config.registry import REGISTRY

CHUNK = 1 << 20  # bytes read at a time

# The image folders' rules name the decoding too: "pixels/2" reads 16-bit, float and transparent images
# with their value range and applies EXIF orientation (pixels/1 clipped and ignored them), so runs made
# with the old decoding are never served for the new one.
RULES = {
    "digits": "digits/1: sklearn digits, stratified test 0.3, seed 20240505",
    "synthetic": "synthetic/1: 3 classes x 16 dims x 300 per group, seed 20240505",
    "utkface": "utkface/3: authors' split RandomState(1357) test int(0.2N); age edges 10,15,20,25,30,40,50,60; "
               "pixels/2",
    "fairface": "fairface/3: published train/val CSVs; spreadsheet values recognised; strict text encodings; "
                "pixels/2",
    "cifar100": "cifar100/1: published train/test pickles",
    "custom": "custom/2: labels.csv; split column or stratified test 0.2, seed 20240505; strict text encodings; "
              "pixels/2",
}
CONTENT_DIGITS = 32  # hex digits of a file's content hash inside a fingerprint


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (64 hex digits), read in chunks. OSError when it cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def file_sha256(path: str | os.PathLike) -> str:
    """``sha256_file``, remembered for the same file, size and modification time (a checkpoint hashed per config)."""
    st = Path(path).stat()
    return _sha256_of(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def digest(text: str) -> str:
    """16 hex digits of the SHA-256 of ``text``: how run ids and phase keys are made."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def files_fingerprint(rule: str, files: Iterable[tuple[str, tuple[int, str] | None]]) -> str:
    """16 hex digits naming ``rule`` and the files read: (name relative to the data folder, (size in bytes,
    content hash) or None when missing), in reading order. Names are hashed as the file system holds them
    (``os.fsencode``), so a name that is not UTF-8 counts like any other."""
    h = hashlib.sha256(rule.encode())
    for name, entry in files:
        if entry is None:
            h.update(b"\n" + os.fsencode(name) + b"\0missing")
        else:
            h.update(b"\n" + os.fsencode(name) + f"\0{entry[0]}\0{entry[1]}".encode())
    return h.hexdigest()[:16]


def _digits_file() -> Path:
    spec = importlib.util.find_spec("sklearn")  # located, not imported (that takes a second)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-learn is not installed: the digits dataset comes with it")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


@functools.cache
def builtin_fingerprint(dataset: str) -> str | None:
    """The fingerprint of a dataset that needs no folder (None for folder datasets): its rule, and for
    ``digits`` the content of scikit-learn's bundled file."""
    if REGISTRY[dataset].from_folder:
        return None
    if dataset == "digits":
        path = _digits_file()
        entry = (path.stat().st_size, sha256_file(path)[:CONTENT_DIGITS])
        return files_fingerprint(RULES[dataset], [(path.name, entry)])
    return hashlib.sha256(RULES[dataset].encode()).hexdigest()[:16]
