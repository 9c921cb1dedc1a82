"""`LivePage`: the live operator page as a sink of the line, assembled from its state, renderer and web app."""

from __future__ import annotations

import numpy as np

from edgeproj.errors import ConfigError, require
from edgeproj.line.live.app import WebApp, is_loopback
from edgeproj.line.live.render import Renderer
from edgeproj.line.live.state import LiveState


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
        info = {"title": title, "image_threshold": image_threshold, "pixel_threshold": pixel_threshold}
        self.state = LiveState(info, history=history, ng_keep=ng_keep)
        self.renderer = Renderer(self.state, max_updates_per_s, max_width, jpeg_quality)
        self.app = WebApp(self.state, host, port, token)

    @property
    def host(self) -> str:
        return self.app.host

    @property
    def port(self) -> int:
        return self.app.port

    @property
    def token(self) -> str | None:
        return self.app.token

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def publish(self, row: dict, image: np.ndarray | None = None, anomaly_map: np.ndarray | None = None) -> None:
        """Count the row and leave the frame for the renderer; O(1), never waits on the page."""
        self.state.publish(row, image, anomaly_map)

    def status(self, **info) -> None:
        """Run-level facts shown on the page (run_id, source, image_threshold, pixel_threshold, bundle...)."""
        self.state.status(**info)

    def stats(self) -> dict:
        s = self.state
        return {"url": self.url, "frames": s.line.frames, "updates": s.version} | dict(s.counters)

    def start(self) -> LivePage:
        """Bind (errors surface here, as ConfigError), then serve and render on background threads."""
        require("aiohttp", "line")
        self.app.start()
        self.renderer.start()
        return self

    def close(self) -> dict:
        """Stop the render thread and the server (open pages see the stream end). Returns `stats()`."""
        self.renderer.close()
        self.app.close()
        return self.stats()

    def __enter__(self) -> LivePage:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
