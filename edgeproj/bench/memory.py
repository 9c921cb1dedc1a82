"""Peak resident memory of the runtime against a torch process doing the same projection.

Each side runs in a fresh child process (`python -m edgeproj.bench.memory runtime|torch BUNDLE SIZE`)
that projects a few frames and reports its peak resident set (VmHWM); the runtime child never imports
torch, as on a device.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux VmHWM; ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _child(which: str, bundle: Path, size: int, frames: int = 3) -> dict:
    from edgeproj.bench.frames import line_frames
    from edgeproj.runtime import load_manifest

    m = load_manifest(bundle)
    imgs, _ = line_frames(m, size, frames)
    if which == "runtime":
        from edgeproj.preprocess import to_patches
        from edgeproj.runtime import Projector

        with Projector(m, batch=len(to_patches(imgs[0], m.preprocess)[0])) as proj:
            for _ in proj.stream(imgs, lean=True):  # as `inspect` runs: two frames in flight
                pass
    else:
        import torch

        from edgeproj.bench.eager import torch_model
        from edgeproj.models.torch_reference import torch_project_stopping
        from edgeproj.preprocess import to_patches

        model = torch_model(m)
        for f in imgs:
            torch_project_stopping(model, torch.from_numpy(to_patches(f, m.preprocess)[0]), m.projection)
    return {"peak_rss_mb": peak_rss_mb(), "torch_imported": "torch" in sys.modules}


def compare_peak_memory(bundle: Path, size: int, torch: bool = True) -> dict:
    """Peak RSS of the runtime child and (with torch) of the torch child, and their ratio."""
    out = {}
    for which in ("runtime", "torch") if torch else ("runtime",):
        proc = subprocess.run(
            [sys.executable, "-m", "edgeproj.bench.memory", which, str(bundle), str(size)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0:
            out[which] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
            continue
        out[which] = json.loads(proc.stdout.strip().splitlines()[-1])
    rt, th = out.get("runtime", {}).get("peak_rss_mb"), out.get("torch", {}).get("peak_rss_mb")
    if rt and th:
        out["runtime_over_torch"] = rt / th
    return out


if __name__ == "__main__":
    which, bundle, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(_child(which, bundle, size)))
