"""Export: the gradient graph against autograd, the step graph against torch.optim.Adam, the bundle."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import VARIANTS

from edgeproj.errors import BundleError, CheckpointError
from edgeproj.export.bundle import ExportOptions, export_bundle, model_spec
from edgeproj.export.energy import build_gradient_graph, build_step_graph
from edgeproj.export.network import NetworkEmitter, plan_from_model
from edgeproj.export.parity import gradient_parity, probe_inputs, trajectory_parity
from edgeproj.runtime.manifest import load_manifest
from edgeproj.training.run import load_run

# Ops that TensorRT 10.3 and 11 parse; no training ops, no control flow, no sequences.
ALLOWED_OPS = {
    "Conv",
    "ConvTranspose",
    "LeakyRelu",
    "Sigmoid",
    "Where",
    "Greater",
    "Mul",
    "Add",
    "Sub",
    "Div",
    "Neg",
    "Abs",
    "Sign",
    "Sqrt",
    "Pow",
    "Clip",
    "ReduceSum",
    "ReduceMax",
    "MatMul",
    "Flatten",
    "Reshape",
    "Unsqueeze",
    "Concat",
    "Split",
    "DepthToSpace",
    "Identity",
}


def _session(model_proto):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model_proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _graphs(run, mode="native"):
    model, cfg, _ = load_run(run)
    net = NetworkEmitter(plan_from_model(model), mode)
    spec = model_spec(model)
    return model, build_gradient_graph(net, spec), build_step_graph(net, spec)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode", ["native", "phase", "phase3"])
def test_gradient_matches_autograd(runs, demo_root, variant, mode):
    model, grad_graph, _ = _graphs(runs[variant], mode)
    sess = _session(grad_graph)
    from edgeproj.export.bundle import _training_patches

    patches = _training_patches(json.loads((runs[variant] / "config.json").read_text()))
    for n in (1, 7):
        x0, x, _ = probe_inputs(patches, n, 1, seed=n)
        fig = gradient_parity(sess, model, x0, x, lam=0.05)
        # Against autograd in float32, or float64 where float32 autograd itself sits on a LeakyReLU kink
        # (gradient_parity's docstring); a wrong graph fails both.
        assert fig["grad_rel_max_err"] < 1e-4, fig
        assert fig["float32"]["energy_rel_max_err"] < 1e-5, fig


def test_gradient_check_detects_a_wrong_lambda(runs):
    model, grad_graph, _ = _graphs(runs["l2ae"])
    sess = _session(grad_graph)
    x0, x, _ = probe_inputs(None, 2, 1)
    # The graph gets lam 0.05, the reference 0.5: the check must trip.
    out = sess.run(["grad"], {"x": x, "x0": x0, "lam": np.array([0.05], np.float32)})[0]
    from edgeproj.models.torch_reference import energy

    xt = torch.from_numpy(x).requires_grad_(True)
    e, _, _ = energy(model, xt, torch.from_numpy(x0), 0.5)
    (g,) = torch.autograd.grad(e.sum(), xt)
    assert np.abs(out - g.numpy()).max() / np.abs(g.numpy()).max() > 1e-2


def test_gradient_parity_trips_on_a_perturbed_graph(runs):
    """Nudging probe points off LeakyReLU kinks must not rescue a wrong graph."""
    model, grad_graph, _ = _graphs(runs["l2ae"])
    init = next(i for i in grad_graph.graph.initializer if "_w" in i.name and len(i.dims) == 4)
    arr = onnx.numpy_helper.to_array(init).copy() * 1.05
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    x0, x, _ = probe_inputs(None, 3, 1, seed=2)
    fig = gradient_parity(_session(grad_graph), model, x0, x, lam=0.05)
    assert fig["grad_rel_max_err"] > 1e-4, fig
    assert fig["nudged"] == 3


@pytest.mark.parametrize("variant", ["l2ae", "dsae"])
@pytest.mark.parametrize("tuned,on_step", [(False, False), (True, False), (True, True)])
def test_step_graph_tracks_torch_adam(runs, variant, tuned, on_step):
    model, _, step_graph = _graphs(runs[variant])
    sess = _session(step_graph)
    x0, _, (defect, mask) = probe_inputs(None, 2, 1, seed=3)
    fig = trajectory_parity(sess, model, defect, mask, steps=50, alpha=0.05, lam=0.05, tuned=tuned, tuned_on_step=on_step)
    f = fig["float32"]
    assert f["m_rel_max_err"] < 1e-4 and f["v_rel_max_err"] < 1e-4, f
    assert f["energy_traj_rel_max_err"] < 1e-2, f
    assert f["map_correlation"] > 0.99, f
    assert abs(f["pixel_auroc"] - f["pixel_auroc_reference"]) < 0.01, f


def test_step_parity_trips_on_a_perturbed_graph(runs):
    model, _, step_graph = _graphs(runs["l2ae"])
    # Perturb one decoder weight: a wrong graph must fail the same bounds.
    init = next(i for i in step_graph.graph.initializer if i.name.startswith("v_f") and "_w" in i.name and len(i.dims) == 4)
    arr = onnx.numpy_helper.to_array(init).copy()
    arr *= 1.05
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    sess = _session(step_graph)
    _, _, (defect, mask) = probe_inputs(None, 2, 1, seed=3)
    f = trajectory_parity(sess, model, defect, mask, steps=50, alpha=0.05, lam=0.05, tuned=True, tuned_on_step=True)["float32"]
    assert f["m_rel_max_err"] > 1e-4 or f["energy_traj_rel_max_err"] > 1e-2


def test_graphs_use_only_whitelisted_ops(runs):
    for v in VARIANTS:
        _, g, s = _graphs(runs[v])
        for graph in (g, s):
            ops = {n.op_type for n in graph.graph.node}
            assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
            assert graph.opset_import[0].version >= 17
            for n in graph.graph.node:
                if n.op_type == "ConvTranspose":
                    assert "output_shape" not in {a.name for a in n.attribute}
            onnx.checker.check_model(graph, full_check=True)


def test_graph_io_names(runs):
    _, g, s = _graphs(runs["l2ae"])
    assert [i.name for i in g.graph.input] == ["x", "x0", "lam"]
    assert [o.name for o in g.graph.output] == ["energy", "rec_loss", "grad", "recon"]
    assert {"x", "x0", "m", "v", "step", "weight", "tuned", "tuned_on_step", "alpha", "lam", "active"} == {
        i.name for i in s.graph.input
    }
    assert [o.name for o in s.graph.output] == ["x_next", "m_next", "v_next", "step_next", "energy", "rec_loss", "recon"]


def test_export_writes_bundle_with_parity(runs, tmp_path):
    out = tmp_path / "b"
    manifest = export_bundle(runs["dsae"], out, ExportOptions(parity_steps=10)).to_dict()
    m = load_manifest(out)
    assert m.variant == "dsae" and m.channels == 1 and m.size == 128
    assert set(m.graphs) == {"gradient", "step"}
    assert m.projection.stop.rec_loss_threshold == pytest.approx(manifest["training"]["rec_loss_stats"]["min"])
    assert m.parity["gradient"]["batch7"]["grad_rel_max_err"] < 1e-4
    assert not m.calibration.calibrated and manifest["calibration"] == {}
    # Round trip: what the runtime parses writes back to the same document.
    assert json.loads(json.dumps(m.to_dict())) == json.loads((out / "manifest.json").read_text())


def test_changed_byte_fails_loading(bundle_copy):
    path = bundle_copy / "step.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        load_manifest(bundle_copy)


def test_schema_version_and_missing_graph(bundle_copy):
    doc = json.loads((bundle_copy / "manifest.json").read_text())
    doc["schema_version"] = 99
    (bundle_copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="schema 99"):
        load_manifest(bundle_copy)
    doc["schema_version"] = 1
    (bundle_copy / "manifest.json").write_text(json.dumps(doc))
    (bundle_copy / "gradient.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_manifest(bundle_copy)


def test_missing_corrupt_checkpoint_and_unknown_variant(runs, tmp_path):
    import shutil

    with pytest.raises(CheckpointError, match="does not exist"):
        export_bundle(tmp_path / "nope", tmp_path / "b", ExportOptions(parity=False))
    bad = tmp_path / "run"
    shutil.copytree(runs["l2ae"], bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        export_bundle(bad, tmp_path / "b", ExportOptions(parity=False))
    shutil.copy(runs["l2ae"] / "model.safetensors", bad / "model.safetensors")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["variant"] = "wae"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown variant"):
        export_bundle(bad, tmp_path / "b", ExportOptions(parity=False))


def test_export_cli_prints_parity(runs, tmp_path):
    from typer.testing import CliRunner

    from edgeproj.cli.app import app

    res = CliRunner().invoke(app, ["export", str(runs["vae"]), "--out", str(tmp_path / "b"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["parity"]["gradient"]["batch1"]["grad_rel_max_err"] < 1e-4
    assert doc["parity"]["trajectory"]["tuned_step"]["float32"]["energy_traj_rel_max_err"] < 1e-2
    bad = CliRunner().invoke(app, ["export", str(tmp_path / "missing"), "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2
    assert "edgeproj: error:" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize("variant", ["l2ae", "dsae"])
def test_rgb_model_gradient_matches_autograd(variant):
    """Three channels: the first conv's input gradient and the per-channel DSSIM head."""
    from edgeproj.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(variant=variant, channels=3)).eval()
    net = NetworkEmitter(plan_from_model(model))
    sess = _session(build_gradient_graph(net, model_spec(model)))
    x0, x, _ = probe_inputs(None, 2, 3, seed=4)
    fig = gradient_parity(sess, model, x0, x, lam=0.05)
    assert fig["grad_rel_max_err"] < 1e-4, fig
    assert fig["float32"]["recon_max_abs_err"] < 1e-5
