"""Broker outage during a real `edgeproj inspect --mqtt` run: stop mosquitto for 30 s mid-run, restart it,
and check that every frame message arrives, in order. Prints the message rate sustained while inspecting.

    python benchmarks/mqtt_outage.py BUNDLE VIDEO [--outage 30]

Needs mosquitto (Debian package) and paho-mqtt; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker(port: int, conf: Path) -> subprocess.Popen:
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def main() -> None:
    import paho.mqtt.client as mqtt

    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("video")
    ap.add_argument("--outage", type=float, default=30.0)
    ap.add_argument("--after", type=float, default=8.0, help="seconds of inspection before the broker stops")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    port = free_port()
    b = broker(port, tmp / "m.conf")
    got: list[dict] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="outage-sub", clean_session=False)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("plant/line1/frames", qos=1)
    sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    sub.reconnect_delay_set(0.2, 1.0)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    t0 = time.monotonic()
    line = subprocess.Popen(
        [sys.executable, "-m", "edgeproj", "inspect", a.bundle, "--source", a.video, "--out", str(tmp / "out"), "--json",
         "--mqtt", f"mqtt://127.0.0.1:{port}/plant/line1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(a.after)
    before = len(got)
    b.terminate()
    b.wait()
    t_stop = time.monotonic()
    time.sleep(a.outage)
    b = broker(port, tmp / "m.conf")
    t_back = time.monotonic()
    out, err = line.communicate(timeout=900)
    t_end = time.monotonic()
    summary = json.loads([x for x in out.splitlines() if '"summary": true' in x][-1])
    deadline = time.monotonic() + 30
    while len({(m["run_id"], m["seq"]) for m in got}) < summary["processed"] and time.monotonic() < deadline:
        time.sleep(0.1)
    sub.loop_stop()
    b.terminate()
    seqs = [m["seq"] for m in got]
    unique = sorted(set(seqs))
    first_seen = []
    for s in seqs:  # order of first arrival
        if s not in first_seen:
            first_seen.append(s)
    print(
        json.dumps(
            {
                "frames_judged": summary["processed"],
                "line_fps": round(summary["fps"], 2),
                "messages_before_outage": before,
                "outage_s": round(t_back - t_stop, 1),
                "messages_received": len(seqs),
                "unique": len(unique),
                "missing": summary["processed"] - len(unique),
                "duplicates": len(seqs) - len(unique),
                "in_order": first_seen == sorted(first_seen),
                "mqtt_stats": summary.get("sinks", {}),
                "run_s": round(t_end - t0, 1),
                "line_went_on_during_outage": summary["processed"] > before,
                "exit_code": line.returncode,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
