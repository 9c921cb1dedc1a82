"""Runtime: torch-free import, loop parity with the PyTorch reference, stop rules, NaN guard, tiling, providers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import VARIANTS

from edgeproj.errors import BackendError, ConfigError
from edgeproj.export.parity import probe_inputs
from edgeproj.metrics import roc_auc
from edgeproj.models.torch_reference import torch_project
from edgeproj.preprocess import Preprocess, to_patches
from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.backends import backend_options
from edgeproj.runtime.backends.base import Runner
from edgeproj.runtime.loop import run_projection
from edgeproj.runtime.manifest import Projection, StopRule
from edgeproj.runtime.scoring import dssim_map
from edgeproj.training.run import load_run

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split('.')[0] in ('torch', 'onnx', 'onnxscript', 'safetensors'):
                raise ImportError(f'{name} is blocked: the runtime must not import it')
    sys.meta_path.insert(0, Block())
    """
)


def test_runtime_runs_without_torch_or_onnx(bundles, demo_root):
    image = sorted((demo_root / "grid" / "test" / "hole").glob("*.png"))[0]
    code = BLOCK_TORCH + textwrap.dedent(
        f"""
        import json
        import edgeproj.runtime
        from edgeproj.runtime import Projector
        with Projector.from_bundle({str(bundles["l2ae"])!r}) as p:
            (r,) = p.project([{str(image)!r}], settings=p.settings(max_iterations=5))
        bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')]
        print(json.dumps({{'score': r.score, 'iters': r.iterations, 'bad': bad}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["bad"] == [] and doc["score"] > 0


def test_device_packages_import_without_torch_or_onnx():
    """Every submodule of the packages a device installs imports with torch and onnx blocked."""
    code = BLOCK_TORCH + textwrap.dedent(
        """
        import importlib, json, pkgutil
        import edgeproj.calibration, edgeproj.line, edgeproj.runtime
        names = ["edgeproj.contract", "edgeproj.overlays", "edgeproj.progress"]
        for pkg in (edgeproj.runtime, edgeproj.calibration, edgeproj.line):
            names += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
        for name in names:
            importlib.import_module(name)
        bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')]
        print(json.dumps({'modules': names, 'bad': bad}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["bad"] == []
    # The walk really covered the backends, the calibration and the line modules.
    for name in (
        "edgeproj.runtime.backends.ort_cpu",
        "edgeproj.runtime.backends.trt",
        "edgeproj.runtime.loop",
        "edgeproj.calibration.calibrate",
        "edgeproj.calibration.precision",
        "edgeproj.line.pipeline",
        "edgeproj.line.store",
    ):
        assert name in doc["modules"], name


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("tuned", [False, True])
def test_runtime_tracks_torch_reference(bundles, runs, variant, tuned):
    """ort-cpu loop vs the torch.optim.Adam loop: energy trajectory, map correlation, AUROC on a defect."""
    model, _, _ = load_run(runs[variant])
    steps = 30
    _, _, (defect, mask) = probe_inputs(None, 2, 1, seed=5)
    with Projector.from_bundle(bundles[variant]) as p:
        res = p.project_patches(defect, settings=p.settings(tuned=tuned, max_iterations=steps).without_stop_rules())
    assert (res.iterations == steps).all()
    xt, et, _ = torch_project(model, torch.from_numpy(defect), 0.05, 0.05, steps, tuned=tuned, tuned_on_step=True)
    et = et.numpy()
    traj = np.array(res.traces).T
    assert np.max(np.abs(traj - et) / np.abs(et)) < 1e-2
    maps_r = [dssim_map(defect[i], res.projection[i]) for i in range(2)]
    maps_t = [dssim_map(defect[i], xt[i].numpy()) for i in range(2)]
    for a, b in zip(maps_r, maps_t):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    labels = np.broadcast_to(mask, (2, *mask.shape))
    assert abs(roc_auc(labels, np.stack(maps_r)) - roc_auc(labels, np.stack(maps_t))) < 0.01


class FakeRunner(Runner):
    """A scripted runner: energies and L_r per step from a function of (step, sample)."""

    name = "fake"

    def __init__(self, energy_fn, rec_fn, chunk=None):
        self.energy_fn, self.rec_fn, self.chunk = energy_fn, rec_fn, chunk

    def load(self, x0, weight, params):
        self.x = x0.copy()
        self.t = np.zeros(len(x0), int)

    def evaluate(self):
        return (
            np.array([self.energy_fn(t, i) for i, t in enumerate(self.t)], np.float32),
            np.array([self.rec_fn(t, i) for i, t in enumerate(self.t)], np.float32),
            self.x.copy(),
        )

    def steps(self, k, active):
        es, rs = [], []
        for _ in range(k):
            e, r, _ = self.evaluate()
            es.append(e)
            rs.append(r)
            self.t += active.astype(int)
            self.x[active > 0] += 0.01
        return np.stack(es), np.stack(rs)

    def fetch(self):
        return self.x

    def gradient(self, x, x0, lam):
        raise NotImplementedError


def settings(max_iterations, stop):
    return Projection(max_iterations=max_iterations, stop=stop)


def _scripted_projection(runner_type):
    """Four samples, values at x_t: 0 has L_r < 5 from x_4 on, 1 has E flat from x_4, 2 keeps decreasing,
    3 turns NaN at x_2; 20 steps at most, the rule's window 3."""
    energy = lambda t, i: {0: 100 - t, 1: 100 - min(t, 4), 2: 100 - 2 * t, 3: np.nan if t >= 2 else 50}[i]  # noqa: E731
    rec = lambda t, i: {0: 8 - t, 1: 50, 2: 50 - 0.1 * t, 3: 20}[i]  # noqa: E731
    stop = StopRule(rec_loss_threshold=5.0, energy_rtol=1e-3, window=3)
    return run_projection(runner_type(energy, rec), np.zeros((4, 1, 8, 8), np.float32), settings(20, stop))


def test_stop_rules_each_fire_and_finished_samples_stay_put():
    # Step j reports the values at x_{j-1}, so each rule is seen one step after the x it fires at.
    res = _scripted_projection(FakeRunner)
    assert res.stop_reasons == ["rec_loss_threshold", "converged", "max_iterations", "diverged"]
    assert res.iterations[0] == 5 and res.iterations[2] == 20
    assert res.iterations[1] == 8
    # Finished samples stopped changing; the diverged one is reset to x0 (baseline fallback).
    assert np.allclose(res.projection[0], 0.05) and np.allclose(res.projection[2], 0.2)
    assert np.allclose(res.projection[3], 0.0)
    assert len(res.traces[2]) == 20 and len(res.traces[0]) == 5


class ProbingFake(FakeRunner):
    """The scripted runner as a host runner: probe reads the values at x, advance moves the samples given."""

    probes = True

    def probe(self, active):
        return self.evaluate()

    def advance(self, moving):
        self.t += (moving > 0).astype(int)
        self.x[moving > 0] += 0.01


def test_a_probing_runner_stops_at_the_x_where_the_rule_fires():
    """The same script as above on a probing runner: each sample returns the x the rule fired at, one step
    fewer than a runner that checks after the step."""
    res = _scripted_projection(ProbingFake)
    assert res.stop_reasons == ["rec_loss_threshold", "converged", "max_iterations", "diverged"]
    # L_r < 5 first at x_4; E flat from x_4, so E(x_7) = E(x_4) over the window of 3; NaN first at x_2.
    assert res.iterations.tolist() == [4, 7, 20, 2]
    assert np.allclose(res.projection[0], 0.04) and np.allclose(res.projection[1], 0.07)
    assert np.allclose(res.projection[2], 0.2) and np.allclose(res.projection[3], 0.0)
    # E at every x checked: x_0..x_4 for sample 0, x_0..x_19 for sample 2 (x_20 is not checked).
    assert len(res.traces[0]) == 5 and len(res.traces[1]) == 8 and len(res.traces[2]) == 20


def test_stop_rule_checked_every_k_steps():
    x0 = np.zeros((1, 1, 8, 8), np.float32)
    stop = StopRule(rec_loss_threshold=5.0, energy_rtol=0.0)
    res = run_projection(
        FakeRunner(lambda t, i: 100 - t, lambda t, i: 8 - t, chunk=5), x0, settings(20, replace(stop, check_every=5))
    )
    # Below threshold at the 4th step; read back after the 5th.
    assert res.stop_reasons == ["rec_loss_threshold"] and res.iterations[0] == 5


def test_nan_guard_in_the_real_runtime(bundle_copy):
    """A NaN input pixel diverges that sample only; the rest of the batch goes on."""
    x0 = np.full((3, 1, 128, 128), 0.5, np.float32)
    x0[1, 0, 5, 5] = np.nan
    with Projector.from_bundle(bundle_copy) as p:
        res = p.project_patches(x0, settings=p.settings(max_iterations=3))
    assert res.stop_reasons[1] == "diverged"
    assert res.stop_reasons[0] != "diverged" and res.stop_reasons[2] != "diverged"
    assert np.isfinite(res.projection[0]).all()


def test_tiling_and_stitching_cover_a_large_image(bundle_copy, demo_root):
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (300, 200, 1)).astype(np.float32)
    m = load_manifest(bundle_copy)
    pre = Preprocess(mode="texture", resize=256, stride=64, channels=1)
    tiles, origins = to_patches(img, pre)
    # 300x200 keeps its aspect ratio: the short side becomes 256, the frame 384x256, tiled 5 x 3.
    assert len(tiles) == 15 and origins[-1] == (256, 128)
    doc = json.loads((bundle_copy / "manifest.json").read_text())
    doc["preprocess"] = pre.to_dict()
    (bundle_copy / "manifest.json").write_text(json.dumps(doc))
    with Projector.from_bundle(bundle_copy) as p:
        (res,) = p.project([img], settings=p.settings(max_iterations=2))
    assert res.map.shape == (300, 200) and len(res.iterations) == 15
    assert res.projection.shape == (384, 256, 1)
    assert m.preprocess.resize == 128


def test_requesting_an_inactive_provider_lists_available(bundle_copy):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(BackendError, match="CPUExecutionProvider"):
        with Projector.from_bundle(bundle_copy, backend="ort-cuda"):
            pass


def test_unknown_backend_and_map_kind(bundle_copy):
    with pytest.raises(BackendError, match="unknown backend"):
        Projector.from_bundle(bundle_copy, backend="tpu")
    with Projector.from_bundle(bundle_copy) as p, pytest.raises(ConfigError, match="map kind"):
        p.settings(map_kind="l1")


def test_map_kinds_differ_and_are_recorded(bundle_copy, demo_root):
    image = sorted((demo_root / "grid" / "test" / "scratch").glob("*.png"))[0]
    with Projector.from_bundle(bundle_copy) as p:
        maps = {
            k: p.project([image], settings=p.settings(map_kind=k, max_iterations=5))[0]
            for k in ("dssim_projection", "dssim_recon", "squared_error")
        }
    assert {r.map_kind for r in maps.values()} == set(maps)
    assert not np.allclose(maps["dssim_projection"].map, maps["squared_error"].map)


@pytest.mark.gpu
def test_ort_cuda_matches_ort_cpu(bundles):
    _, _, (defect, _) = probe_inputs(None, 4, 1, seed=2)
    fixed = load_manifest(bundles["l2ae"]).projection.with_overrides(max_iterations=20).without_stop_rules()
    with Projector.from_bundle(bundles["l2ae"]) as p:
        ref = p.project_patches(defect, settings=fixed)
    for graph in (False, True):
        with Projector.from_bundle(
            bundles["l2ae"], backend="ort-cuda", options=backend_options("ort-cuda", cuda_graph=graph)
        ) as p:
            got = p.project_patches(defect, settings=fixed)
        traj_r, traj_g = np.array(ref.traces), np.array(got.traces)
        assert np.max(np.abs(traj_r - traj_g) / np.abs(traj_r)) < 1e-2
        for i in range(4):
            a, b = dssim_map(defect[i], ref.projection[i]), dssim_map(defect[i], got.projection[i])
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


@pytest.mark.tensorrt
def test_native_trt_matches_ort_cpu(bundles, tmp_path):
    _, _, (defect, _) = probe_inputs(None, 4, 1, seed=2)
    fixed = load_manifest(bundles["l2ae"]).projection.with_overrides(max_iterations=20).without_stop_rules()
    with Projector.from_bundle(bundles["l2ae"]) as p:
        ref = p.project_patches(defect, settings=fixed)
    with Projector.from_bundle(bundles["l2ae"], backend="trt", options=backend_options("trt", cache_dir=tmp_path)) as p:
        got = p.project_patches(defect, settings=fixed)
    traj_r, traj_g = np.array(ref.traces), np.array(got.traces)
    assert np.max(np.abs(traj_r - traj_g) / np.abs(traj_r)) < 1e-2


def test_sample_below_threshold_at_x0_takes_no_step():
    x0 = np.zeros((2, 1, 8, 8), np.float32)
    stop = StopRule(rec_loss_threshold=5.0, energy_rtol=0.0)
    res = run_projection(FakeRunner(lambda t, i: 100 - t, lambda t, i: [1.0, 50.0][i]), x0, settings(4, stop))
    assert res.stop_reasons == ["rec_loss_threshold", "max_iterations"]
    assert res.iterations.tolist() == [0, 4] and np.allclose(res.projection[0], 0.0)


def test_crossing_inside_a_chunk_is_not_missed():
    # L_r dips below the threshold at the 2nd step of a 5-step chunk, then rises again.
    x0 = np.zeros((1, 1, 8, 8), np.float32)
    stop = StopRule(rec_loss_threshold=5.0, energy_rtol=0.0)
    res = run_projection(
        FakeRunner(lambda t, i: 100 - t, lambda t, i: 4.0 if t == 1 else 9.0, chunk=5),
        x0,
        settings(20, replace(stop, check_every=5)),
    )
    assert res.stop_reasons == ["rec_loss_threshold"] and res.iterations[0] == 5
    assert len(res.traces[0]) == 5


def test_padding_samples_never_move():
    x0 = np.zeros((3, 1, 8, 8), np.float32)
    res = run_projection(
        FakeRunner(lambda t, i: 100 - t, lambda t, i: 50.0),
        x0,
        settings(3, StopRule(energy_rtol=0.0)),
        active=np.array([1, 1, 0], np.float32),
    )
    assert res.stop_reasons == ["max_iterations", "max_iterations", "padding"]
    assert res.iterations.tolist() == [3, 3, 0] and np.allclose(res.projection[2], 0.0)


def test_finished_samples_leave_the_batch_without_changing_the_others(bundle_copy):
    """ort-cpu runs only active samples; the survivor's trajectory must not depend on who finished."""
    _, _, (defect, _) = probe_inputs(None, 3, 1, seed=7)
    defect[0] = 0.5  # a flat patch: far lower L_r than the painted textures
    with Projector.from_bundle(bundle_copy, options=backend_options("ort-cpu", threads=1)) as p:
        r0 = p.rec_losses(defect)
        survivor = int(np.argmax(r0))
        thr = float(np.sort(r0)[1]) + 1e-3  # the two lower samples stop at x0, the highest runs on
        kw = p.settings(max_iterations=8, energy_rtol=0.0, rec_loss_threshold=thr)
        alone = p.project_patches(defect[survivor : survivor + 1], settings=kw)
        r = p.project_patches(defect, settings=kw)
    others = [i for i in range(3) if i != survivor]
    assert all(r.iterations[i] == 0 for i in others) and r.iterations[survivor] == alone.iterations[0] > 0
    assert np.array_equal(r.projection[survivor], alone.projection[0])
    assert r.traces[survivor] == alone.traces[0]


def test_gpu_style_runner_gets_padded_batches(bundle_copy, monkeypatch):
    """Runners with a fixed batch (GPU) see full batches only; results drop the padding."""
    from edgeproj.runtime.backends.ort_cpu import OrtCpuRunner

    seen = []

    class FixedBatch(OrtCpuRunner):
        chunk = 2
        fixed_batch = True
        probes = False  # a device runner steps chunks (OrtCpuRunner.steps = probe + advance per step)

        def load(self, x0, weight, params):
            seen.append(len(x0))
            super().load(x0, weight, params)

    monkeypatch.setattr("edgeproj.runtime.projector.create_runner", lambda name, m, options=None: FixedBatch(m))
    _, _, (defect, _) = probe_inputs(None, 5, 1, seed=8)
    with Projector.from_bundle(bundle_copy, batch=4) as p:
        res = p.project_patches(defect, settings=p.settings(max_iterations=3))
    assert seen == [4, 4] and len(res.stop_reasons) == 5 and "padding" not in res.stop_reasons


def test_manifest_graph_names_are_checked_against_the_contract(bundle_copy):
    from edgeproj.errors import BundleError

    doc = json.loads((bundle_copy / "manifest.json").read_text())
    doc["graphs"]["step"]["inputs"].remove("active")
    (bundle_copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"step graph .*missing inputs \['active'\]"):
        load_manifest(bundle_copy)


def test_real_graph_io_is_checked_when_a_session_opens(bundle_copy):
    """A graph whose real input names differ from the contract is refused by name, before any run."""
    import onnx

    from edgeproj.errors import BundleError
    from edgeproj.files import sha256_file

    path = bundle_copy / "update.onnx"  # what the CPU runner opens (with forward.onnx)
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.input[:] = ["lr" if i == "alpha" else i for i in node.input]
    next(i for i in model.graph.input if i.name == "alpha").name = "lr"
    onnx.save(model, str(path))
    doc = json.loads((bundle_copy / "manifest.json").read_text())
    doc["graphs"]["update"]["sha256"] = sha256_file(path)
    doc["graphs"]["update"]["bytes"] = path.stat().st_size
    (bundle_copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"missing inputs \['alpha'\].*unexpected inputs \['lr'\]"):
        with Projector.from_bundle(bundle_copy):
            pass


def test_backend_options_are_one_object_per_backend():
    from edgeproj.runtime.backends import backend, backend_options, names

    assert names()[:4] == ("ort-cpu", "ort-cuda", "ort-trt", "trt")
    assert backend_options("ort-cpu", threads=2, cuda_graph=False).threads == 2
    assert backend_options("trt", cuda_graph=True, fp16=True, allow_fallback=False).fp16 is True
    with pytest.raises(ConfigError, match="has no option --cuda-graph"):
        backend_options("ort-cpu", cuda_graph=True)
    with pytest.raises(ConfigError, match="does not capture CUDA graphs"):
        backend_options("ort-trt", cuda_graph=True)
    assert backend("ort-cpu").unavailable_reason() is None
    for name in names():  # a probe answers None or a reason; it never raises
        reason = backend(name).unavailable_reason()
        assert reason is None or (isinstance(reason, str) and reason)
