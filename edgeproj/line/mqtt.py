"""Verdicts to the plant over MQTT: one JSON message per frame at QoS 1, a retained status, a disk spool.

Topics, for `--mqtt mqtt://HOST[:PORT]/TOPIC`:

- `TOPIC/frames`: one message per processed frame, QoS 1, not retained; the payload is the frame's row
  (the same fields as the SQLite row) as strict JSON. Delivery is at least once: a consumer dedupes on
  `(run_id, seq)`.
- `TOPIC/status`: retained, QoS 1. `{"state": "online", ...}` on connect and every `status_every_s`, with
  counts, frames/s, latency, thresholds, bundle checksum and the publisher's own counters;
  `{"state": "offline", ...}` on a clean close, and the same (reason "connection lost") as the last will
  when the device disappears.

Every frame message goes through a bounded SQLite spool beside the results and leaves it only when the
broker has acknowledged it (PUBACK), so a broker that is down (or a process that is killed) loses
nothing up to the bound: the messages are sent in order when the broker is back, or by the next run
with the same spool file. A message that finds the spool full is not stored and counted as overflow.
The line thread only appends the row to a bounded in-memory queue; serializing, the spool and the
network happen on the publisher's worker thread and paho's network thread.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from edgeproj.errors import ConfigError, require
from edgeproj.jsonio import dumps_strict
from edgeproj.line.sinks import LineStats

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttConfig:
    """Where and how to connect; `parse_mqtt_url` builds one from the command line."""

    host: str
    topic: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None  # server CA (default: the system's)
    cert_file: Path | None = None  # client certificate (mutual TLS)
    key_file: Path | None = None
    insecure: bool = False  # TLS without verifying the server's host name (test brokers only)
    client_id: str = ""  # default: edgeproj-<random>
    keepalive: int = 30

    @property
    def frames_topic(self) -> str:
        return f"{self.topic}/frames"

    @property
    def status_topic(self) -> str:
        return f"{self.topic}/status"

    def describe(self) -> str:
        """The URL without credentials (for logs and the summary)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}/{self.topic}"


