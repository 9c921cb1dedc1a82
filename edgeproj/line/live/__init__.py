"""The live operator page (`inspect --serve`): latest frame and overlay, verdict, counts, rates, score history,
the camera ALARM banner and the frame gate's counts by check.

Three threads, none of them the line's: the line calls `publish`, which only counts the row and puts the
frame in a one-slot buffer (`state`); a render thread (`render`) draws the overlay and encodes JPEGs at
most `max_updates_per_s` times a second; an aiohttp server on its own event loop (`app`) serves the page
(`page.html`, package data), the images and a server-sent-event stream that carries the page's state.
`LivePage` (`page`) assembles them into one sink.

Bound to 127.0.0.1 by default; any other host needs a token, given to the page as `?token=...` (or an
`Authorization: Bearer` header to the JSON and image routes).
"""

from edgeproj.line.live.app import is_loopback, parse_listen
from edgeproj.line.live.page import LivePage

__all__ = ["LivePage", "is_loopback", "parse_listen"]
