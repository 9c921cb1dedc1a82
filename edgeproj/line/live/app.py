"""The live page's web app: an aiohttp server on its own thread and event loop, serving the state the renderer commits.

Routes: `/` (the page, package data `page.html`, with the current state inlined), `/events` (server-sent
events, one per committed state), `/state.json`, `/frame.jpg` and `/ng/{key}.jpg`. With a token, every
route asks for it as `?token=...` or an `Authorization: Bearer` header.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import socket
import threading
from functools import cache
from importlib import resources

from edgeproj.errors import ConfigError
from edgeproj.line.live.state import LiveState


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


@cache
def page_template() -> str:
    """The page (self-contained: no external scripts, fonts or styles), with __TITLE__ and __INITIAL_STATE__ to fill."""
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


class WebApp:
    """Serves `state` on `host:port` (0 picks a free port, see `port` after `start`)."""

    def __init__(self, state: LiveState, host: str, port: int, token: str | None):
        self.state = state
        self.host, self.port, self.token = host, port, token
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._closing = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    def start(self) -> None:
        """Bind (errors surface here, as ConfigError), then serve on a background thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._sock = socket.create_server((self.host, self.port), family=family, reuse_port=False)
        except OSError as exc:
            raise ConfigError(f"--serve {self.host}:{self.port}: cannot listen ({exc.strerror or exc})") from None
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="edgeproj-live-http", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._start_error is not None:
            raise ConfigError(f"--serve: the page server did not start: {self._start_error}")
        self.state.on_commit = self.notify

    def notify(self) -> None:
        """Wake the open event streams (called from the renderer's thread when a state is committed)."""
        loop = self._loop
        if loop is not None and self._changed is not None:
            try:
                loop.call_soon_threadsafe(self._bump)
            except RuntimeError:  # the loop has already ended
                pass

    def close(self) -> None:
        """Stop serving; open pages see their event stream end."""
        self._closing.set()
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop has already ended
                pass
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    # ---- on the server's event loop ---------------------------------------------------------------

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
        initial = self.state.json.replace("</", "<\\/")
        title = _escape(str(self.state.info.get("title") or ""))
        html = page_template().replace("__INITIAL_STATE__", initial).replace("__TITLE__", title)
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _state_route(self, request):
        from aiohttp import web

        if not self._allowed(request):
            return self._deny()
        return web.Response(text=self.state.json, content_type="application/json", headers={"Cache-Control": "no-store"})

    async def _frame(self, request):
        from aiohttp import web

        if not self._allowed(request):
            return self._deny()
        jpeg = self.state.frame_jpeg
        if jpeg is None:
            return web.Response(status=404, text="no frame yet\n")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _ng_image(self, request):
        from aiohttp import web

        if not self._allowed(request):
            return self._deny()
        try:
            jpeg = self.state.ng_jpeg.get(int(request.match_info["key"]))
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
                if self.state.version != seen:
                    seen = self.state.version
                    await resp.write(f"data: {self.state.json}\n\n".encode())
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
