#!/usr/bin/env python
"""Does the line pass a part whose damage the autoencoder reconstructs easily?

Takes the first --frames good test images of a photo set category, and on each pastes a flat 30 x 30 px
patch (the frame's mean colour, at 100..130) and a 60 x 60 px Gaussian blur (sigma 3, at 60..120), then
judges the good and damaged frames with `edgeproj inspect` (every default of the bundle: gate, image
score, threshold). Reports each frame's verdict and score, and the damaged frames judged OK.

    python benchmarks/easy_patches.py BUNDLE PHOTOSET CATEGORY [--frames 4] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from photoset import add_photoset_args, write_report

# The damaged squares must lie inside the frame: smaller frames are refused, not silently left undamaged.
MIN_SIDE = 130


def damaged(image: np.ndarray) -> dict[str, np.ndarray]:
    """The frame as it is, with a flat patch, and with a blurred square (H x W or H x W x C, any dtype)."""
    flat = image.copy()
    flat[100:130, 100:130] = image.reshape(-1, image.shape[2] if image.ndim == 3 else 1).mean(0).astype(image.dtype)
    blur = image.copy()
    blur[60:120, 60:120] = cv2.GaussianBlur(image, (0, 0), 3)[60:120, 60:120]
    return {"good": image, "flat30": flat, "blur60": blur}


def main(argv=None) -> int:
    ap = add_photoset_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    ap.add_argument("--frames", type=int, default=4)
    args = ap.parse_args(argv)
    folder = args.root / args.category / "test" / "good"
    goods = sorted(folder.glob("*.png"))[: args.frames]
    if not goods:
        print(f"easy_patches: no good test images (*.png) in {folder}")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames"
        frames.mkdir()
        for i, p in enumerate(goods):
            image = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if image is None or min(image.shape[:2]) < MIN_SIDE:
                print(f"easy_patches: {p} is unreadable or smaller than {MIN_SIDE} px a side")
                return 2
            for kind, img in damaged(image).items():
                cv2.imwrite(str(frames / f"{i:03d}_{kind}.png"), img)
        cmd = [sys.executable, "-m", "edgeproj", "inspect", str(args.bundle), "-s", str(frames), "-o", str(Path(tmp) / "out")]
        run = subprocess.run([*cmd, "--json", "--quiet"], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        print(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"inspect exited {run.returncode}")
        return 1
    verdicts = [d for d in map(json.loads, run.stdout.splitlines()) if "verdict" in d]
    if len(verdicts) != 3 * len(goods):
        print(f"easy_patches: inspect judged {len(verdicts)} of {3 * len(goods)} frames")
        return 1
    rows = [{"frame": d["name"], "verdict": d["verdict"], "score": d.get("score"), "fault": d.get("fault")} for d in verdicts]
    bad_ok = [r["frame"] for r in rows if not r["frame"].endswith("_good.png") and r["verdict"] == "OK"]
    good_not_ok = [r["frame"] for r in rows if r["frame"].endswith("_good.png") and r["verdict"] != "OK"]
    report = {
        "bundle": str(args.bundle),
        "category": args.category,
        "frames": rows,
        "damaged_judged_ok": bad_ok,
        "damaged": sum(not r["frame"].endswith("_good.png") for r in rows),
        "good_not_ok": good_not_ok,
    }
    return write_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
