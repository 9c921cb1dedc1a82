"""The line figure: frames per second and latency of whole frames, stop rules on, against PyTorch eager.

A frame goes through everything `edgeproj inspect` does to it: preprocessing (resize to the working size,
tiling), the projection of all its tiles with the bundle's calibrated stop rules, the DSSIM map, stitching
and the image score (`Projector.submit(frame, lean=True)`, two frames in flight as `inspect` keeps them:
on CPU lanes the next frame's tiles start while this frame's last tiles finish). Frames per second is
frames over wall time; latency runs from a frame's submission to its result. The PyTorch row projects
the same tiles with the same stop rules in eager autograd (`torch_project_stopping`, one frame at a
time on all cores) and shares the numpy pre- and post-processing, so the ratio compares the projection
engines on identical work. Both check the stop rule before the step, as the CPU runtime does; device
backends check it after the step, every chunk, so their rows take one step more per tile than the torch row.

Frames are the bundle's own normal training images resized to each frame size (the stop rules then
fire as they do on good parts); without them, smooth noise frames are used and said so.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import numpy as np

from edgeproj.runtime.manifest import Manifest
from edgeproj.runtime.projector import Projector

FRAME_SIZES = (256, 1024)


def line_frames(manifest: Manifest, size: int, count: int) -> tuple[list[np.ndarray], str]:
    """`count` frames of size x size: the bundle's training images resized, or smooth noise without them."""
    import cv2

    from edgeproj.data.images import IMAGE_EXTS, read_image

    src = Path((manifest.training.get("data") or {}).get("source") or "")
    folder = src / "train" / "good" if (src / "train" / "good").is_dir() else src
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_EXTS) if str(src) and folder.is_dir() else []
    frames = []
    for p in paths[:count]:
        img = read_image(p, channels=manifest.channels)
        frames.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, manifest.channels))
    if frames:
        return frames, f"{len(frames)} training images of '{folder}' resized to {size}x{size}"
    rng = np.random.default_rng(0)
    for _ in range(count):
        small = rng.random((size // 16, size // 16, manifest.channels)).astype(np.float32)
        frames.append(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).reshape(size, size, -1).clip(0, 1))
    return frames, f"{count} smooth noise frames (the training images are not reachable): stop rules rarely fire"


def bench_line_runtime(
    manifest: Manifest, frames: list[np.ndarray], backend: str, options, warmup: int, in_flight: int = 2
) -> dict:
    """Frames per second of a line through the runtime: the frame gate, then `Projector.submit(frame,
    lean=True)` with up to `in_flight` frames projecting at once, as `inspect` runs; latency from the gate
    to the result per frame. Every frame is projected whatever the gate says (the bench frames are resized
    training images, which a gate calibrated at another size may stop), so the figure is the full cost."""
    from edgeproj.preprocess import to_patches
    from edgeproj.runtime.gate import FrameGate

    gate = FrameGate.of(manifest)
    gate_ms: list[float] = []
    tiles = len(to_patches(frames[0], manifest.preprocess)[0])
    with Projector(manifest, backend=backend, options=options, batch=tiles) as proj:
        in_flight = in_flight if proj.pipelined else 1  # as inspect: only lanes gain from frames in flight
        # Which graphs step the tiles: the forward/update pair (a tile the stop rule ends skips the backward).
        graphs = "forward+update" if getattr(proj.runner, "split", False) else "step"
        for f in frames[:warmup]:
            proj.project([f], lean=True)
        lat, iters = [], []
        pending: deque = deque()

        def finish() -> None:
            t, wait = pending.popleft()
            res = wait()
            g = time.perf_counter()
            gate.check_model(res.rec_loss0)
            gate_ms[-1] += (time.perf_counter() - g) * 1000
            iters.extend(res.iterations)
            lat.append((time.perf_counter() - t) * 1000)

        start = time.perf_counter()
        for f in frames:
            t = time.perf_counter()
            gate.check_frame(f)
            gate_ms.append((time.perf_counter() - t) * 1000)
            pending.append((t, proj.submit(f, lean=True)))
            if len(pending) >= in_flight:
                finish()
        while pending:
            finish()
        wall = time.perf_counter() - start
    return _row(lat, iters, tiles, wall) | {"in_flight": in_flight, "graphs": graphs, "gate_ms": float(np.mean(gate_ms))}


def _row(lat: list[float], iters: list[int], tiles: int, wall_s: float | None = None) -> dict:
    from edgeproj.bench.runner import latency_stats

    s = latency_stats(lat)
    return {
        "fps": len(lat) / wall_s if wall_s else 1000.0 / s["mean"],
        "latency_ms": s,
        "tiles_per_frame": tiles,
        "iterations_per_tile": float(np.mean(iters)),  # steps that moved x (the forward of the last check is extra)
        "tiles_stopped_at_x0": float(np.mean(np.asarray(iters) == 0)),
    }


def bench_line_torch(manifest: Manifest, frames: list[np.ndarray], warmup: int) -> dict | None:
    """The same frames through the eager PyTorch loop with the same stop rules (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    from edgeproj.bench.runner import torch_model
    from edgeproj.models.torch_reference import torch_project_stopping
    from edgeproj.preprocess import stitch, to_patches
    from edgeproj.runtime.scoring import Scorer, dssim_maps

    model = torch_model(manifest)
    score = Scorer.of(manifest)
    settings = manifest.projection
    pre = manifest.preprocess

    def frame(img: np.ndarray) -> list[int]:
        tiles, origins = to_patches(img, pre)
        x, iters = torch_project_stopping(model, torch.from_numpy(tiles), settings)
        amap = stitch(dssim_maps(tiles, x.numpy(), manifest.ssim_window), origins, pre, img.shape[:2])
        score(amap, img)
        return iters.tolist()

    for f in frames[:warmup]:
        frame(f)
    lat, iters = [], []
    for f in frames:
        t = time.perf_counter()
        iters += frame(f)
        lat.append((time.perf_counter() - t) * 1000)
    return _row(lat, iters, len(to_patches(frames[0], pre)[0])) | {"threads": torch.get_num_threads()}


def run_line(manifest: Manifest, backend: str, options, sizes=FRAME_SIZES, count: int = 20, warmup: int = 2,
             torch: bool = True, memory: bool = True) -> dict:  # fmt: skip
    """The line figure for each frame size: runtime and torch rows, their ratio, and peak memory."""
    out = {"channels": manifest.channels, "stop": manifest.projection.stop.__dict__, "backend": backend, "frames": {}}
    for size in sizes:
        frames, source = line_frames(manifest, size, count + warmup)
        row = {"source": source, "runtime": bench_line_runtime(manifest, frames, backend, options, warmup)}
        if torch:
            row["torch_eager"] = bench_line_torch(manifest, frames, warmup)
            if row["torch_eager"]:
                row["fps_ratio_vs_torch"] = row["runtime"]["fps"] / row["torch_eager"]["fps"]
        out["frames"][f"{size}x{size}x{manifest.channels}"] = row
    if memory:
        from edgeproj.bench.memory import compare_peak_memory

        out["memory"] = compare_peak_memory(manifest.root, min(sizes), torch=torch)
    return out
