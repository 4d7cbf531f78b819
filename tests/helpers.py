"""What several test files need to start ``python -m ceag`` (in this process or a subprocess) or the app."""

import contextlib
import io
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def subprocess_env(threads: int | None = 1, **extra: str) -> dict[str, str]:
    """This environment, with the checkout importable and (by default) one CPU thread per process.

    One thread keeps runs deterministic across machines and keeps several test processes from
    oversubscribing a small CI runner; ``threads=None`` leaves the thread settings alone.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(extra)
    return env


def ceag_cli(*args, results=None, timeout: float = 300):
    """``python -m ceag ARGS [--results RESULTS]`` in a subprocess (its thread settings left alone)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "ceag", *map(str, args)] + ([] if results is None else ["--results", str(results)])
    return subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(threads=None), cwd=ROOT,
                          timeout=timeout)


def ceag_main(*args) -> tuple[int, str, str]:
    """``python -m ceag ARGS`` in this process: (exit status, stdout, stderr)."""
    from ceag import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as stop:
            code = stop.code
    return code, out.getvalue(), err.getvalue()


def write_utkface(root: Path, per_race: int = 6, size: int = 12, seed: int = 7) -> Path:
    """A tiny folder in the published UTKFace layout under ``root``: ``per_race`` random JPEGs of each of the five
    races (ages and genders varied) and one malformed name; returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "UTKFace"
    folder.mkdir(parents=True, exist_ok=True)
    i = 0
    for race in range(5):
        for k in range(per_race):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{20 + k}_{k % 2}_{race}_2017010{i:010d}.jpg.chip.jpg")
            i += 1
    Image.new("RGB", (size, size)).save(folder / "39_1_20170116174525125.jpg.chip.jpg")  # malformed: left out
    return root


def open_app_page(monkeypatch, page: str, title: str, results, data=None, timeout: float = 120, **params):
    """The app on ``results`` (and ``data``) with ``params`` in its URL, switched to ``dashboard/<page>.py``; fails on
    an uncaught exception or another title."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CEAG_RESULTS", str(results))
    if data is not None:
        monkeypatch.setenv("CEAG_DATA", str(data))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(f"dashboard/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == [title]
    return at


def finished_runs(results, configs) -> list[str]:
    """Run each config (on one thread, as the fixtures of several modules would otherwise fight over the cores)
    into ``results`` and ingest it; returns the run ids in order."""
    import torch

    from ceag.run.pipeline import run
    from ceag.store import ingest_run

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ids = []
    try:
        for cfg in configs:
            result = run(cfg, results)
            ingest_run(results, result.run_id)
            ids.append(result.run_id)
    finally:
        torch.set_num_threads(before)
    return ids
