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
fire as they do on good parts); without them, smooth noise frames are used and said so. The frames are
split into interleaved rounds (the runtime's share, then torch's, round after round, edgeproj.bench.rounds):
a figure is the median over rounds with its spread, and the ratio is taken within each round.
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import ExitStack

import numpy as np

from edgeproj.bench.eager import torch_available, torch_model
from edgeproj.bench.frames import line_frames
from edgeproj.bench.memory import compare_peak_memory
from edgeproj.bench.rounds import CpuLoad, cpu_sample, noisy_reason, spread_of
from edgeproj.bench.workload import latency_stats
from edgeproj.runtime.manifest import Manifest
from edgeproj.runtime.projector import Projector

__all__ = ["FRAME_SIZES", "line_frames", "bench_line_runtime", "bench_line_torch", "run_line"]

FRAME_SIZES = (256, 1024)


class _Engine:
    """Frames through one engine, round by round: latencies, iterations per tile and frames/s per round."""

    name = ""

    def __init__(self) -> None:
        self.lat: list[float] = []
        self.iters: list[int] = []
        self.fps_rounds: list[float] = []
        self._close = ExitStack()

    def __exit__(self, *exc) -> None:
        self._close.close()

    def row(self) -> dict:
        s = latency_stats(self.lat)
        fps = spread_of(self.fps_rounds)
        return {
            "fps": fps.median,
            "latency_ms": s,
            "tiles_per_frame": self.tiles,
            "iterations_per_tile": float(np.mean(self.iters)),  # steps that moved x (the last check's forward is extra)
            "tiles_stopped_at_x0": float(np.mean(np.asarray(self.iters) == 0)),
            "rounds": {"fps": list(self.fps_rounds)},
            "spread": {"fps": fps.as_json()},
        }


class LineRuntime(_Engine):
    """Frames through the runtime: the frame gate, then `Projector.submit(frame, lean=True)` with up to
    `in_flight` frames projecting at once, as `inspect` runs; latency from the gate to the result per frame.
    Every frame is projected whatever the gate says (the bench frames are resized training images, which a
    gate calibrated at another size may stop), so the figure is the full cost. A round's frames/s is its
    frames over its wall time, the frames in flight drained at the end of the round."""

    name = "runtime"

    def __init__(self, manifest: Manifest, backend: str, options, tiles: int, in_flight: int = 2):
        super().__init__()
        self.manifest, self.backend, self.options, self.tiles, self.in_flight = manifest, backend, options, tiles, in_flight
        self.gate_ms: list[float] = []

    def __enter__(self) -> LineRuntime:
        from edgeproj.runtime.gate import FrameGate

        with ExitStack() as stack:
            self.gate = FrameGate.of(self.manifest)
            self.proj = stack.enter_context(
                Projector(self.manifest, backend=self.backend, options=self.options, batch=self.tiles)
            )
            self.in_flight = self.in_flight if self.proj.pipelined else 1  # as inspect: only lanes gain from frames in flight
            # Which graphs step the tiles: the forward/update pair (a tile the stop rule ends skips the backward).
            self.graphs = "forward+update" if getattr(self.proj.runner, "split", False) else "step"
            self._close = stack.pop_all()
        return self

    def warm(self, frames: list[np.ndarray]) -> None:
        for f in frames:
            self.proj.project([f], lean=True)

    def round(self, frames: list[np.ndarray]) -> None:
        pending: deque = deque()

        def finish() -> None:
            t, wait = pending.popleft()
            res = wait()
            g = time.perf_counter()
            self.gate.check_model(res.rec_loss0)
            self.gate_ms[-1] += (time.perf_counter() - g) * 1000
            self.iters.extend(res.iterations)
            self.lat.append((time.perf_counter() - t) * 1000)

        start = time.perf_counter()
        for f in frames:
            t = time.perf_counter()
            self.gate.check_frame(f)
            self.gate_ms.append((time.perf_counter() - t) * 1000)
            pending.append((t, self.proj.submit(f, lean=True)))
            if len(pending) >= self.in_flight:
                finish()
        while pending:
            finish()
        self.fps_rounds.append(len(frames) / (time.perf_counter() - start))

    def row(self) -> dict:
        return super().row() | {"in_flight": self.in_flight, "graphs": self.graphs, "gate_ms": float(np.mean(self.gate_ms))}