def parse_mqtt_url(url: str, **options) -> MqttConfig:
    """`mqtt://[USER[:PASS]@]HOST[:PORT]/TOPIC` or `mqtts://...` -> MqttConfig; `options` set the other fields.

    Raises ConfigError for another scheme, a missing host or topic, or a topic with wildcards.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(f"--mqtt '{url}': use mqtt://HOST[:PORT]/TOPIC or mqtts://HOST[:PORT]/TOPIC")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ConfigError(f"--mqtt '{url}': the port is not a number in 1..65535") from None
    host = parts.hostname
    topic = unquote(parts.path.strip("/"))
    if not host:
        raise ConfigError(f"--mqtt '{url}': no broker host")
    if not topic:
        raise ConfigError(f"--mqtt '{url}': no topic; give one after the host, e.g. mqtt://{host}:{port}/plant/line1")
    if any(c in topic for c in "+#\0"):
        raise ConfigError(f"--mqtt '{url}': a topic to publish on cannot hold the wildcards + or #")
    fields_ = {"host": host, "port": port, "topic": topic, "tls": scheme == "mqtts"}
    if parts.username:
        fields_["username"] = unquote(parts.username)
    if parts.password:
        fields_["password"] = unquote(parts.password)
    fields_.update({k: v for k, v in options.items() if v is not None})
    if fields_.get("password") and not fields_.get("username"):
        raise ConfigError("an MQTT password needs a user name (--mqtt-user)")
    for key in ("ca_file", "cert_file", "key_file"):
        if fields_.get(key) is not None:
            path = Path(fields_[key])
            if not path.is_file():
                raise ConfigError(f"MQTT TLS file '{path}' does not exist")
            fields_[key] = path
            fields_["tls"] = True
    return MqttConfig(**fields_)


class Spool:
    """Bounded FIFO of (topic, payload) in SQLite (WAL): what the broker has not yet acknowledged."""

    def __init__(self, path: Path, max_messages: int):
        if max_messages < 1:
            raise ConfigError("the MQTT spool must hold at least one message")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_messages = max_messages
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload TEXT NOT NULL)"
        )
        self.size = self.db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]

    def push(self, items: list[tuple[str, str]]) -> int:
        """Append as many as fit, in order; returns how many did (the rest overflow)."""
        room = max(0, self.max_messages - self.size)
        take = items[:room]
        if take:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT INTO spool (topic, payload) VALUES (?, ?)", take)
            self.size += len(take)
        return len(take)

    def after(self, last_id: int, limit: int) -> list[tuple[int, str, str]]:
        """The oldest `limit` messages with an id above `last_id`."""
        return self.db.execute(
            "SELECT id, topic, payload FROM spool WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
        ).fetchall()

    def delete(self, ids: list[int]) -> None:
        if ids:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])
            self.size -= len(ids)

    def close(self) -> None:
        self.db.close()


class MqttPublisher:
    """The MQTT sink: `start()`, then `publish(row)` per frame from the line thread, `close()` at the end.

    Args:
        config: broker, topic, TLS and credentials.
        spool_path: the SQLite spool file (e.g. OUT/mqtt-spool.sqlite); unsent messages of an earlier run
            in it are sent first.
        spool_max: messages the spool holds; beyond it a frame's message is counted as overflow.
        window: messages handed to the client and not yet acknowledged, at most.
        status_every_s: how often the retained status is refreshed while connected.
        close_timeout_s: how long `close()` waits for the spool to drain before leaving the rest on disk.
        reconnect_max_s: the longest wait between two connection attempts.
    """

    def __init__(
        self,
        config: MqttConfig,
        spool_path: Path,
        *,
        spool_max: int = 100_000,
        window: int = 64,
        status_every_s: float = 10.0,
        close_timeout_s: float = 5.0,
        reconnect_max_s: float = 30.0,
    ):
        self.config = config
        self.spool_path = Path(spool_path)
        self.spool_max = spool_max
        self.window = max(1, window)
        self.status_every_s = status_every_s
        self.close_timeout_s = close_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.client_id = config.client_id or f"edgeproj-{uuid.uuid4().hex[:10]}"
        self.line = LineStats()
        self._info: dict = {}
        self._incoming: collections.deque = collections.deque()
        self._acks: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._connected = threading.Event()
        self._disconnects = 0
        self._status_dirty = True
        self._client = None
        self._spool: Spool | None = None
        self._worker: threading.Thread | None = None
        self._counters = collections.Counter(accepted=0, overflow=0, sent=0, acked=0, connects=0, disconnects=0)
        self._line_overflow = 0
        self.last_error = ""

    # ---- the line's side -------------------------------------------------------------------------

    def publish(self, row: dict, image: np.ndarray | None = None, anomaly_map: np.ndarray | None = None) -> None:
        """Queue one frame's row (images are not sent); never blocks, never raises for a broker problem."""
        if self._closing.is_set():
            return
        self.line.add(row)
        if len(self._incoming) >= self.spool_max:  # the worker is far behind (a stuck disk): count, don't wait
            self._line_overflow += 1  # only this thread writes it
            return
        self._incoming.append(dict(row))
        self._wake.set()

    def status(self, **info) -> None:
        """Facts for the retained status (run_id, source, image_threshold, pixel_threshold, bundle_sha256...)."""
        self._info.update(info)
        self._status_dirty = True
        self._wake.set()

    def stats(self) -> dict:
        c = self._counters
        return {
            "broker": self.config.describe(),
            "connected": self._connected.is_set(),
            "accepted": c["accepted"],
            "sent": c["sent"],
            "acked": c["acked"],
            "overflow": c["overflow"] + self._line_overflow,
            "spooled": self._spool.size if self._spool else 0,
            "queued": len(self._incoming),
            "connects": c["connects"],
            "disconnects": c["disconnects"],
            "last_error": self.last_error,
        }

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> MqttPublisher:
        """Open the spool and start connecting in the background (a broker that is down is not an error)."""
        mqtt = require("paho.mqtt.client", "line")
        self._spool = Spool(self.spool_path, self.spool_max)
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        cfg = self.config
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            import ssl

            try:
                client.tls_set(
                    ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                    certfile=str(cfg.cert_file) if cfg.cert_file else None,
                    keyfile=str(cfg.key_file) if cfg.key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise ConfigError(f"MQTT TLS setup failed: {exc}") from None
            if cfg.insecure:
                client.tls_insecure_set(True)
        client.will_set(cfg.status_topic, self._status_payload("offline", reason="connection lost"), qos=1, retain=True)
        client.max_inflight_messages_set(self.window)
        client.reconnect_delay_set(1, max(1, int(self.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        try:
            client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"MQTT broker {cfg.describe()}: {exc}") from None
        client.loop_start()  # paho's network thread; it retries the first connection too
        self._worker = threading.Thread(target=self._run, name="edgeproj-mqtt", daemon=True)
        self._worker.start()
        return self

    def close(self) -> dict:
        """Send what the broker takes within `close_timeout_s`, publish the offline status, disconnect.

        Unsent messages stay in the spool file for the next run. Returns `stats()`.
        """
        if self._worker is None:
            return self.stats()
        self._closing.set()
        self._wake.set()
        self._worker.join(self.close_timeout_s + 5)
        client = self._client
        if self._connected.is_set():
            info = client.publish(self.config.status_topic, self._status_payload("offline", reason="closed"), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
        client.disconnect()
        client.loop_stop()
        stats = self.stats()
        self._spool.close()
        self._worker = None
        return stats

    def __enter__(self) -> MqttPublisher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- paho's thread ----------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"connection refused: {reason_code}"
            return
        self._counters["connects"] += 1
        self.last_error = ""
        self._status_dirty = True
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            self._counters["disconnects"] += 1
            self._disconnects += 1
        self._connected.clear()
        if not self._closing.is_set():
            self.last_error = f"disconnected: {reason_code}"

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append(mid)
        self._wake.set()

    # ---- the worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        spool, client = self._spool, self._client
        handed: dict[int, tuple[int, int]] = {}  # mid -> (spool id, disconnect count when handed)
        last_id = 0
        next_status = 0.0
        deadline = None
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            # 1. the line's rows -> the spool (in order; what does not fit is overflow)
            batch = []
            while self._incoming:
                batch.append(self._incoming.popleft())
            if batch:
                items = [(self.config.frames_topic, dumps_strict(r, indent=None)) for r in batch]
                kept = spool.push(items)
                self._counters["accepted"] += kept
                self._counters["overflow"] += len(items) - kept
            # 2. acknowledged -> out of the spool
            done = []
            while self._acks:
                entry = handed.pop(self._acks.popleft(), None)
                if entry is not None:
                    done.append(entry[0])
            if done:
                spool.delete(done)
                self._counters["acked"] += len(done)
            # 3. hand the next messages to the client. After a reconnect, paho resends what it holds first;
            # new messages wait until those are acknowledged, so the order on the wire stays the spool's.
            connected = self._connected.is_set()
            stale = any(epoch < self._disconnects for _, epoch in handed.values())
            if connected and not stale and len(handed) < self.window:
                for sid, topic, payload in spool.after(last_id, self.window - len(handed)):
                    info = client.publish(topic, payload, qos=1)
                    handed[info.mid] = (sid, self._disconnects)
                    last_id = sid
                    self._counters["sent"] += 1
            # 4. the retained status
            now = time.monotonic()
            if connected and (self._status_dirty or now >= next_status) and not self._closing.is_set():
                self._status_dirty = False
                next_status = now + self.status_every_s
                client.publish(self.config.status_topic, self._status_payload("online"), qos=1, retain=True)
            if self._closing.is_set():
                deadline = deadline or now + self.close_timeout_s
                if (not self._incoming and spool.size == 0) or now >= deadline:
                    return

    def _status_payload(self, state: str, **extra) -> str:
        doc = {"state": state, "client_id": self.client_id, "wall_ts": time.time()}
        doc |= self._info
        doc |= self.line.snapshot()
        doc["mqtt"] = {k: v for k, v in self.stats().items() if k not in ("broker", "last_error")} if self._spool else {}
        doc |= extra
        return dumps_strict(doc, indent=None)
