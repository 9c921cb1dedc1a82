"""The projection beats the reconstruction baseline, on generated data with a real (short) training.

L2AE trained 150 steps on the demo grid's normal images, exported with the default settings, run
through the runtime (Projector, ONNX Runtime CPU) on the demo grid's test split: the pixel AUROC of
DSSIM(x0, projection) must exceed that of DSSIM(x0, f(x0)) by MARGIN, and a sabotaged projection
(alpha 1e-6: the projection cannot leave x0) must not reach it, so the assertion can fail.

Slow (the training takes minutes on a 2-core machine): `python -m pytest -m slow tests/test_projection_quality.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeproj.metrics import roc_auc

STEPS = 150
# Measured here (demo data seed, training seed: pixel AUROC baseline -> projection, default settings):
#   (0, 0) 0.575 -> 0.679 (+0.104)   (1, 1) 0.430 -> 0.564 (+0.134)   (2, 2) 0.669 -> 0.694 (+0.026)
# The demo test split is tiny (6 images), so the gain swings by about +-0.05 with the seeds. MARGIN is
# below the smallest gain seen (+0.026): the claim is that the projection beats the baseline, not by
# how much. This test runs seeds (0, 0), where the gain has 0.08 of headroom over MARGIN.
# Sabotaged with alpha 1e-6 the gain was -0.075 at (0, 0), -0.169 at (2, 2), but +0.070 at (1, 1): on
# so few images a projection that cannot move can beat the baseline by chance, so the sabotage
# assertion is made on this test's own seeds, where it fails the margin by 0.095.
MARGIN = 0.02

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_bundle(demo_root, tmp_path_factory):
    from edgeproj.data.mvtec import normal_images
    from edgeproj.export.bundle import ExportOptions, export_bundle
    from edgeproj.models.config import ModelConfig
    from edgeproj.preprocess import Preprocess
    from edgeproj.runtime.manifest import load_manifest
    from edgeproj.training.trainer import TrainConfig, train

    base = tmp_path_factory.mktemp("quality")
    data = demo_root / "grid"
    train(
        normal_images(data),
        base / "run",
        ModelConfig(variant="l2ae"),
        Preprocess(mode="texture", resize=128, stride=64, channels=1),
        TrainConfig(steps=STEPS, batch=4, seed=0, checkpoint_every=1000),
        data_info={"source": str(data), "category": "grid"},
    )
    export_bundle(base / "run", base / "bundle", ExportOptions(parity=False))
    return load_manifest(base / "bundle")


def _pixel_aurocs(manifest, demo_root, **overrides) -> tuple[float, float]:
    """(baseline, projection) pixel AUROC over the whole test split, through the runtime."""
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.runtime.projector import Projector
    from edgeproj.runtime.scoring import dssim_maps

    ts = load_testset(demo_root, "grid", manifest.preprocess)
    labels = np.concatenate([m.ravel() for m in ts.masks])
    with Projector(manifest, "ort-cpu", batch=8) as proj:
        res = proj.project_patches(ts.tiles, settings=proj.settings(**overrides))
    w = manifest.ssim_window
    base = ts.stitch(dssim_maps(res.x0, res.recon0, w))
    grad = ts.stitch(dssim_maps(res.x0, res.projection, w))
    return (
        roc_auc(labels, np.concatenate([m.ravel() for m in base])),
        roc_auc(labels, np.concatenate([m.ravel() for m in grad])),
    )


def test_projection_beats_the_baseline_with_default_settings(trained_bundle, demo_root):
    baseline, projection = _pixel_aurocs(trained_bundle, demo_root)
    assert projection > baseline + MARGIN, (baseline, projection)


def test_a_projection_that_cannot_move_does_not_meet_the_margin(trained_bundle, demo_root):
    baseline, projection = _pixel_aurocs(trained_bundle, demo_root, alpha=1e-6)
    assert projection <= baseline + MARGIN, (baseline, projection)
