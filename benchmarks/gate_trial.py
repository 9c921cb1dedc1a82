#!/usr/bin/env python
"""The frame gate's trial on one calibrated bundle (issue 23): good parts still pass, hostile frames never do.

1. False-reject rate of held-out good images, without and with the gate, through the runtime: a part is
   rejected without the gate when its image score is above the calibrated threshold (or not finite),
   with the gate also when the gate fails it. The calibration's own promise is printed beside it.
2. Every hostile class of edgeproj.data.hostile (blank, flat, blurred, exposure, occluded, another
   product, tiny, distorted, unnormalized float, non-finite), built from --bases good images, judged by
   the real verbs: `edgeproj inspect --json` on the folder and `edgeproj project --json` on the files.
   Counts OK / NG / FAULT per class (OK must be 0) and the reasons.

    python benchmarks/gate_trial.py BUNDLE --good DATA/cat/test/good --other OTHER.png --out /tmp/trial/cat
Writes OUT/gate-trial.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from edgeproj.data.hostile import CLASSES, write_frames
from edgeproj.data.images import list_images, read_image
from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.gate import FrameGate
from edgeproj.runtime.verdict import judge


def good_part_rates(bundle: Path, good: list[Path], backend: str) -> dict:
    manifest = load_manifest(bundle)
    gate = FrameGate.of(manifest)
    thr = manifest.calibration.image_threshold
    rows = []
    with Projector(manifest, backend=backend) as proj:
        for path in good:
            img = read_image(path, manifest.channels)
            (res,) = proj.project([img], lean=True)
            checked = gate.check_frame(img).merged(gate.check_model(res.rec_loss0))
            v = judge(res.score, thr, res.diverged, gate=checked)
            rows.append(
                {"file": path.name, "score": res.score, "over": not (res.score <= thr), "gate": v.gate, "verdict": v.verdict}
            )
    n = len(rows)
    over = sum(r["over"] for r in rows)
    rejected = sum(r["verdict"] != "OK" for r in rows)
    return {
        "images": n,
        "rejected_without_gate": over,
        "rejected_with_gate": rejected,
        "frr_without_gate": over / n,
        "frr_with_gate": rejected / n,
        "gate_checks": dict(Counter(r["gate"] for r in rows if r["gate"])),
        "calibration_promise": manifest.calibration.measured.get("promise"),
        "rows": rows,
    }


def verbs(bundle: Path, folder: Path, out: Path) -> dict[str, dict[str, dict]]:
    """class file stem -> verdict and reason, from inspect and from project."""
    res: dict[str, dict[str, dict]] = {"inspect": {}, "project": {}}
    cmd = ["edgeproj", "inspect", str(bundle), "--source", str(folder), "--out", str(out / "inspect"), "--json", "--quiet"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    for line in p.stdout.splitlines():
        row = json.loads(line)
        if "verdict" in row and not row.get("summary"):
            res["inspect"][Path(row["name"]).stem] = {
                "verdict": row["verdict"],
                "reason": row.get("fault") or "",
                "gate": row.get("gate"),
            }
    files = sorted(str(f) for f in folder.iterdir())
    cmd = ["edgeproj", "project", str(bundle), *files, "--out", str(out / "project"), "--json", "--quiet"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    doc = json.loads(p.stdout) if p.stdout.strip() else {"images": []}
    for s in doc["images"]:
        res["project"][Path(s["source"]).stem] = {"verdict": s["verdict"], "reason": s.get("fault") or "", "gate": s.get("gate")}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--good", type=Path, required=True, help="held-out good images (never trained or calibrated on)")
    ap.add_argument("--other", type=Path, required=True, help="an image of another product or texture")
    ap.add_argument("--bases", type=int, default=3, help="good images each hostile class is built from")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--backend", default="ort-cpu")
    args = ap.parse_args(argv)

    manifest = load_manifest(args.bundle)
    good = list_images(args.good)
    rates = good_part_rates(args.bundle, good, args.backend)
    folder = args.out / "hostile"
    for b, path in enumerate(good[: args.bases]):
        img = read_image(path, manifest.channels)
        other = read_image(args.other)
        write_frames(folder, img, other, seed=b, prefix=f"b{b}_")
    by_verb = verbs(args.bundle, folder, args.out)
    table: dict[str, dict] = defaultdict(lambda: {"inspect": Counter(), "project": Counter(), "reasons": Counter()})
    for verb, rows in by_verb.items():
        for stem, r in rows.items():
            name = stem.split("_", 1)[1]
            table[name][verb][r["verdict"]] += 1
            if verb == "inspect":
                table[name]["reasons"][r["gate"] or r["verdict"]] += 1
    groups = {c.name: c.group for c in CLASSES}
    classes = {
        name: {"group": groups[name], "inspect": dict(t["inspect"]), "project": dict(t["project"]), "checks": dict(t["reasons"])}
        for name, t in table.items()
    }
    ok_total = sum(c["inspect"].get("OK", 0) + c["project"].get("OK", 0) for c in classes.values())
    doc = {
        "bundle": str(args.bundle),
        "good_parts": {k: v for k, v in rates.items() if k != "rows"},
        "hostile": classes,
        "hostile_ok_total": ok_total,
        "frames_per_class": args.bases,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gate-trial.json").write_text(json.dumps(doc | {"good_rows": rates["rows"]}, indent=1, default=float) + "\n")
    g = doc["good_parts"]
    print(
        f"good parts ({g['images']} held out): rejected {g['rejected_without_gate']} without the gate "
        f"({100 * g['frr_without_gate']:.1f}%), {g['rejected_with_gate']} with it ({100 * g['frr_with_gate']:.1f}%); "
        f"gate checks {g['gate_checks']}"
    )
    print(f"{'class':<20} {'group':<14} {'inspect OK/NG/FAULT':<20} {'project OK/NG/FAULT':<20} checks (inspect)")
    for name in [c.name for c in CLASSES]:
        c = classes.get(name)
        if c is None:
            print(f"{name:<20} (no result)")
            continue
        f = lambda d: f"{d.get('OK', 0)}/{d.get('NG', 0)}/{d.get('FAULT', 0)}"  # noqa: E731
        print(f"{name:<20} {c['group']:<14} {f(c['inspect']):<20} {f(c['project']):<20} {c['checks']}")
    print(f"hostile frames judged OK: {ok_total} (must be 0)")
    return 0 if ok_total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
