"""Where each real dataset's folder may lie, and how to find it (no torch: the app uses this)."""

from __future__ import annotations

import os
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ceag.config.run_config import RunConfig

DATA_ENV = "CEAG_DATA"
UTK_FOLDERS = ("UTKFace", "utkface", "utkface_aligned_cropped/UTKFace", "utkface/UTKFace")
# The authors' FairFace image folder: the label CSVs beside it (their layout) or inside it.
FAIRFACE_IMAGE_FOLDER = "fairface-img-margin025-trainval"
FAIRFACE_FOLDERS = ("fairface", "FairFace", FAIRFACE_IMAGE_FOLDER, "fairface/" + FAIRFACE_IMAGE_FOLDER, "")
CIFAR_FOLDERS = ("cifar-100-python", "cifar100/cifar-100-python")
CUSTOM_FOLDERS = ("", "custom")
CUSTOM_LABELS = "labels.csv"


class DatasetError(ValueError):
    """A dataset folder is missing or not in the expected layout; the message says what was expected where."""


def shown(name: str | os.PathLike) -> str:
    """``name`` as text that any terminal, JSON file or database takes: a byte of a file name that
    is not UTF-8 (held by Python as a lone surrogate) is written as ``\\xNN``."""
    text = os.fspath(name)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def outside_folder(name: str) -> bool:
    """Whether a file named in a label file lies outside its data folder as written: an absolute
    path (``/x``, ``\\x``, ``C:\\x``, ``C:x``) or a path with a ``..`` component (either separator).
    Symbolic links inside the folder are not looked at: where they point is the user's choice."""
    win = PureWindowsPath(name)
    return name.startswith(("/", "\\")) or bool(win.drive) or ".." in win.parts


def data_root(cfg: RunConfig) -> Path:
    return Path(cfg.data_dir or os.environ.get(DATA_ENV) or "data")


def sample_files(root: Path, folder: Path, names: list[str]) -> list[str]:
    """Each of ``names`` (files in ``folder``, itself inside the data folder ``root``) as a path
    relative to ``root`` with posix separators: how predictions name a sample read from a file. A
    byte of a name that is not UTF-8 is written as ``\\xNN`` (``shown``)."""
    try:
        prefix = folder.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:  # the folder is reached through a link out of the data folder
        prefix = os.path.relpath(folder, root).replace(os.sep, "/")
    prefix = "" if prefix in ("", ".") else prefix + "/"
    return [shown(prefix + n.replace("\\", "/")) for n in names]


def find_folder(root: Path, candidates: tuple[str, ...], test, what: str) -> Path:
    for rel in candidates:
        path = root / rel if rel else root
        if path.is_dir() and test(path):
            return path
    looked = ", ".join(shown(root / c) if c else shown(root) for c in candidates)
    raise DatasetError(f"{what} not found. Looked in: {looked}. See data/README.md for the expected layout, "
                       f"and point --data-dir (or {DATA_ENV}, or the app's data folder setting) at the folder "
                       "that holds it.")


def _has_jpgs(p: Path) -> bool:
    return any(f.suffix.lower() == ".jpg" for f in p.iterdir())


# dataset -> (folders tried under the data root, the test a folder must pass, what is expected)
LAYOUTS = {
    "utkface": (UTK_FOLDERS, _has_jpgs, "UTKFace (a folder of age_gender_race_datetime.jpg[.chip.jpg] files)"),
    "fairface": (FAIRFACE_FOLDERS, lambda p: (p / "fairface_label_train.csv").is_file()
                 and (p / "fairface_label_val.csv").is_file(),
                 "FairFace (fairface_label_train.csv and fairface_label_val.csv beside the train/ and val/ folders)"),
    "cifar100": (CIFAR_FOLDERS, lambda p: all((p / n).is_file() for n in ("train", "test", "meta")),
                 "CIFAR-100 (the cifar-100-python/ folder with its train, test and meta files)"),
    "custom": (CUSTOM_FOLDERS, lambda p: (p / CUSTOM_LABELS).is_file(),
               "a custom dataset (a folder with labels.csv: a file column, then attribute columns)"),
}


def locate(dataset: str, root: str | os.PathLike) -> Path:
    """The folder holding a real dataset under ``root`` (nothing is loaded); DatasetError if absent."""
    folders, test, what = LAYOUTS[dataset]
    return find_folder(Path(root), folders, test, what)


def available(root: str | os.PathLike) -> list[str]:
    """Names of the folder datasets present under ``root`` (nothing is loaded)."""
    found = []
    for name in LAYOUTS:
        try:
            locate(name, root)
            found.append(name)
        except (DatasetError, OSError):
            pass
    return found


def utkface_files(folder: Path) -> list[str]:
    """Names of the ``*.jpg`` files of a UTKFace folder, sorted (the order of the authors' split)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.name.lower().endswith(".jpg") and e.is_file())


FAIRFACE_COLUMNS = ("file", "age", "gender", "race")
FAIRFACE_CSVS = (("train", "fairface_label_train.csv"), ("test", "fairface_label_val.csv"))


def fairface_image_root(folder: Path, first_file: str | None) -> Path:
    """Where the CSVs' ``file`` paths start: beside the CSVs, or the authors' image folder."""
    inner = folder / FAIRFACE_IMAGE_FOLDER
    if first_file and outside_folder(first_file):
        return folder
    if first_file and not (folder / first_file).exists() and (inner / first_file).exists():
        return inner
    return folder
