"""What the real-photograph benchmarks share: their arguments (BUNDLE PHOTOSET CATEGORY [--out]) and the
loading of a bundle, its category's labelled test set and the training images (photo_textures.py layout)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def add_photoset_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """BUNDLE PHOTOSET CATEGORY and --out REPORT.json."""
    ap.add_argument("bundle", type=Path)
    ap.add_argument("root", type=Path)
    ap.add_argument("category")
    ap.add_argument("--out", type=Path)
    return ap


def load_photoset(args):
    """(manifest, labelled TestSet, read) where read(lo, hi) gives training images lo..hi-1 (sorted by name)
    at the bundle's channels."""
    from edgeproj.data.images import read_image
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.runtime.manifest import load_manifest

    m = load_manifest(args.bundle)
    ts = load_testset(args.root, args.category, m.preprocess)
    train = sorted((args.root / args.category / "train" / "good").glob("*.png"))

    def read(lo: int, hi: int) -> list:
        return [read_image(p, m.channels) for p in train[lo:hi]]

    return m, ts, read


def crop_positions(root: Path, category: str, paths) -> tuple[list[int], tuple[int, int]] | None:
    """Each test image's crop x in its photograph and the x range of the training crops (photo_textures.py's
    dataset.json: test/good/NNN.png is test_good[NNN], test/contamination/NNN.png test_defect[NNN]; both ends
    inclusive, as it draws them). None without the file or a position for every image."""
    meta_path = Path(root) / category / "dataset.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    train_x = meta.get("train_x_range")
    recs = {"good": meta.get("test_good") or [], "contamination": meta.get("test_defect") or []}
    xs = []
    for p in paths:
        kind = recs.get(Path(p).parent.name)
        i = int(Path(p).stem) if Path(p).stem.isdigit() else -1
        if not train_x or kind is None or not 0 <= i < len(kind):
            return None
        xs.append(int(kind[i]["x"]))
    return xs, (int(train_x[0]), int(train_x[1]))


def inside_trained_columns(pos: tuple[list[int], tuple[int, int]]) -> np.ndarray:
    """Per test image of `crop_positions`, whether its crop starts inside the training crops' x range (both
    ends inclusive): a crop past it shows columns of the photograph that no training crop covered."""
    xs, (lo, hi) = pos
    return np.array([lo <= x <= hi for x in xs], bool)


def write_report(report: dict, out: Path | None) -> int:
    """Write the report as JSON to --out when given, then print it; the script's exit status. Written first:
    a closed stdout (a pager quit early) must not lose the report of a long run."""
    text = json.dumps(report, indent=1)
    if out:
        out.write_text(text + "\n")
    print(text)
    return 0
