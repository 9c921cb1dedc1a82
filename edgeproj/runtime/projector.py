"""`Projector`: bundle + backend -> anomaly maps for whole images (tiling, stitching, scoring)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeproj.errors import BackendError, ConfigError, DataError
from edgeproj.preprocess import stitch, to_patches, working_size
from edgeproj.runtime.backends import create_runner
from edgeproj.runtime.backends.base import StepParams
from edgeproj.runtime.loop import BatchResult, run_projection
from edgeproj.runtime.manifest import Manifest, Projection, load_manifest
from edgeproj.runtime.scoring import MAP_KINDS, anomaly_map, dssim_maps, image_score


@dataclass
class ImageResult:
    """One image's projection. Maps are at the original image size; projection/recon at the model frame."""

    map: np.ndarray
    score: float
    baseline_map: np.ndarray
    baseline_score: float
    projection: np.ndarray
    recon: np.ndarray
    iterations: list[int]
    stop_reasons: list[str]
    energy_traces: list[list[float]]
    map_kind: str
    source: str = ""
    extra_maps: dict = field(default_factory=dict)

    @property
    def diverged(self) -> int:
        return sum(r == "diverged" for r in self.stop_reasons)

    def summary(self) -> dict:
        """JSON-ready figures (no arrays)."""
        return {
            "source": self.source,
            "score": self.score,
            "baseline_score": self.baseline_score,
            "map_kind": self.map_kind,
            "tiles": len(self.iterations),
            "iterations_mean": float(np.mean(self.iterations)),
            "iterations_max": int(np.max(self.iterations)),
            "stop_reasons": dict(Counter(self.stop_reasons)),
            "diverged_tiles": self.diverged,
            "energy_first_last": [[t[0], t[-1]] if t else [] for t in self.energy_traces],
        }


