#!/usr/bin/env python
"""Copy a calibrated bundle exported before the forward/update split and give the copy the split graphs.

The bundle's training run is exported again (same weights, so the same graphs plus forward.onnx and
update.onnx); the new graph files, their manifest entries and the new parity section go into a copy of
the bundle, whose calibration and projection settings stay as they were. Old and new then differ only in
the graphs the CPU runtime can use, which is what issue 15's before/after figures compare.

    python benchmarks/add_split_graphs.py OLD_BUNDLE NEW_BUNDLE [export options, e.g. --parity-steps 20]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    src, dst, extra = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    doc = json.loads((src / "manifest.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "bundle"
        export = [sys.executable, "-m", "edgeproj", "export", doc["training"]["run"], "--out", str(fresh), "--json", *extra]
        subprocess.run(export, check=True, stdout=subprocess.DEVNULL)
        new = json.loads((fresh / "manifest.json").read_text())
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        for g in new["graphs"].values():
            shutil.copy(fresh / g["file"], dst / g["file"])
    doc.update(graphs=new["graphs"], parity=new["parity"], cost=new["cost"])
    (dst / "manifest.json").write_text(json.dumps(doc, indent=1))
    print(f"{dst}: graphs {', '.join(sorted(doc['graphs']))}; forward + update vs step {new['parity']['split']['max_err']:.1e}")


if __name__ == "__main__":
    main()