class LineTorch(_Engine):
    """The same frames through the eager PyTorch loop with the same stop rules, one frame at a time."""

    name = "torch_eager"

    def __init__(self, manifest: Manifest, tiles: int):
        super().__init__()
        self.manifest, self.tiles = manifest, tiles

    def __enter__(self) -> LineTorch:
        import torch

        from edgeproj.models.torch_reference import torch_project_stopping
        from edgeproj.preprocess import stitch, to_patches
        from edgeproj.runtime.scoring import Scorer, dssim_maps

        m = self.manifest
        model, score = torch_model(m), Scorer.of(m)

        def frame(img: np.ndarray) -> list[int]:
            tiles, origins = to_patches(img, m.preprocess)
            x, iters = torch_project_stopping(model, torch.from_numpy(tiles), m.projection)
            amap = stitch(dssim_maps(tiles, x.numpy(), m.ssim_window), origins, m.preprocess, img.shape[:2])
            score(amap, img)
            return iters.tolist()

        self.frame = frame
        self.threads = torch.get_num_threads()
        return self

    def warm(self, frames: list[np.ndarray]) -> None:
        for f in frames:
            self.frame(f)

    def round(self, frames: list[np.ndarray]) -> None:
        lat = []
        for f in frames:
            t = time.perf_counter()
            self.iters += self.frame(f)
            lat.append((time.perf_counter() - t) * 1000)
        self.lat += lat
        self.fps_rounds.append(1000.0 / float(np.mean(lat)))

    def row(self) -> dict:
        return super().row() | {"threads": self.threads}


def _tiles(manifest: Manifest, frame: np.ndarray) -> int:
    from edgeproj.preprocess import to_patches

    return len(to_patches(frame, manifest.preprocess)[0])


def bench_line_runtime(manifest: Manifest, frames: list[np.ndarray], backend: str, options, warmup: int,
                       in_flight: int = 2) -> dict:  # fmt: skip
    """Frames per second of a line through the runtime alone, all frames in one round (see LineRuntime)."""
    with LineRuntime(manifest, backend, options, _tiles(manifest, frames[0]), in_flight) as eng:
        eng.warm(frames[:warmup])
        eng.round(frames)
    return eng.row()


def bench_line_torch(manifest: Manifest, frames: list[np.ndarray], warmup: int) -> dict | None:
    """The same frames through the eager PyTorch loop alone, in one round (None without torch)."""
    if not torch_available():
        return None
    with LineTorch(manifest, _tiles(manifest, frames[0])) as eng:
        eng.warm(frames[:warmup])
        eng.round(frames)
    return eng.row()


def line_rounds(frames: int, rounds: int, in_flight: int = 2) -> int:
    """Rounds to split `frames` into: at most `rounds`, each with at least `in_flight` frames."""
    return max(1, min(rounds, frames // in_flight))


def run_line(manifest: Manifest, backend: str, options, sizes=FRAME_SIZES, count: int = 20, warmup: int = 2,
             torch: bool = True, memory: bool = True, rounds: int = 5) -> dict:  # fmt: skip
    """The line figure for each frame size: runtime and torch rows in interleaved rounds, their ratio
    per round (median and spread), and peak memory."""
    out = {"channels": manifest.channels, "stop": manifest.projection.stop.__dict__, "backend": backend, "frames": {}}
    torch = torch and torch_available()
    for size in sizes:
        frames, source = line_frames(manifest, size, count + warmup)
        tiles = _tiles(manifest, frames[0])
        with ExitStack() as stack:
            engines = [stack.enter_context(LineRuntime(manifest, backend, options, tiles))]
            if torch:
                engines.append(stack.enter_context(LineTorch(manifest, tiles)))
            for eng in engines:
                eng.warm(frames[:warmup])
            before = cpu_sample()
            for chunk in np.array_split(np.arange(len(frames)), line_rounds(len(frames), rounds)):
                for eng in engines:
                    eng.round([frames[i] for i in chunk])
            load = CpuLoad.between(before, cpu_sample())
        row = {"source": source} | {eng.name: eng.row() for eng in engines}
        spreads = {f"{eng.name}.fps": spread_of(eng.fps_rounds) for eng in engines}
        row["rounds"], row["spread"] = {}, {}
        if torch:
            rt, th = engines
            ratios = [a / b for a, b in zip(rt.fps_rounds, th.fps_rounds, strict=True)]
            spreads["fps_ratio_vs_torch"] = spread_of(ratios)
            row["fps_ratio_vs_torch"] = spreads["fps_ratio_vs_torch"].median
            row["rounds"]["fps_ratio_vs_torch"] = ratios
            row["spread"]["fps_ratio_vs_torch"] = spreads["fps_ratio_vs_torch"].as_json()
        row["noisy"] = {k: noisy_reason(v, load) for k, v in spreads.items() if v.noisy}
        row["load"] = load.as_json()
        out["frames"][f"{size}x{size}x{manifest.channels}"] = row
    if memory:
        out["memory"] = compare_peak_memory(manifest.root, min(sizes), torch=torch)
    return out


def line_summary(line: dict) -> dict:
    """The line's entry in the bench summary: a noisy figure is None there, its spread and reason say why."""
    out = {}
    for frame, r in line["frames"].items():
        noisy = r.get("noisy", {})
        ratio = r.get("fps_ratio_vs_torch")
        out[frame] = {
            "fps": None if "runtime.fps" in noisy else round(r["runtime"]["fps"], 2),
            "fps_ratio_vs_torch": None if "fps_ratio_vs_torch" in noisy else ratio,
            "iterations_per_tile": round(r["runtime"]["iterations_per_tile"], 2),
            "spread": {"fps": r["runtime"]["spread"]["fps"]} | r.get("spread", {}),
            "noisy": noisy,
        }
    return out
