"""Bounded polling and loopback ports for tests that run real services (broker, web server, browser)."""

from __future__ import annotations

import socket
import time


def wait_for(cond, timeout: float = 10.0, what: str = "condition"):
    """Poll `cond` until it is truthy or `timeout` passes (then fail, naming `what`)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