class Projector:
    """Runs the masked-Adam projection of a bundle on one backend.

    Use `Projector.from_bundle(path, backend=...)` as a context manager; `project(images)` takes
    HxWxC float arrays in [0, 1] or image paths.
    """

    def __init__(self, manifest: Manifest, backend: str = "ort-cpu", batch: int = 8, force_fp16: bool = False, **backend_options):
        if batch < 1:
            raise ConfigError("batch must be >= 1")
        fp16 = manifest.calibration.get("precision", {}).get("fp16")
        if backend_options.get("fp16") and isinstance(fp16, dict) and not fp16.get("allowed", True) and not force_fp16:
            raise BackendError(f"calibration measured FP16 losing accuracy ({fp16.get('pixel_auroc_drop', 'map mismatch')}); "
                               "run in FP32, or pass --force-fp16")
        self.manifest = manifest
        self.backend = backend
        self.batch = batch
        self.runner = create_runner(backend, manifest, **backend_options)
        self._open = False

    @classmethod
    def from_bundle(cls, path: str | Path, backend: str = "ort-cpu", batch: int = 8, **backend_options) -> "Projector":
        return cls(load_manifest(Path(path)), backend=backend, batch=batch, **backend_options)


    def __enter__(self) -> "Projector":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        if not self._open:
            self.runner.__enter__()
            self._open = True

    def close(self) -> None:
        if self._open:
            self.runner.__exit__(None, None, None)
            self._open = False

    def settings(self, no_rec_loss_stop: bool = False, **overrides) -> Projection:
        """The manifest's projection settings with per-call overrides (None keeps the manifest value).

        no_rec_loss_stop disables the L_r threshold rule (inpainting runs to convergence).
        """
        changes = {k: v for k, v in overrides.items() if v is not None}
        if no_rec_loss_stop:
            changes["rec_loss_threshold"] = None
        stop_keys = ("rec_loss_threshold", "energy_rtol", "window", "check_every")
        stop_changes = {k: changes.pop(k) for k in stop_keys if k in changes}
        proj = replace(self.manifest.projection, **changes)
        if stop_changes:
            proj = replace(proj, stop=replace(proj.stop, **stop_changes))
        if proj.map_kind not in MAP_KINDS:
            raise ConfigError(f"unknown map kind '{proj.map_kind}'; choose one of {', '.join(MAP_KINDS)}")
        return proj

    def project_patches(self, x0: np.ndarray, weight: np.ndarray | None = None, **overrides) -> BatchResult:
        """Project model-sized patches (P x C x 128 x 128) in batches; returns one concatenated result."""
        self.open()
        proj = self.settings(**overrides)
        c, s = self.manifest.channels, self.manifest.size
        if x0.ndim != 4 or x0.shape[1:] != (c, s, s):
            raise DataError(f"patches must be N x {c} x {s} x {s}, got {tuple(x0.shape)}")
        params = StepParams(proj.alpha, proj.lam, proj.tuned, proj.tuned_on_step)
        runner_chunk = getattr(self.runner, "chunk", None)  # GPU runners read back every `chunk` steps
        chunk = 1 if runner_chunk is None else max(1, min(proj.stop.check_every, runner_chunk))
        parts = []
        for i in range(0, len(x0), self.batch):
            wb = None if weight is None else np.broadcast_to(weight[i : i + self.batch], x0[i : i + self.batch].shape)
            xb, wb, active, n = self.pad_batch(x0[i : i + self.batch], wb)
            res = run_projection(self.runner, xb, params, proj.max_iterations, proj.stop, wb, chunk, active)
            parts.append(_slice(res, n) if n < len(xb) else res)
        return _concat(parts)

    def pad_batch(self, xb: np.ndarray, wb: np.ndarray | None = None):
        """One batch as the runner wants it: (x0, weight, active or None, real sample count).

        GPU runners keep one batch size (fixed device buffers, captured CUDA graphs), so a short last
        batch is padded with samples that never move instead of reallocating.
        """
        xb = np.ascontiguousarray(xb, np.float32)
        wb = None if wb is None else np.ascontiguousarray(wb, np.float32)
        n = len(xb)
        if getattr(self.runner, "chunk", None) is None or n >= self.batch:
            return xb, wb, None, n
        pad = self.batch - n
        xb = np.concatenate([xb, np.repeat(xb[-1:], pad, axis=0)])
        wb = None if wb is None else np.concatenate([wb, np.repeat(wb[-1:], pad, axis=0)])
        return xb, wb, np.r_[np.ones(n, np.float32), np.zeros(pad, np.float32)], n

    def project(self, images, weights=None, **overrides) -> list[ImageResult]:
        """Project whole images (arrays HxWxC in [0, 1], or paths); maps are resized back to each image."""
        from edgeproj.data.images import read_image

        proj = self.settings(**overrides)
        pre = self.manifest.preprocess
        prepared, sources = [], []
        for item in images:
            if isinstance(item, (str, Path)):
                prepared.append(read_image(item, channels=self.manifest.channels))
                sources.append(str(item))
            else:
                arr = np.asarray(item, np.float32)
                if arr.ndim == 2:
                    arr = arr[:, :, None]
                if arr.shape[2] != self.manifest.channels:
                    raise DataError(f"image has {arr.shape[2]} channels, the bundle expects {self.manifest.channels}")
                prepared.append(arr)
                sources.append("")
        tiles, origins, counts = [], [], []
        for i, img in enumerate(prepared):
            p, o = to_patches(img, pre)
            tiles.append(p)
            origins.append(o)
            counts.append(len(p))
        wtiles = None
        if weights is not None:
            wtiles = np.concatenate([to_patches(np.asarray(w, np.float32).reshape(*w.shape[:2], -1), pre)[0] for w in weights])
        res = self.project_patches(np.concatenate(tiles), wtiles, **overrides)
        out, start = [], 0
        for img, orig, n, src in zip(prepared, origins, counts, sources):
            sl = slice(start, start + n)
            start += n
            maps = np.stack([anomaly_map(proj.map_kind, res.x0[j], res.projection[j], res.recon[j], self.manifest.ssim_window)
                             for j in range(sl.start, sl.stop)])
            base = dssim_maps(res.x0[sl], res.recon0[sl], self.manifest.ssim_window)
            # A diverged tile falls back to the baseline map; the image and the batch go on.
            div = res.diverged[sl]
            maps[div] = base[div]
            hw = img.shape[:2]
            amap = stitch(maps, orig, pre, hw)
            bmap = stitch(base, orig, pre, hw)
            out.append(ImageResult(
                map=amap, score=image_score(amap), baseline_map=bmap, baseline_score=image_score(bmap),
                projection=_stitch_image(res.projection[sl], orig, pre, working_size(hw, pre)),
                recon=_stitch_image(res.recon[sl], orig, pre, working_size(hw, pre)),
                iterations=res.iterations[sl].tolist(), stop_reasons=res.stop_reasons[sl], energy_traces=res.traces[sl],
                map_kind=proj.map_kind, source=src,
            ))
        return out


def _stitch_image(patches: np.ndarray, origins, pre, frame_hw: tuple[int, int]) -> np.ndarray:
    """Tiles (P x C x p x p) back into one HxWxC image in the working frame (mean over overlaps)."""
    chans = [stitch(patches[:, c], origins, pre, frame_hw) for c in range(patches.shape[1])]
    return np.stack(chans, axis=-1)


def _slice(r: BatchResult, n: int) -> BatchResult:
    """The first n samples of a result (drops padding)."""
    return BatchResult(r.x0[:n], r.projection[:n], r.recon0[:n], r.recon[:n], r.rec_loss0[:n], r.rec_loss[:n],
                       r.energy[:n], r.iterations[:n], r.stop_reasons[:n], r.traces[:n])


def _concat(parts: list[BatchResult]) -> BatchResult:
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return BatchResult(
        x0=cat("x0"), projection=cat("projection"), recon0=cat("recon0"), recon=cat("recon"),
        rec_loss0=cat("rec_loss0"), rec_loss=cat("rec_loss"), energy=cat("energy"), iterations=cat("iterations"),
        stop_reasons=[r for p in parts for r in p.stop_reasons], traces=[t for p in parts for t in p.traces],
    )
