"""Demo tiles whose projections stop after different numbers of steps, for tests of the loop's paths."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeproj.data.images import read_image
from edgeproj.data.mvtec import normal_images
from edgeproj.preprocess import to_patches
from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.backends.ort_cpu import OrtCpuOptions
from edgeproj.runtime.manifest import StopRule


def spread_stop_setup(bundle: Path, demo_root: Path, normals: int, defects: int, quantile: float):
    """(manifest, images, tiles, settings): the first `normals` normal and `defects` test images of the demo
    grid, their tiles, and at most 12 steps with the L_r stop threshold at that quantile of the tiles' L_r
    at x0 (tiles below it stop there, the others step until the energy converges or the budget ends)."""
    m = load_manifest(bundle)
    imgs = [read_image(p, m.channels) for p in normal_images(demo_root / "grid")[:normals]]
    imgs += [read_image(p, m.channels) for p in sorted((demo_root / "grid" / "test").glob("*/*.png"))[:defects]]
    tiles = np.concatenate([to_patches(i, m.preprocess)[0] for i in imgs])
    with Projector(m, batch=4, options=OrtCpuOptions(lanes=1)) as proj:
        rec = proj.rec_losses(tiles)
    stop = StopRule(rec_loss_threshold=float(np.quantile(rec, quantile)), energy_rtol=1e-3, window=3)
    return m, imgs, tiles, replace(m.projection.with_overrides(max_iterations=12), stop=stop)
