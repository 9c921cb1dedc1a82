"""MQTT publishing against a real broker (mosquitto, started and stopped here), the broker going down included."""

from __future__ import annotations

import getpass
import json
import math
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from wait_helpers import free_port, wait_for

from edgeproj.errors import ConfigError
from edgeproj.line.mqtt import MqttPublisher, parse_mqtt_url

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install -e '.[dev]')")
needs_broker = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto; .ci/run does)"
)


class Broker:
    """mosquitto on a loopback port, with persistence so a persistent subscriber's queue survives a restart."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            f"user {getpass.getuser()}\n"
            "log_dest none\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def accepting():
            assert self.proc.poll() is None, "mosquitto exited at start"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(accepting, 10, "mosquitto to accept connections")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto writes its persistence file and exits
            self.proc.wait(timeout=10)
        self.proc = None


class Subscriber:
    """A persistent-session QoS 1 subscriber that records every message of TOPIC/#."""

    def __init__(self, port: int, topic: str):
        self.topic = topic
        self.frames: list[dict] = []
        self.status: list[dict] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub", clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe(f"{topic}/#", qos=1), self.connected.set())
        self.client.on_disconnect = lambda c, u, f, rc, p: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(self.connected.is_set, 10, "the subscriber to connect")

    def _on_message(self, client, userdata, msg):
        doc = json.loads(msg.payload.decode(), parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
        with self.lock:
            (self.frames if msg.topic.endswith("/frames") else self.status).append(doc)

    def seqs(self) -> list[int]:
        with self.lock:
            return [f["seq"] for f in self.frames]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def row(seq: int, verdict: str = "OK", score: float = 0.1) -> dict:
    return {
        "seq": seq,
        "run_id": "run-test",
        "source": "synthetic",
        "name": f"f{seq:04d}",
        "capture_ts": 1.7e9 + seq,
        "latency_ms": 5.0 + seq % 3,
        "score": score,
        "verdict": verdict,
        "iterations": 12.0,
        "stop_reason": "energy",
        "map_path": None,
        "overlay_path": None,
    }


def assert_in_order_complete(seqs: list[int], expected: list[int]):
    """At least once, in order: first occurrences are exactly `expected`, a repeat only re-sends an earlier one."""
    firsts = list(dict.fromkeys(seqs))
    assert firsts == expected, f"got {firsts[:10]}... of {len(firsts)}"


def test_parse_mqtt_url(tmp_path):
    c = parse_mqtt_url("mqtt://broker.local/plant/line1")
    assert (c.host, c.port, c.topic, c.tls) == ("broker.local", 1883, "plant/line1", False)
    assert c.frames_topic == "plant/line1/frames" and c.status_topic == "plant/line1/status"
    c = parse_mqtt_url("mqtts://u:p%40ss@10.0.0.2:9000/l", password=None)
    assert (c.port, c.tls, c.username, c.password) == (9000, True, "u", "p@ss")
    assert "p@ss" not in repr(c) and "p@ss" not in c.describe()
    assert parse_mqtt_url("mqtt://h/t", username="a", password="b").password == "b"
    for bad in ("http://h/t", "mqtt://h", "mqtt:///t", "mqtt://h/a/+", "mqtt://h:99999/t"):
        with pytest.raises(ConfigError):
            parse_mqtt_url(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        parse_mqtt_url("mqtt://h/t", ca_file=tmp_path / "nope.pem")


@needs_broker
def test_frames_and_retained_status(broker, tmp_path):
    sub = Subscriber(broker.port, "plant/line1")
    cfg = parse_mqtt_url(f"mqtt://127.0.0.1:{broker.port}/plant/line1")
    pub = MqttPublisher(cfg, tmp_path / "spool.sqlite", status_every_s=60).start()
    pub.status(run_id="run-test", image_threshold=0.5, pixel_threshold=0.2, bundle_sha256="ab" * 32)
    verdicts = ["OK", "NG", "FAULT"]
    for i in range(30):
        pub.publish(row(i, verdicts[i % 3], float("nan") if i == 7 else 0.1 * i))
    wait_for(lambda: len(set(sub.seqs())) == 30, 10, "30 frame messages")
    assert_in_order_complete(sub.seqs(), list(range(30)))
    by_seq = {f["seq"]: f for f in sub.frames}
    assert by_seq[7]["score"] is None  # NaN travels as null: strict JSON
    assert set(by_seq[1]) == set(row(1))  # the row's fields, all of them
    assert by_seq[2]["verdict"] == "FAULT"
    wait_for(lambda: pub.stats()["spooled"] == 0, 5, "the spool to empty")
    stats = pub.close()
    assert stats["acked"] == 30 and stats["overflow"] == 0
    wait_for(lambda: sub.status and sub.status[-1]["state"] == "offline", 5, "the offline status")
    online = [s for s in sub.status if s["state"] == "online"]
    assert online and online[-1]["bundle_sha256"] == "ab" * 32 and online[-1]["image_threshold"] == 0.5
    final = sub.status[-1]
    assert final["counts"] == {"OK": 10, "NG": 10, "FAULT": 10} and final["frames"] == 30
    sub.close()
    # The status is retained: a newcomer gets the last one at once.
    late = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="late")
    got = []
    late.on_message = lambda c, u, m: got.append((m.retain, json.loads(m.payload)))
    late.connect("127.0.0.1", broker.port)
    late.subscribe("plant/line1/status", qos=1)
    late.loop_start()
    try:
        wait_for(lambda: got, 5, "the retained status")
        assert got[0][0] and got[0][1]["state"] == "offline" and math.isfinite(got[0][1]["wall_ts"])
    finally:
        late.loop_stop()
        late.disconnect()


@needs_broker
def test_broker_down_mid_run_loses_nothing_and_keeps_order(broker, tmp_path):
    sub = Subscriber(broker.port, "line")
    cfg = parse_mqtt_url(f"mqtt://127.0.0.1:{broker.port}/line")
    pub = MqttPublisher(cfg, tmp_path / "spool.sqlite", reconnect_max_s=1).start()
    try:
        for i in range(40):
            pub.publish(row(i))
        wait_for(lambda: pub.stats()["acked"] == 40, 10, "the first 40 acknowledgements")
        broker.stop()
        wait_for(lambda: not pub.stats()["connected"], 10, "the publisher to notice the broker is gone")
        # The line goes on while the broker is down: publish never waits, the spool grows.
        worst = 0.0
        for i in range(40, 240):
            t = time.perf_counter()
            pub.publish(row(i, "NG" if i % 10 == 0 else "OK"))
            worst = max(worst, time.perf_counter() - t)
        assert worst < 0.25, f"publish blocked for {worst * 1000:.1f} ms"
        wait_for(lambda: pub.stats()["spooled"] >= 200, 10, "the spool to take the 200 messages")
        assert pub.stats()["overflow"] == 0
        broker.start()  # same port, same persistence
        wait_for(lambda: len(set(sub.seqs())) == 240, 20, "all 240 messages after the restart")
        assert_in_order_complete(sub.seqs(), list(range(240)))
        wait_for(lambda: pub.stats()["spooled"] == 0, 5, "the spool to drain")
        stats = pub.close()
        assert stats["acked"] >= 240 and stats["overflow"] == 0 and stats["disconnects"] >= 1
    finally:
        pub.close()
        sub.close()


@needs_broker
def test_spool_overflow_is_counted_and_the_rest_survives_a_restart(broker, tmp_path):
    sub = Subscriber(broker.port, "ov")  # its persistent session outlives the broker's restart
    broker.stop()
    cfg = parse_mqtt_url(f"mqtt://127.0.0.1:{broker.port}/ov")
    spool = tmp_path / "spool.sqlite"
    # The broker is down from the start; the first run closes before it comes back.
    pub = MqttPublisher(cfg, spool, spool_max=10, close_timeout_s=0.2, reconnect_max_s=1).start()
    for i in range(25):
        pub.publish(row(i))
    wait_for(lambda: pub.stats()["accepted"] + pub.stats()["overflow"] == 25, 10, "the spool to take what fits")
    stats = pub.close()
    assert (stats["accepted"], stats["overflow"], stats["spooled"]) == (10, 15, 10)
    # The next run (same spool file, a larger bound) sends the first run's messages before its own.
    broker.start()
    pub = MqttPublisher(cfg, spool, spool_max=100, reconnect_max_s=1).start()
    try:
        for i in range(100, 105):
            pub.publish(row(i))
        expected = list(range(10)) + list(range(100, 105))
        wait_for(lambda: len(set(sub.seqs())) == 15, 15, "the spooled and the new messages")
        assert_in_order_complete(sub.seqs(), expected)
    finally:
        pub.close()
        sub.close()


@needs_broker
def test_the_camera_alarm_reaches_the_retained_status_and_clears(broker, tmp_path):
    """Frames failing the frame gate in a row: the retained status carries the ALARM, then its clearing."""
    from edgeproj.line.alarm import GateMonitor
    from edgeproj.line.sinks import Sinks

    sub = Subscriber(broker.port, "plant/line2")
    cfg = parse_mqtt_url(f"mqtt://127.0.0.1:{broker.port}/plant/line2")
    pub = MqttPublisher(cfg, tmp_path / "spool.sqlite", status_every_s=60).start()
    monitor = GateMonitor(2, Sinks([pub]))
    for seq in range(3):
        monitor.update(seq, "sharpness", "frame gate: sharpness 3.1 below the calibrated 41-96: out of focus, or no part")
    wait_for(lambda: any(s.get("alarm") for s in list(sub.status)), 10, "a status with the alarm")
    raised = [s for s in sub.status if s.get("alarm")][0]
    assert raised["state"] == "online" and raised["alarm"]["active"] and "sharpness 3.1" in raised["alarm"]["reason"]
    monitor.update(3, "", "")
    wait_for(lambda: sub.status and sub.status[-1].get("alarm") is None and sub.status[-1].get("gate", {}).get("passed") == 1,
             10, "the cleared alarm")  # fmt: skip
    assert sub.status[-1]["gate"]["by_check"]["sharpness"] == 3 and sub.status[-1]["gate"]["alarms"] == 1
    pub.close()
    sub.close()
