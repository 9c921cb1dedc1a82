#!/usr/bin/env python
"""Combine gate_trial.py reports into one JSON (stdout) and a Markdown table (stderr) for the README.

python benchmarks/gate_summary.py WORK/trial-*/gate-trial.json > benchmarks/gate-trial.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> int:
    sets = {}
    for p in paths:
        doc = json.loads(Path(p).read_text())
        name = Path(p).parent.name.removeprefix("trial-")
        g = doc["good_parts"]
        promise = g.get("calibration_promise") or {}
        hostile = doc["hostile"]
        sets[name] = {
            "bundle": doc["bundle"],
            "good_parts": {k: g[k] for k in ("images", "rejected_without_gate", "rejected_with_gate", "gate_checks")},
            "calibration_promise": promise,
            "hostile_frames": sum(sum(c["inspect"].values()) for c in hostile.values()),
            "hostile_ok": {verb: sum(c[verb].get("OK", 0) for c in hostile.values()) for verb in ("inspect", "project")},
            "hostile_ok_classes": sorted(n for n, c in hostile.items() if c["inspect"].get("OK") or c["project"].get("OK")),
            "hostile": hostile,
        }
    print(json.dumps(sets, indent=1))
    out = sys.stderr
    print("| set | good parts rejected, no gate | with the gate | calibration's promise | hostile frames | judged OK |", file=out)
    print("|---|---|---|---|---|---|", file=out)
    for name, s in sets.items():
        g, pr = s["good_parts"], s["calibration_promise"]
        n = g["images"]
        promise = f"{pr['rejected']}/{pr['images']} held out, at most {100 * pr['upper_95']:.1f}%" if pr else "-"
        ok = s["hostile_ok"]
        classes = f" ({', '.join(s['hostile_ok_classes'])})" if s["hostile_ok_classes"] else ""
        print(
            f"| {name} | {g['rejected_without_gate']}/{n} ({100 * g['rejected_without_gate'] / n:.1f}%) | "
            f"{g['rejected_with_gate']}/{n} ({100 * g['rejected_with_gate'] / n:.1f}%) | {promise} | {s['hostile_frames']} | "
            f"inspect {ok['inspect']}, project {ok['project']}{classes} |",
            file=out,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
