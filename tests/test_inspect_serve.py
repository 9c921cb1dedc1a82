"""End to end: `edgeproj inspect --serve` on a video, the page loaded in headless Chromium (Debian's).

The verb runs as a real process; the test waits for the page to show a verdict of that run, checks the
counts against the database afterwards and takes a screenshot (left in the test's temporary folder: the
README's picture comes from a real run, see docs/line.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import pytest
from wait_helpers import free_port

pytest.importorskip("aiohttp", reason="aiohttp is not installed (pip install -e '.[dev]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


def _video(demo_root: Path, path: Path, frames: int) -> Path:
    imgs = sorted((demo_root / "grid" / "test").glob("*/*.png"))
    first = cv2.imread(str(imgs[0]))
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (first.shape[1], first.shape[0]))
    for i in range(frames):
        w.write(cv2.imread(str(imgs[i % len(imgs)])))
    w.release()
    return path


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_inspect_serve_shows_live_verdicts_in_a_browser(calibrated_bundle, demo_root, tmp_path):
    from edgeproj.line.store import read_rows

    video = _video(demo_root, tmp_path / "line.avi", 120)
    port = free_port()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeproj", "inspect", str(calibrated_bundle), "--source", str(video), "--out", str(out),
         "--serve", f"127.0.0.1:{port}", "--batch", "16", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    shot = tmp_path / "live-page.png"
    try:
        end = time.monotonic() + 60
        while True:  # the page answers once the server thread is up (bounded wait)
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                assert time.monotonic() < end, "the live page never answered"
                time.sleep(0.1)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.goto(url)
            tab.wait_for_function(
                "['OK','NG','FAULT'].includes(document.querySelector('#verdict').textContent.trim())", timeout=60_000
            )
            tab.wait_for_function("Number(document.querySelector('#s-frames').textContent) >= 3", timeout=60_000)
            verdict = tab.inner_text("#verdict").strip()
            tab.screenshot(path=str(shot))
            browser.close()
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-2000:]
    assert verdict in ("OK", "NG", "FAULT")
    summary = [line for line in stdout.splitlines() if '"summary": true' in line]
    assert summary and re.search(r'"processed": 120', summary[0])
    assert len(read_rows(out / "results.sqlite")) == 120
    assert shot.stat().st_size > 10_000
