"""The live operator page (`inspect --serve`): latest frame and overlay, verdict, counts, rates, score history,
the camera ALARM banner and the frame gate's counts by check.

Three threads, none of them the line's: the line calls `publish`, which only counts the row and puts the
frame in a one-slot buffer (the newest wins: frames are dropped for the page, never for the line); a
render thread draws the overlay and encodes JPEGs at most `max_updates_per_s` times a second; an
aiohttp server on its own event loop serves the page, the images and a server-sent-event stream that
carries the page's state. The page is self-contained (no external scripts, fonts or styles).

Bound to 127.0.0.1 by default; any other host needs a token, given to the page as `?token=...` (or an
`Authorization: Bearer` header to the JSON and image routes).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import ipaddress
import json
import socket
import threading
import time

import numpy as np

from edgeproj.errors import ConfigError, require
from edgeproj.jsonio import strict_json
from edgeproj.line.sinks import LineStats


def parse_listen(spec: str | int) -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[IPv6]:PORT` -> (host, port); the host defaults to 127.0.0.1."""
    text = str(spec).strip()
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--serve '{spec}': give PORT or HOST:PORT, e.g. --serve 8080 or --serve 0.0.0.0:8080") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"--serve '{spec}': the port must lie in 0..65535")
    return host, number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LivePage:
    """The page server and its render thread; a sink (`publish`, `status`, `stats`, `close`).

    Args:
        host: address to bind; 127.0.0.1 unless given.
        port: TCP port; 0 picks a free one (see `url`).
        token: required from clients when given; refused to start without one on a non-loopback host.
        image_threshold: the score above which a frame is NG (the chart's line); `status()` can set it later.
        pixel_threshold: the map value outlined on the overlay.
        title: shown in the page header.
        history: scores kept for the chart.
        ng_keep: last NG/FAULT frames shown as thumbnails.
        max_updates_per_s: page updates (renders and events) per second, at most.
        max_width: frames wider than this are scaled down for the page.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        token: str | None = None,
        image_threshold: float | None = None,
        pixel_threshold: float | None = None,
        title: str = "edgeproj inspect",
        history: int = 300,
        ng_keep: int = 8,
        max_updates_per_s: float = 10.0,
        max_width: int = 640,
        jpeg_quality: int = 85,
    ):
        if not is_loopback(host) and not token:
            raise ConfigError(
                f"--serve on '{host}' is reachable from other machines: give a token (--serve-token or "
                "EDGEPROJ_SERVE_TOKEN), or serve on 127.0.0.1"
            )
        self.host, self.port, self.token = host, port, token
        self.info: dict = {"title": title, "image_threshold": image_threshold, "pixel_threshold": pixel_threshold}
        self.max_updates_per_s = max_updates_per_s
        self.max_width = max_width
        self.jpeg_quality = jpeg_quality
        self.line = LineStats()
        self._lock = threading.Lock()
        self._latest: tuple | None = None  # (row, image, map): the one-slot buffer
        self._last_row: dict | None = None
        self._history: collections.deque = collections.deque(maxlen=history)
        self._ng_pending: collections.deque = collections.deque(maxlen=ng_keep)
        self._ng: collections.deque = collections.deque(maxlen=ng_keep)  # (key, meta, jpeg)
        self._ng_jpeg: dict[int, bytes] = {}
        self._frame_jpeg: bytes | None = None
        self._frame_v = 0
        self._ng_seq = 0
        self._state_json = "{}"
        self._version = 0
        self._counters = collections.Counter(rendered=0, skipped=0, render_errors=0)
        self._new = threading.Event()
        self._closing = threading.Event()
        self._render_thread: threading.Thread | None = None
        self._server_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._sock: socket.socket | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # ---- the line's side -------------------------------------------------------------------------

    def publish(self, row: dict, image: np.ndarray | None = None, anomaly_map: np.ndarray | None = None) -> None:
        """Count the row and leave the frame in the one-slot buffer; O(1), never waits on the page."""
        self.line.add(row)
        score = row.get("score")
        point = (
            row.get("seq"),
            float(score) if isinstance(score, int | float) and np.isfinite(score) else None,
            row.get("verdict"),
        )
        with self._lock:
            self._history.append(point)
            self._last_row = row
            if image is not None:
                if self._latest is not None:
                    self._counters["skipped"] += 1
                self._latest = (row, image, anomaly_map)
                if row.get("verdict") in ("NG", "FAULT"):
                    self._ng_pending.append((row, image, anomaly_map))
        self._new.set()

    def status(self, **info) -> None:
        """Run-level facts shown on the page (run_id, source, image_threshold, pixel_threshold, bundle...)."""
        with self._lock:
            self.info.update(info)
        self._new.set()

    def stats(self) -> dict:
        return {"url": self.url, "frames": self.line.frames, "updates": self._version} | dict(self._counters)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LivePage:
        """Bind (errors surface here, as ConfigError), then serve and render on background threads."""
        require("aiohttp", "line")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._sock = socket.create_server((self.host, self.port), family=family, reuse_port=False)
        except OSError as exc:
            raise ConfigError(f"--serve {self.host}:{self.port}: cannot listen ({exc.strerror or exc})") from None
        self.port = self._sock.getsockname()[1]
        self._server_thread = threading.Thread(target=self._serve, name="edgeproj-live-http", daemon=True)
        self._server_thread.start()
        self._ready.wait(30)
        if self._start_error is not None:
            raise ConfigError(f"--serve: the page server did not start: {self._start_error}")
        self._render_thread = threading.Thread(target=self._render_loop, name="edgeproj-live-render", daemon=True)
        self._render_thread.start()
        return self

    def close(self) -> dict:
        """Stop the render thread and the server (open pages see the stream end). Returns `stats()`."""
        self._closing.set()
        self._new.set()
        if self._render_thread is not None:
            self._render_thread.join(10)
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop has already ended
                pass
        if self._server_thread is not None:
            self._server_thread.join(10)
        self._render_thread = self._server_thread = None
        return self.stats()

    def __enter__(self) -> LivePage:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the render thread ------------------------------------------------------------------------

    def _render_loop(self) -> None:
        import cv2

        from edgeproj import overlays

        period = 1.0 / self.max_updates_per_s if self.max_updates_per_s > 0 else 0.0
        next_at = 0.0
        while not self._closing.is_set():
            self._new.wait(1.0)  # also wakes once a second so frames/s decays on an idle line
            if self._closing.is_set():
                break
            now = time.monotonic()
            if now < next_at:
                self._closing.wait(next_at - now)  # rate limit for the page; the line is not waiting
                continue
            self._new.clear()
            next_at = time.monotonic() + period
            with self._lock:
                latest, self._latest = self._latest, None
                pending = list(self._ng_pending)
                self._ng_pending.clear()
                info = dict(self.info)
            try:
                pix = info.get("pixel_threshold")
                vmax = 2 * pix if pix else None
                if latest is not None:
                    self._frame_jpeg = self._encode(cv2, overlays, latest[1], latest[2], pix, vmax)
                    self._frame_v += 1
                for row, image, amap in pending:
                    jpeg = self._encode(cv2, overlays, image, amap, pix, vmax, width=240)
                    self._ng_seq += 1
                    key = self._ng_seq
                    self._ng_jpeg[key] = jpeg
                    self._ng.append((key, {k: row.get(k) for k in ("seq", "name", "score", "verdict", "capture_ts", "wall_ts")}))
                    live = {k for k, _ in self._ng}
                    for old in [k for k in self._ng_jpeg if k not in live]:
                        del self._ng_jpeg[old]
                self._counters["rendered"] += latest is not None
            except Exception:  # a frame the page cannot draw is skipped; the page and the line go on
                self._counters["render_errors"] += 1
            self._publish_state(info)

    def _encode(self, cv2, overlays, image, amap, pix, vmax, width=None) -> bytes:
        if amap is not None:
            bgr = overlays.overlay(image, amap, pix, vmax=vmax)
        elif image.dtype != np.uint8:
            bgr = overlays.to_u8(image)
        else:
            bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 or image.shape[2] == 1 else image
        limit = width or self.max_width
        if bgr.shape[1] > limit:
            h = max(1, round(bgr.shape[0] * limit / bgr.shape[1]))
            bgr = cv2.resize(bgr, (limit, h), interpolation=cv2.INTER_AREA)
        elif bgr.shape[1] < 256 and width is None:  # small ROIs: scale up, crisp pixels, for the operator's eye
            f = max(1, 384 // bgr.shape[1])
            bgr = cv2.resize(bgr, (bgr.shape[1] * f, bgr.shape[0] * f), interpolation=cv2.INTER_NEAREST)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return buf.tobytes()

    def _state(self, info: dict) -> dict:
        with self._lock:
            history = list(self._history)
            row = self._last_row
        return {
            "v": self._version + 1,
            "info": info,
            "stats": self.line.snapshot(),
            "row": row,
            "history": history,
            "frame_v": self._frame_v if self._frame_jpeg else 0,
            "ng": [{"key": k} | meta for k, meta in reversed(self._ng)],
            "page": dict(self._counters),
        }

    def _publish_state(self, info: dict) -> None:
        text = json.dumps(strict_json(self._state(info)), allow_nan=False)
        self._state_json = text
        self._version += 1
        loop = self._loop
        if loop is not None and self._changed is not None:
            try:
                loop.call_soon_threadsafe(self._bump)
            except RuntimeError:
                pass

    # ---- the server (its own event loop) -----------------------------------------------------------

    def _bump(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); after start, the page is gone but the line goes on
            self._start_error = exc
            self._ready.set()

    async def _main(self) -> None:
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/events", self._events)
        app.router.add_get("/state.json", self._state_route)
        app.router.add_get("/frame.jpg", self._frame)
        app.router.add_get("/ng/{key}.jpg", self._ng_image)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            self._bump()  # open event streams see the change and end because the page is closing
            await runner.cleanup()

    def _allowed(self, request) -> bool:
        if not self.token:
            return True
        given = request.query.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _deny(self):
        from aiohttp import web

        return web.Response(status=403, text="403: this page needs ?token=...\n")

    async def _page(self, request):
        from aiohttp import web

        if not self._allowed(request):
            return self._deny()
        initial = self._state_json.replace("</", "<\\/")
        html = PAGE.replace("__INITIAL_STATE__", initial).replace("__TITLE__", _escape(str(self.info.get("title") or "")))
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _state_route(self, request):
        from aiohttp import web

        if not self._allowed(request):
            return self._deny()
        return web.Response(text=self._state_json, content_type="application/json", headers={"Cache-Control": "no-store"})

    async def _frame(self, request):
        from aiohttp import web

        if not self._allowed(request):
            return self._deny()
        jpeg = self._frame_jpeg
        if jpeg is None:
            return web.Response(status=404, text="no frame yet\n")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _ng_image(self, request):
        from aiohttp import web

        if not self._allowed(request):
            return self._deny()
        try:
            jpeg = self._ng_jpeg.get(int(request.match_info["key"]))
        except ValueError:
            jpeg = None
        if jpeg is None:
            return web.Response(status=404, text="gone\n")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def _events(self, request):
        from aiohttp import web

        if not self._allowed(request):
            return self._deny()
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        seen = -1
        try:
            await resp.write(b"retry: 1000\n\n")
            while not self._closing.is_set():
                if self._version != seen:
                    seen = self._version
                    await resp.write(f"data: {self._state_json}\n\n".encode())
                    continue
                changed = self._changed
                try:
                    await asyncio.wait_for(changed.wait(), 15)
                except asyncio.TimeoutError:
                    await resp.write(b": keep-alive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --ok: #1f9d55; --ng: #d62828; --fault: #e09b00; --bg: #111418; --panel: #1b2027; --fg: #e8eaed; --dim: #9aa3ad; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; gap: 1.2em; align-items: baseline; padding: 10px 18px; background: var(--panel); border-bottom: 1px solid #2a313a; }
header h1 { font-size: 18px; margin: 0; }
header .meta { color: var(--dim); font-size: 13px; }
#conn { margin-left: auto; font-size: 13px; color: var(--dim); }
#conn.live::before { content: "\\25CF "; color: var(--ok); }
#conn.lost::before { content: "\\25CF "; color: var(--ng); }
main { display: grid; grid-template-columns: minmax(320px, 1fr) minmax(360px, 1.1fr); gap: 14px; padding: 14px 18px; }
.panel { background: var(--panel); border-radius: 8px; padding: 12px 14px; }
#verdict { font-size: 84px; font-weight: 800; letter-spacing: 4px; text-align: center; border-radius: 8px; padding: 6px 0; background: #333; }
#verdict.OK { background: var(--ok); } #verdict.NG { background: var(--ng); } #verdict.FAULT { background: var(--fault); color: #111; }
#score { text-align: center; color: var(--dim); margin: 6px 0 10px; }
#frame { width: 100%; image-rendering: pixelated; border-radius: 6px; background: #000; min-height: 120px; display: block; }
.stats { display: grid; grid-template-columns: repeat(4, 1fr); gap: 8px; }
.stat { background: #232a33; border-radius: 6px; padding: 6px 8px; }
.stat .k { color: var(--dim); font-size: 12px; } .stat .v { font-size: 22px; font-weight: 700; font-variant-numeric: tabular-nums; }
h2 { font-size: 14px; color: var(--dim); font-weight: 600; margin: 14px 0 6px; text-transform: uppercase; letter-spacing: 1px; }
#chart { width: 100%; height: 180px; background: #151a20; border-radius: 6px; }
#ng { display: flex; flex-wrap: wrap; gap: 8px; }
#ng figure { margin: 0; width: 120px; } #ng img { width: 120px; border-radius: 4px; border: 2px solid var(--ng); display: block; }
#ng figure.FAULT img { border-color: var(--fault); }
#ng figcaption { font-size: 11px; color: var(--dim); }
.empty { color: var(--dim); font-size: 13px; }
#alarm { display: none; margin: 0; padding: 10px 18px; background: var(--fault); color: #111; font-weight: 700; font-size: 17px; }
#alarm.on { display: block; }
#gate { font-size: 13px; color: var(--dim); } #gate b { color: var(--fg); }
</style></head>
<body>
<header><h1 id="title">__TITLE__</h1><span class="meta" id="source"></span><span class="meta" id="run"></span><span id="conn">connecting</span></header>
<div id="alarm" role="alert"></div>
<main>
 <section class="panel">
  <div id="verdict" class="none">&mdash;</div>
  <div id="score">waiting for the first frame</div>
  <img id="frame" alt="latest frame with its anomaly overlay">
 </section>
 <section class="panel">
  <div class="stats">
   <div class="stat"><div class="k">frames</div><div class="v" id="s-frames">0</div></div>
   <div class="stat"><div class="k">OK</div><div class="v" id="s-ok">0</div></div>
   <div class="stat"><div class="k">NG</div><div class="v" id="s-ng">0</div></div>
   <div class="stat"><div class="k">FAULT</div><div class="v" id="s-fault">0</div></div>
   <div class="stat"><div class="k">frames/s</div><div class="v" id="s-fps">&ndash;</div></div>
   <div class="stat"><div class="k">latency p50 ms</div><div class="v" id="s-p50">&ndash;</div></div>
   <div class="stat"><div class="k">latency p99 ms</div><div class="v" id="s-p99">&ndash;</div></div>
   <div class="stat"><div class="k">NG rate</div><div class="v" id="s-rate">&ndash;</div></div>
  </div>
  <h2>Score history <span id="thr-label"></span></h2>
  <svg id="chart" viewBox="0 0 600 180" preserveAspectRatio="none"></svg>
  <h2>Last NG frames</h2>
  <div id="ng"><span class="empty">none yet</span></div>
  <h2>Frame gate</h2>
  <div id="gate"><span class="empty">no frame stopped</span></div>
 </section>
</main>
<script id="initial" type="application/json">__INITIAL_STATE__</script>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const withToken = (p) => token ? p + (p.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : p;
const $ = (id) => document.getElementById(id);
const fmt = (x, d) => (x === null || x === undefined) ? "\\u2013" : Number(x).toFixed(d);
let frameV = -1, ngKeys = "";
function chart(history, thr) {
  const svg = $("chart"), W = 600, H = 180, pad = 6;
  const pts = history.filter((p) => p[1] !== null);
  let top = Math.max(thr ? thr * 1.6 : 0, ...pts.map((p) => p[1]), 1e-9) * 1.08;
  const x = (i) => pad + (W - 2 * pad) * (history.length > 1 ? i / (history.length - 1) : 0.5);
  const y = (v) => H - pad - (H - 2 * pad) * (v / top);
  let path = "", out = [];
  history.forEach((p, i) => { if (p[1] === null) return; path += (path ? " L" : "M") + x(i).toFixed(1) + " " + y(p[1]).toFixed(1); });
  out.push('<path d="' + path + '" fill="none" stroke="#7fb3ff" stroke-width="1.6" vector-effect="non-scaling-stroke"/>');
  history.forEach((p, i) => { if (p[1] !== null && p[2] !== "OK") out.push('<circle cx="' + x(i).toFixed(1) + '" cy="' + y(p[1]).toFixed(1) + '" r="3" fill="' + (p[2] === "NG" ? "#d62828" : "#e09b00") + '"/>'); });
  if (thr) {
    out.push('<line x1="0" x2="' + W + '" y1="' + y(thr).toFixed(1) + '" y2="' + y(thr).toFixed(1) + '" stroke="#d62828" stroke-dasharray="6 4" stroke-width="1.2" vector-effect="non-scaling-stroke"/>');
    out.push('<text x="' + (W - 4) + '" y="' + (y(thr) - 4).toFixed(1) + '" fill="#d62828" font-size="11" text-anchor="end">threshold ' + fmt(thr, 4) + '</text>');
  }
  svg.innerHTML = out.join("");
}
function render(s) {
  if (!s || !s.stats) return;
  const info = s.info || {}, st = s.stats, c = st.counts || {}, row = s.row;
  if (info.title) { $("title").textContent = info.title; document.title = (row ? row.verdict + " \\u00b7 " : "") + info.title; }
  $("source").textContent = info.source ? "source " + info.source : "";
  $("run").textContent = info.run_id ? "run " + info.run_id : "";
  if (row) {
    const v = $("verdict"); v.textContent = row.verdict; v.className = row.verdict;
    $("score").textContent = "frame " + row.seq + (row.name ? " (" + row.name + ")" : "") + " \\u00b7 score " + fmt(row.score, 4) + (info.image_threshold ? " / threshold " + fmt(info.image_threshold, 4) : "") + (row.fault ? " \\u00b7 " + row.fault : "");
  }
  $("s-frames").textContent = st.frames; $("s-ok").textContent = c.OK || 0; $("s-ng").textContent = c.NG || 0; $("s-fault").textContent = c.FAULT || 0;
  $("s-fps").textContent = fmt(st.fps, 1); $("s-p50").textContent = fmt(st.latency_ms_p50, 1); $("s-p99").textContent = fmt(st.latency_ms_p99, 1);
  $("s-rate").textContent = st.frames ? (100 * (c.NG || 0) / st.frames).toFixed(1) + "%" : "\\u2013";
  $("thr-label").textContent = info.image_threshold ? "(threshold dashed)" : "";
  chart(s.history || [], info.image_threshold);
  const al = info.alarm, ab = $("alarm");
  ab.className = al && al.active ? "on" : "";
  ab.textContent = al && al.active ? "ALARM: " + al.frames_in_row + " frames in a row failed the frame gate (camera, lighting or no part): " + al.reason : "";
  const g = info.gate;
  if (g && g.failed) {
    $("gate").innerHTML = "";
    const head = document.createElement("div");
    head.innerHTML = "<b>" + g.failed + "</b> frame(s) stopped by the gate (FAULT), <b>" + g.alarms + "</b> alarm(s)";
    $("gate").append(head);
    for (const [k, n] of Object.entries(g.by_check || {})) { const d = document.createElement("div"); d.textContent = k + ": " + n; $("gate").append(d); }
  }
  if (s.frame_v && s.frame_v !== frameV) { frameV = s.frame_v; $("frame").src = withToken("/frame.jpg?v=" + frameV); }
  const keys = (s.ng || []).map((n) => n.key).join(",");
  if (keys !== ngKeys) {
    ngKeys = keys;
    $("ng").innerHTML = (s.ng || []).length ? "" : '<span class="empty">none yet</span>';
    for (const n of s.ng || []) {
      const f = document.createElement("figure"); f.className = n.verdict;
      const img = document.createElement("img"); img.src = withToken("/ng/" + n.key + ".jpg"); img.alt = n.verdict + " frame " + n.seq;
      const cap = document.createElement("figcaption"); cap.textContent = n.verdict + " #" + n.seq + " \\u00b7 " + fmt(n.score, 4);
      f.append(img, cap); $("ng").append(f);
    }
  }
}
render(JSON.parse($("initial").textContent || "{}"));
const es = new EventSource(withToken("/events"));
es.onopen = () => { $("conn").textContent = "live"; $("conn").className = "live"; };
es.onerror = () => { $("conn").textContent = "reconnecting"; $("conn").className = "lost"; };
es.onmessage = (e) => render(JSON.parse(e.data));
</script>
</body></html>
"""
