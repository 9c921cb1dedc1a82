"""The live operator page: served on loopback, fed from a thread, loaded in headless Chromium (Debian's)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from wait_helpers import wait_for

from edgeproj.errors import ConfigError
from edgeproj.line.live import LivePage, is_loopback, parse_listen

pytest.importorskip("aiohttp", reason="aiohttp is not installed (pip install -e '.[dev]')")
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def synthetic(seq: int, rng) -> tuple[dict, np.ndarray, np.ndarray]:
    """A textured part (float RGB in [0, 1], as the sources deliver), its map, and its row: NG every 9th, one FAULT."""
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float32)
    base = 0.5 + 0.2 * np.sin(xx / 5 + seq * 0.3) * np.cos(yy / 7)
    img = np.clip(np.stack([base, base * 0.9, base * 0.7], -1) + rng.normal(0, 0.02, (128, 128, 3)), 0, 1).astype(np.float32)
    amap = np.abs(rng.normal(0, 0.02, (128, 128))).astype(np.float32)
    verdict = "FAULT" if seq == 31 else "NG" if seq % 9 == 4 else "OK"
    if verdict == "NG":
        cy, cx = 30 + seq % 60, 40 + (seq * 7) % 50
        img[cy : cy + 14, cx : cx + 20] *= 0.3
        amap[cy - 2 : cy + 16, cx - 2 : cx + 22] += 0.5
    score = float(amap.max()) if verdict != "FAULT" else float("nan")
    row = {"seq": seq, "run_id": "run-live", "source": "synthetic", "name": f"part{seq:04d}", "capture_ts": time.time(),
           "latency_ms": 20.0 + (seq % 5), "score": score, "verdict": verdict, "iterations": 14.0, "stop_reason": "energy",
           "map_path": None, "overlay_path": None}  # fmt: skip
    return row, img, amap


@contextmanager
def open_tab(url: str):
    """A headless Debian Chromium tab (1280x900) on `url`, closed afterwards."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.goto(url, wait_until="domcontentloaded", timeout=15000)
            yield tab
        finally:
            browser.close()


