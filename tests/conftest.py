"""Shared fixtures: a tiny demo data set, briefly trained runs of each variant, and their bundles.

`requires_*` conditions become skips with a stated reason, so a CPU machine runs everything it can.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edgeproj.models.variants import variant_names

VARIANTS = variant_names()  # every registered variant: the tests iterate the registry


def _has_cuda_ep() -> bool:
    try:
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:
        return False


def _has_tensorrt() -> bool:
    try:
        from edgeproj.runtime.backends.trt import trt_available

        return trt_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs onnxruntime-gpu with a CUDA GPU (CUDAExecutionProvider not available)")
    skip_trt = pytest.mark.skip(reason="needs TensorRT, cuda-python and a CUDA GPU")
    cuda, trt = _has_cuda_ep(), _has_tensorrt()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)
        if "tensorrt" in item.keywords and not trt:
            item.add_marker(skip_trt)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small demo data set: 128x128 images, two categories, every defect kind."""
    from edgeproj.data.demo import make_demo

    root = tmp_path_factory.mktemp("demo")
    make_demo(root, seed=0, size=128, n_train=8, n_test_good=2, n_test_per_defect=1)
    return root


def _train(data: Path, out: Path, variant: str, steps: int = 40) -> Path:
    from edgeproj.data.mvtec import normal_images
    from edgeproj.models.config import ModelConfig
    from edgeproj.preprocess import Preprocess
    from edgeproj.training.trainer import TrainConfig, train

    images = normal_images(data)
    pre = Preprocess(mode="texture", resize=128, stride=64, channels=1)
    train(
        images,
        out,
        ModelConfig(variant=variant),
        pre,
        TrainConfig(steps=steps, batch=4, seed=0, checkpoint_every=20),
        data_info={"source": str(data), "category": data.name},
    )
    return out


class Lazy(dict):
    """A dict that builds each variant's entry on first access, so a test of one variant trains one."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, key):
        if key not in VARIANTS:
            raise KeyError(key)
        self[key] = value = self.make(key)
        return value

    def items(self):
        return [(v, self[v]) for v in VARIANTS]


@pytest.fixture(scope="session")
def runs(demo_root, tmp_path_factory) -> dict[str, Path]:
    """A briefly trained run per variant (trained weights make gradient checks meaningful)."""
    base = tmp_path_factory.mktemp("runs")
    return Lazy(lambda v: _train(demo_root / "grid", base / v, v))


@pytest.fixture(scope="session")
def bundles(runs, tmp_path_factory) -> dict[str, Path]:
    """A bundle per variant, exported without the (slow) parity figures."""
    from edgeproj.export.bundle import ExportOptions, export_bundle
    from edgeproj.runtime.manifest import Projection

    base = tmp_path_factory.mktemp("bundles")

    def make(v: str) -> Path:
        export_bundle(runs[v], base / v, ExportOptions(projection=Projection(max_iterations=30), parity=False))
        return base / v

    return Lazy(make)


@pytest.fixture
def bundle_copy(bundles, tmp_path) -> Path:
    """A private copy of the l2ae bundle that a test may modify."""
    dst = tmp_path / "bundle"
    shutil.copytree(bundles["l2ae"], dst)
    return dst


@pytest.fixture(autouse=True, scope="session")
def _quiet_threads():
    # Two cores on CI: keep torch from oversubscribing next to ONNX Runtime.
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    yield


@pytest.fixture(scope="session")
def calibrated_bundle(bundles, demo_root, tmp_path_factory) -> Path:
    """The l2ae bundle calibrated on the demo grid's normal images (read-only for tests)."""
    from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle

    dst = tmp_path_factory.mktemp("calibrated") / "bundle"
    shutil.copytree(bundles["l2ae"], dst)
    good = sorted((demo_root / "grid" / "train" / "good").glob("*.png"))
    calibrate_bundle(dst, good, CalibrationOptions(holdout=0.0, image_frr=0.0))
    return dst


@pytest.fixture(scope="session")
def gate_demo_root(tmp_path_factory) -> Path:
    """A demo data set with enough normal images for a model that generalizes: 40 to train on, 10 good
    test images (the frame gate's trials)."""
    from edgeproj.data.demo import make_demo

    root = tmp_path_factory.mktemp("gate_demo")
    make_demo(root, seed=0, size=128, n_train=40, n_test_good=10, n_test_per_defect=1)
    return root


@pytest.fixture(scope="session")
def trained_bundle(gate_demo_root, tmp_path_factory) -> Path:
    """An l2ae trained long enough to tell the demo grid from other things (400 steps on 40 images, not the
    40 steps on 8 of `runs`), exported and calibrated on the grid's normal images (a quarter held out):
    the frame gate's trials run on it (read-only for tests)."""
    from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle
    from edgeproj.data.mvtec import normal_images
    from edgeproj.export.bundle import ExportOptions, export_bundle
    from edgeproj.runtime.manifest import Projection

    base = tmp_path_factory.mktemp("trained")
    run = _train(gate_demo_root / "grid", base / "run", "l2ae", steps=400)
    export_bundle(run, base / "bundle", ExportOptions(projection=Projection(max_iterations=30), parity=False))
    calibrate_bundle(base / "bundle", normal_images(gate_demo_root / "grid"), CalibrationOptions())
    return base / "bundle"
