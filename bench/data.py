"""Loading a real-layout image folder: the first load (fingerprint + decode into the cache) versus
a cached load, with each load's peak memory, on a generated UTKFace-layout folder.

Full size is UTKFace's (24,000 JPEGs of 200x200: 2.9 GB of pixels); ``--quick`` uses 3,000. A
cached load maps the cache file and copies nothing, so the bench also times touching every page
of it once (the page faults the first epoch pays instead). Each load runs in a fresh process (torch
already imported, as in a grid worker) and reports how much its peak resident memory
(``ru_maxrss``) grew while loading.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Result

FULL, QUICK, SIZE = 24_000, 3_000, 200
ROOT = Path(__file__).resolve().parents[1]

_LOAD = """
import json, resource, sys, time
import numpy as np
import torch  # a grid worker has imported it already: not part of a load's time
from ceag.config.run_config import RunConfig
from ceag.datasets import faces, fingerprint
from ceag.results.layout import cache_dir
from ceag.run.data import resolve
from ceag.datasets.loading import load_dataset
usage = resource.getrusage(resource.RUSAGE_SELF)
before, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
start = time.perf_counter()
cfg = resolve(RunConfig(dataset="utkface", model="cnn", data_dir=sys.argv[1]), sys.argv[2])
data = load_dataset(cfg, cache_dir(sys.argv[2]))
fingerprint.save_cache()  # as a run does once its data loaded: the next fingerprint reads only new files
wall = time.perf_counter() - start
n = sum(len(s) for s in data.splits.values())
pixels = sum(len(s) * int(np.prod(s.input_shape)) for s in data.splits.values())
usage = resource.getrusage(resource.RUSAGE_SELF)
peak, cpu = usage.ru_maxrss - before, usage.ru_utime + usage.ru_stime - cpu
# A cached load maps the file: its pages are read (page faults) as training first uses them.
# Time touching every page of every split once: the cost the load deferred, not paid.
start = time.perf_counter()
for s in data.splits.values():
    int(s.x.numpy().reshape(-1)[::4096].sum())
read = time.perf_counter() - start
print(json.dumps({"wall": wall, "cpu": cpu, "peak_kb": peak, "n": n,
                  "how": data.report["image_source"], "pixels": pixels, "read": read}))
"""
def make_folder(folder: Path, n: int, size: int = SIZE) -> None:
    """``n`` JPEGs named like UTKFace's: smooth random images with grain, about 10 kB each."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size

    def make(i: int) -> None:
        rng = np.random.default_rng(i)
        a = rng.uniform(0, 255, size=(3, 3))
        img = (a[:, 0, None, None] + a[:, 1, None, None] * xx + a[:, 2, None, None] * yy) % 256
        img += rng.normal(0, 8, size=(3, size, size))
        arr = np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(arr).save(folder / f"{rng.integers(1, 90)}_{i % 2}_{i % 5}_2017{i:013d}.jpg.chip.jpg",
                                  quality=90)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(make, range(n)))


def _load(folder: Path, results: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _LOAD, str(folder), str(results)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Result]:
    n = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="ceag-bench-data-") as tmp:
        data, results = Path(tmp) / "data", Path(tmp) / "results"
        start = time.perf_counter()
        make_folder(data / "UTKFace", n)
        made = time.perf_counter() - start
        first = _load(data, results)
        second = _load(data, results)
    pixels_gb = first["pixels"] / 1e9
    extra = [r["peak_kb"] * 1024 / 1e9 for r in (first, second)]
    cores = os.cpu_count()
    note = f"{n} JPEGs of {SIZE}x{SIZE} made in {made:.0f} s; {cores} cores; pixels {pixels_gb:.2f} GB"
    assert first["how"] == "decoded" and second["how"] == "cache", (first["how"], second["how"])
    return [
        Result(f"data: first load of {n} images (fingerprint + decode)", first["wall"], "s", note=note),
        Result(f"data: cached load of {n} images", second["wall"], "s"),
        Result("data: first / cached load time", first["wall"] / second["wall"], "x", ">= 10",
               first["wall"] / second["wall"] >= 10),
        Result("data: touching every page after the cached load", second["read"], "s",
               note="a cached load maps the file; training reads its pages as it first uses them"),
        Result("data: first load / (cached load + that touch)", first["wall"] / (second["wall"] + second["read"]),
               "x", ">= 10", first["wall"] / (second["wall"] + second["read"]) >= 10),
        Result("data: first / cached load CPU time (all threads)", first["cpu"] / second["cpu"], "x", "",
               note=f"{first['cpu']:.1f} s / {second['cpu']:.2f} s; on a busy machine wall time follows the "
                    "CPU share a load gets"),
        *[Result(f"data: {what} load peak memory / pixels", gb / pixels_gb, "x", "<= 1.5", gb / pixels_gb <= 1.5,
                 note=f"peak resident memory grew {gb:.2f} GB")
          for what, gb in (("first", extra[0]), ("cached", extra[1]))],
    ]