class Feeder(threading.Thread):
    """The line's stand-in: publishes synthetic frames until stopped (paced so the chart has a history)."""

    def __init__(self, sink, count: int = 100000):
        super().__init__(daemon=True)
        self.sink, self.count, self.stop, self.sent = sink, count, threading.Event(), 0

    def run(self):
        rng = np.random.default_rng(0)
        for seq in range(self.count):
            if self.stop.wait(0.02):
                return
            self.sink.publish(*synthetic(seq, rng))
            self.sent += 1


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_parse_listen_and_loopback():
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_listen("[::1]:81") == ("::1", 81)
    for bad in ("web", "host:", "1:70000"):
        with pytest.raises(ConfigError):
            parse_listen(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_non_loopback_needs_a_token_and_a_busy_port_is_a_config_error():
    with pytest.raises(ConfigError, match="token"):
        LivePage("0.0.0.0", 8080)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(ConfigError, match="cannot listen"):
            LivePage("127.0.0.1", s.getsockname()[1]).start()


def test_token_is_required_and_state_streams_over_sse():
    with LivePage(port=0, token="s3cret", image_threshold=0.3, pixel_threshold=0.1) as page:
        base = f"http://127.0.0.1:{page.port}"
        assert get(base + "/")[0] == 403 and get(base + "/state.json?token=wrong")[0] == 403
        status, body = get(page.url)
        assert status == 200 and b"<svg" in body
        assert get(base + "/state.json", {"Authorization": "Bearer s3cret"})[0] == 200
        rng = np.random.default_rng(1)
        for seq in range(5):
            page.publish(*synthetic(seq, rng))
        with urllib.request.urlopen(base + "/events?token=s3cret", timeout=10) as stream:
            state = None
            for raw in stream:  # the first event is the current state; read until it has all five frames
                line = raw.decode().strip()
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if "stats" not in event:  # not a state event
                        continue
                    state = event
                    # The NG thumbnail is rendered on the page's thread after the counts: wait for it too.
                    if state["stats"]["frames"] == 5 and state["frame_v"] and state["ng"]:
                        break
        assert state["row"]["verdict"] == "NG" and state["stats"]["counts"]["NG"] == 1
        assert get(f"{base}/frame.jpg?token=s3cret")[1][:2] == b"\xff\xd8"  # a JPEG
        key = state["ng"][0]["key"]
        assert get(f"{base}/ng/{key}.jpg?token=s3cret")[1][:2] == b"\xff\xd8"


def test_publish_never_waits_for_the_page():
    """Large frames faster than the page renders: every row is counted, frames are dropped for the page only."""
    rng = np.random.default_rng(2)
    big = rng.random((1080, 1920, 3), dtype=np.float32)
    amap = rng.random((1080, 1920), dtype=np.float32)
    with LivePage(port=0, image_threshold=0.5, max_updates_per_s=5) as page:
        t = time.perf_counter()
        for seq in range(300):
            page.publish({"seq": seq, "verdict": "OK", "score": 0.1, "latency_ms": 1.0}, big, amap)
        per_call = (time.perf_counter() - t) / 300
        wait_for(lambda: page.stats()["rendered"] >= 1, 20, "a rendered frame")
        stats = page.stats()
    assert stats["frames"] == 300 and stats["skipped"] >= 250, stats
    assert per_call < 0.02, f"publish took {per_call * 1000:.2f} ms a call"


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run does)")
def test_page_in_headless_chromium(tmp_path):
    page_server = LivePage(port=0, title="edgeproj inspect: line 1", image_threshold=0.3, pixel_threshold=0.12).start()
    page_server.status(run_id="run-live", source="synthetic", bundle="demo-bundle")
    feeder = Feeder(page_server)
    feeder.start()
    shot = tmp_path / "live-page.png"
    try:
        with open_tab(page_server.url) as tab:
            tab.wait_for_function("/^(OK|NG|FAULT)$/.test(document.getElementById('verdict').textContent)", timeout=10000)
            # Live: the frame counter moves without a reload, the NG strip and the frame image fill in.
            first = int(tab.text_content("#s-frames"))
            tab.wait_for_function(f"Number(document.getElementById('s-frames').textContent) > {first + 20}", timeout=10000)
            tab.wait_for_function("document.querySelectorAll('#ng figure.NG img').length >= 3", timeout=10000)
            tab.wait_for_function(
                "document.querySelector('#frame').complete && document.querySelector('#frame').naturalWidth > 0",
                timeout=10000,
            )
            tab.wait_for_function("document.querySelectorAll('#chart path, #chart line').length >= 2", timeout=5000)
            assert tab.text_content("#conn") == "live"
            assert "synthetic" in tab.text_content("#source")
            tab.screenshot(path=str(shot))
    finally:
        feeder.stop.set()
        feeder.join(5)
        page_server.close()
    assert shot.stat().st_size > 10_000
    # The README's screenshot comes from the end-to-end run (tests/test_inspect_serve.py).


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run does)")
def test_camera_alarm_banner_and_gate_counts_in_headless_chromium(tmp_path):
    """The ALARM the line raises after frames fail the frame gate in a row shows as a banner, with the gate's
    counts by check, and goes away when it clears."""
    from edgeproj.line.alarm import GateMonitor
    from edgeproj.line.sinks import Sinks

    page_server = LivePage(port=0, title="edgeproj inspect: line 1", image_threshold=0.3).start()
    monitor = GateMonitor(3, Sinks([page_server]))
    rng = np.random.default_rng(0)
    try:
        with open_tab(page_server.url) as tab:
            for seq in range(4):
                row, img, _ = synthetic(seq, rng)
                reason = "frame gate: brightness 12 below the calibrated 98-121: too dark"
                row |= {"verdict": "FAULT", "score": None, "fault": reason, "gate": "brightness"}
                page_server.publish(row, img, None)
                monitor.update(seq, "brightness", reason)
            monitor.flush()  # counts between alarms go out at most once a second
            tab.wait_for_function("document.getElementById('alarm').className === 'on'", timeout=10000)
            assert "frames in a row failed the frame gate" in tab.text_content("#alarm")
            assert "too dark" in tab.text_content("#alarm")
            tab.wait_for_function("document.getElementById('gate').textContent.includes('brightness: 4')", timeout=10000)
            tab.screenshot(path=str(tmp_path / "alarm.png"))
            monitor.update(4, "", "")
            page_server.publish(synthetic(4, rng)[0], None, None)
            tab.wait_for_function("document.getElementById('alarm').className === ''", timeout=10000)
    finally:
        page_server.close()
