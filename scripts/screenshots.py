"""Screenshots of the main pages (README, docs/dashboard.md): starts the app on a results folder, visits each page.

    .venv/bin/python scripts/screenshots.py [--results DIR] [--out docs/screenshots]

It also prints how long a new browser session waits for the Overview's and Compare's first answer.

The results folder should hold runs (e.g. `python -m ceag grid --preset demo --results DIR`).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PAGES = {"overview": "", "frontiers": "frontiers", "multipliers": "multipliers", "generalization": "generalization",
         "compare": "compare", "casualties": "casualties", "launch": "launch", "runs": "runs"}
TALL = {"casualties": 2300}  # pages whose pictures lie below the first screen: their window height
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# the first sentence of each page's answer
ANSWERS = {"overview": re.compile(r"with plain fine-tuning \(NFT\)"), "compare": re.compile("most on test")}



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(results: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "CEAG_RESULTS": str(results), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                             "--server.headless", "true", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the app did not start within 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=os.environ.get("CEAG_RESULTS", "results"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES), help="default: every page")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    app = start_app(Path(args.results), port)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            for name, path in ((n, p) for n, p in PAGES.items() if n in args.pages):
                page.set_viewport_size({"width": 1400, "height": TALL.get(name, 1000)})
                page.goto(f"http://127.0.0.1:{port}/{path}")
                page.wait_for_selector("h1", timeout=30_000)
                page.wait_for_selector(IDLE, timeout=120_000)  # Compare bootstraps its intervals first
                page.wait_for_timeout(2500)  # let charts render
                page.screenshot(path=str(out / f"{name}.png"))
                print(f"wrote {out / f'{name}.png'}")
            # The server is warm now: how long a new browser session waits for each page's first answer.
            for name, path in (("overview", ""), ("compare", "compare")):
                fresh = browser.new_page(viewport={"width": 1400, "height": 1000})
                start = time.perf_counter()
                fresh.goto(f"http://127.0.0.1:{port}/{path}")
                fresh.wait_for_selector(".js-plotly-plot .main-svg", timeout=120_000)
                fresh.get_by_text(ANSWERS[name]).first.wait_for(timeout=120_000)
                print(f"{name}: a new session shows its sentences and chart after {time.perf_counter() - start:.1f} s")
                fresh.close()
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
