"""`Projector`: the one way to run a bundle on a backend (tiling, batching, the loop, maps, scores).

Calibration, evaluation, benchmarks, inspection and the CLI all go through it: it owns the runner's
lifecycle, batches and pads patches, runs the single projection loop, and turns results into maps.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeproj.errors import BackendError, ConfigError, DataError
from edgeproj.preprocess import stitch, to_patches, working_size
from edgeproj.runtime.backends import create_runner
from edgeproj.runtime.lanes import LanePool
from edgeproj.runtime.loop import BatchResult, run_projection
from edgeproj.runtime.manifest import Manifest, Projection, load_manifest
from edgeproj.runtime.scoring import MapNorm, Scorer, anomaly_map, dssim_maps, image_score, raw_counterpart, score_and_pixel_map

MAX_BATCH = 1024


@dataclass
class ImageResult:
    """One image's projection. Maps are at the original image size; projection/recon at the model frame.
    `map` is the pixel map a line thresholds and draws (scoring.pixel_map: for a *_tex image score the
    projection map fused with the texture check); `projection_map` the projection's own, which `score`
    is taken from (the same array where nothing is fused)."""

    map: np.ndarray
    score: float
    baseline_map: np.ndarray | None  # None, and baseline_score NaN, from a lean projection
    baseline_score: float
    projection: np.ndarray | None
    recon: np.ndarray | None
    iterations: list[int]
    stop_reasons: list[str]
    energy_traces: list[list[float]]
    map_kind: str
    source: str = ""
    extra_maps: dict = field(default_factory=dict)
    rec_loss0: np.ndarray | None = None  # L_r at x0 of every tile: the frame gate's model statistics
    projection_map: np.ndarray | None = None  # None: the same as `map`

    def __post_init__(self):
        if self.projection_map is None:
            self.projection_map = self.map

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


@dataclass(frozen=True)
class BackendChoice:
    """A backend, its options object, the batch size and the FP16 override: what a Projector runs on."""

    backend: str = "ort-cpu"
    options: object = None
    batch: int = 8
    force_fp16: bool = False

    def projector(self, manifest: Manifest) -> Projector:
        """A Projector for `manifest` with these choices (not yet opened)."""
        return Projector(manifest, backend=self.backend, options=self.options, batch=self.batch, force_fp16=self.force_fp16)


class Projector:
    """Runs the masked-Adam projection of a bundle on one backend.

    Use `Projector.from_bundle(path, backend=..., options=...)` as a context manager. `project(images)`
    takes HxWxC float arrays in [0, 1] or image paths; `stream(images)` keeps the next images' tiles
    in flight (a line); `project_patches`, `rec_losses` and `gradient` serve calibration, evaluation and
    benchmarks. Settings are a `Projection` (see `settings()`).

    On runners with lanes (ort-cpu on several cores) projections run in a `LanePool`: each lane takes
    the next tiles as it finishes, across batches and images.
    """

    def __init__(self, manifest: Manifest, backend: str = "ort-cpu", options=None, batch: int = 8, force_fp16: bool = False):
        if not 1 <= batch <= MAX_BATCH:
            raise ConfigError(f"batch must be in 1..{MAX_BATCH}, got {batch}")
        fp16 = manifest.calibration.fp16
        if getattr(options, "fp16", False) and not force_fp16:
            # FP16 is earned by a measurement on this bundle, never assumed.
            if fp16 is None:
                raise BackendError(
                    f"FP16 was never measured on bundle '{manifest.root}': run `edgeproj calibrate` with --backend "
                    f"{backend} --precision-check on this device first, run in FP32, or pass --force-fp16"
                )
            if not fp16.get("allowed", False):
                raise BackendError(
                    f"calibration measured FP16 losing accuracy ({fp16.get('pixel_auroc_drop', 'map mismatch')}); "
                    "run in FP32, or pass --force-fp16"
                )
        Scorer.of(manifest)  # a norm_* image score without its statistics is refused before any work
        self.manifest = manifest
        self.map_norm = MapNorm.from_dict(manifest.calibration.map_norm)
        self.backend = backend
        self.batch = batch
        self.runner = create_runner(backend, manifest, _profile_for(backend, options, batch))
        self._stack: ExitStack | None = None
        self._pool: LanePool | None = None

    def score(self, amap: np.ndarray, image: np.ndarray) -> float:
        """The bundle's image score of a map of `image` (H x W x C, the map's size)."""
        return image_score(amap, self.manifest.projection.image_score, image, self.map_norm)

    @classmethod
    def from_bundle(
        cls, path: str | Path, backend: str = "ort-cpu", options=None, batch: int = 8, force_fp16: bool = False
    ) -> Projector:
        return cls(load_manifest(Path(path)), backend=backend, options=options, batch=batch, force_fp16=force_fp16)

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> Projector:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Activate the runner (sessions, engines); idempotent."""
        if self._stack is None:
            stack = ExitStack()
            stack.enter_context(self.runner)
            # Lanes bypass the padding that fixed-batch (GPU) runners need: only host runners get them.
            if not self.runner.fixed_batch and (lanes := self.runner.lane_runners()):
                self._pool = LanePool(lanes, max_chunk=self.batch)
                stack.callback(self._close_pool)
            self._stack = stack

    def close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @property
    def providers(self) -> list[str]:
        return self.runner.providers

    @property
    def pipelined(self) -> bool:
        """True when `submit` returns before the projection ends (lanes), so keeping images in flight pays;
        elsewhere it projects at once and more than one image in flight only adds latency."""
        self.open()
        return self._pool is not None

    @property
    def stop_check(self) -> str:
        """Where this projector's runner checks the stop rule (`contract.stop_check`); known before `open`."""
        from edgeproj import contract
        from edgeproj.runtime.loop import readback_chunk

        if self.runner.probes:
            return contract.stop_check(True)
        return contract.stop_check(False, readback_chunk(self.runner, self.manifest.projection.stop))

    @property
    def device_ms(self) -> float | None:
        """Device time of the steps so far, where the backend measures it."""
        return self.runner.device_ms

    # -- settings --------------------------------------------------------------------------------
    def settings(self, **overrides) -> Projection:
        """The manifest's projection settings with overrides (None keeps a value), validated."""
        return self.manifest.projection.with_overrides(**overrides)

    # -- patches ---------------------------------------------------------------------------------
    def _batches(self, x0: np.ndarray, weight: np.ndarray | None = None):
        """(x0, weight, active or None, real count) per batch, padded where the runner keeps one size.

        GPU runners keep one batch size (fixed device buffers, captured CUDA graphs), so a short last
        batch is padded with samples that never move instead of reallocating.
        """
        c, s = self.manifest.channels, self.manifest.size
        if x0.ndim != 4 or x0.shape[1:] != (c, s, s):
            raise DataError(f"patches must be N x {c} x {s} x {s}, got {tuple(x0.shape)}")
        for i in range(0, len(x0), self.batch):
            xb = np.ascontiguousarray(x0[i : i + self.batch], np.float32)
            wb = (
                None
                if weight is None
                else np.ascontiguousarray(np.broadcast_to(weight[i : i + self.batch], xb.shape), np.float32)
            )
            n = len(xb)
            if not self.runner.fixed_batch or n == self.batch:
                yield xb, wb, None, n
                continue
            pad = self.batch - n
            xb = np.concatenate([xb, np.repeat(xb[-1:], pad, axis=0)])
            wb = None if wb is None else np.concatenate([wb, np.repeat(wb[-1:], pad, axis=0)])
            yield xb, wb, np.r_[np.ones(n, np.float32), np.zeros(pad, np.float32)], n

    def project_patches(
        self,
        x0: np.ndarray,
        weight: np.ndarray | None = None,
        settings: Projection | None = None,
        checkpoints: Sequence[int] = (),
        on_checkpoint: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
        progress: Callable[[int], None] | None = None,
        final: bool = True,
    ) -> BatchResult:
        """Project model-sized patches (P x C x H x W) in batches; one concatenated result.

        on_checkpoint(t, x0, x) gets each batch's patches and projection after t steps, for t in
        `checkpoints`; progress(n) is called after each batch with its patch count. final=False skips
        evaluating f(x_T) (`recon` is None).
        """
        self.open()
        settings = settings or self.manifest.projection
        if self._pool is not None and not checkpoints:
            # Every batch goes to the lanes at once (they balance across batches); results come back in order.
            jobs = [(self._pool.submit(xb, wb, settings, final), n) for xb, wb, _, n in self._batches(x0, weight)]
            parts = []
            try:
                for job, n in jobs:
                    parts.append(job.result())
                    if progress:
                        progress(n)
            except BaseException:
                for job, _ in jobs:  # the lanes skip what no caller will read (a started job runs out)
                    job.cancel()
                raise
            return BatchResult.concat(parts)
        parts = []
        for xb, wb, active, n in self._batches(x0, weight):
            hook = None
            if on_checkpoint is not None:
                hook = lambda t, x, xb=xb, n=n: on_checkpoint(t, xb[:n], x[:n])  # noqa: E731
            res = run_projection(self.runner, xb, settings, wb, active, checkpoints, hook, final=final)
            parts.append(res.head(n) if n < len(xb) else res)
            if progress:
                progress(n)
        return BatchResult.concat(parts)

    def rec_losses(self, x0: np.ndarray) -> np.ndarray:
        """L_r at x0 of every patch (no step): the statistic of the paper's stop threshold."""
        self.open()
        out = []
        for xb, _, _, n in self._batches(x0):
            self.runner.load(xb, np.ones_like(xb), self.manifest.projection)
            out.append(np.array(self.runner.evaluate()[1][:n], copy=True))
        return np.concatenate(out)

    def gradient(self, x: np.ndarray, x0: np.ndarray, lam: float | None = None) -> dict[str, np.ndarray]:
        """The gradient graph on patches, batched: energy, rec_loss, grad, recon (lam: the manifest's)."""
        self.open()
        lam = self.manifest.projection.lam if lam is None else lam
        parts = [
            self.runner.gradient(
                np.ascontiguousarray(x[i : i + self.batch], np.float32),
                np.ascontiguousarray(x0[i : i + self.batch], np.float32),
                lam,
            )
            for i in range(0, len(x), self.batch)
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # -- whole images ----------------------------------------------------------------------------
    def _prepare(self, item) -> tuple[np.ndarray, str]:
        from edgeproj.data.images import read_image

        if isinstance(item, (str, Path)):
            return read_image(item, channels=self.manifest.channels), str(item)
        arr = np.asarray(item, np.float32)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] != self.manifest.channels:
            raise DataError(f"image has shape {arr.shape}, the bundle expects H x W x {self.manifest.channels}")
        return arr, ""

    def _tiles(self, prepared, weights) -> tuple[np.ndarray, np.ndarray | None, list, list[int]]:
        pre = self.manifest.preprocess
        tiles, origins, counts = [], [], []
        for img, _ in prepared:
            p, o = to_patches(img, pre)
            tiles.append(p)
            origins.append(o)
            counts.append(len(p))
        wtiles = None
        if weights is not None:
            wtiles = np.concatenate([to_patches(np.asarray(w, np.float32).reshape(*w.shape[:2], -1), pre)[0] for w in weights])
        return np.concatenate(tiles), wtiles, origins, counts

    @staticmethod
    def _final(settings: Projection, lean: bool) -> bool:
        return not (lean and settings.map_kind == "dssim_projection")

    def project(self, images, weights=None, settings: Projection | None = None, lean: bool = False) -> list[ImageResult]:
        """Project whole images (arrays HxWxC in [0, 1], or paths); maps are resized back to each image.

        lean=True computes only what a line verdict needs (map, score, iterations, stop reasons): no
        baseline map, no projection or reconstruction image, and no f(x_T) when the map does not use it.
        """
        settings = settings or self.manifest.projection
        prepared = [self._prepare(item) for item in images]
        tiles, wtiles, origins, counts = self._tiles(prepared, weights)
        res = self.project_patches(tiles, wtiles, settings, final=self._final(settings, lean))
        return self._assemble(prepared, origins, counts, res, settings, lean)

    def submit(self, image, settings: Projection | None = None, lean: bool = False) -> Callable[[], ImageResult]:
        """Start projecting one image; returns a function that waits for its ImageResult.

        On lanes the projection runs while the caller reads the next image; elsewhere it runs now.
        Errors (bad image, failed projection) are raised by the returned function.
        """
        settings = settings or self.manifest.projection
        try:
            prepared = [self._prepare(image)]
            tiles, _, origins, counts = self._tiles(prepared, None)
        except Exception as exc:  # noqa: BLE001 - raised when the caller asks for this image's result
            return _raiser(exc)
        final = self._final(settings, lean)
        self.open()
        if self._pool is None:
            try:
                res = self.project_patches(tiles, None, settings, final=final)
            except Exception as exc:  # noqa: BLE001 - as above
                return _raiser(exc)
            result = self._assemble(prepared, origins, counts, res, settings, lean)[0]
            return lambda: result
        job: Future = self._pool.submit(tiles, None, settings, final)
        return lambda: self._assemble(prepared, origins, counts, job.result(), settings, lean)[0]

    def stream(
        self, images: Iterable, settings: Projection | None = None, lean: bool = False, depth: int = 2
    ) -> Iterator[ImageResult]:
        """Project images in order with up to `depth` in flight (1 where not `pipelined`): the next image's
        tiles start while the last tiles of this one finish (a line's throughput at the latency of `depth`
        images). An image that fails raises from the generator, which ends there."""
        depth = max(1, depth) if self.pipelined else 1
        pending: deque[Callable[[], ImageResult]] = deque()
        for image in images:
            pending.append(self.submit(image, settings, lean))
            if len(pending) >= depth:
                yield pending.popleft()()
        while pending:
            yield pending.popleft()()

    def _assemble(self, prepared, origins, counts, res: BatchResult, settings: Projection, lean: bool) -> list[ImageResult]:
        pre = self.manifest.preprocess
        w = self.manifest.ssim_window
        out, start = [], 0
        for (img, src), orig, n in zip(prepared, origins, counts):
            sl = slice(start, start + n)
            start += n
            if settings.map_kind == "dssim_projection":
                maps = dssim_maps(res.x0[sl], res.projection[sl], w)
            else:
                maps = np.stack(
                    [
                        anomaly_map(settings.map_kind, res.x0[j], res.projection[j], res.recon[j], w)
                        for j in range(sl.start, sl.stop)
                    ]
                )
            # A diverged tile falls back to the baseline map; the image and the batch go on.
            div = res.diverged[sl]
            base = None
            if not lean:
                base = dssim_maps(res.x0[sl], res.recon0[sl], w)
                maps[div] = base[div]
            elif div.any():
                maps[div] = dssim_maps(res.x0[sl][div], res.recon0[sl][div], w)
            hw = img.shape[:2]
            amap = stitch(maps, orig, pre, hw)
            bmap = None if base is None else stitch(base, orig, pre, hw)
            frame = working_size(hw, pre)
            score, pmap = score_and_pixel_map(amap, settings.image_score, img, self.map_norm)
            out.append(
                ImageResult(
                    map=pmap,
                    score=score,
                    baseline_map=bmap,
                    # The normal statistics are the projection maps'; the baseline is scored without them.
                    baseline_score=float("nan") if bmap is None else image_score(bmap, raw_counterpart(settings.image_score)),
                    projection=None if lean else stitch_image(res.projection[sl], orig, pre, frame),
                    recon=None if lean else stitch_image(res.recon[sl], orig, pre, frame),
                    iterations=res.iterations[sl].tolist(),
                    stop_reasons=res.stop_reasons[sl],
                    energy_traces=res.traces[sl],
                    map_kind=settings.map_kind,
                    source=src,
                    rec_loss0=np.array(res.rec_loss0[sl], np.float32),
                    projection_map=amap,
                )
            )
        return out


def _profile_for(backend: str, options, batch: int):
    """Options whose TensorRT shape profile (`max_batch`, where the backend has one) holds `batch`."""
    import dataclasses

    from edgeproj.runtime.backends import backend as entry

    cls = entry(backend).options_type()
    if "max_batch" not in {f.name for f in dataclasses.fields(cls)} or (options is not None and not isinstance(options, cls)):
        return options  # no profile, or options of another backend (create_runner says so)
    options = options if options is not None else cls()
    return options if options.max_batch >= batch else dataclasses.replace(options, max_batch=batch)


def _raiser(exc: BaseException) -> Callable[[], ImageResult]:
    def fail() -> ImageResult:
        raise exc

    return fail


def stitch_image(patches: np.ndarray, origins, pre, frame_hw: tuple[int, int]) -> np.ndarray:
    """Tiles (P x C x p x p) back into one HxWxC image in the working frame (mean over overlaps)."""
    chans = [stitch(patches[:, c], origins, pre, frame_hw) for c in range(patches.shape[1])]
    return np.stack(chans, axis=-1)
