"""Bring your own autoencoder: tracing, the ATen -> ONNX lowering, the contract, and user models end to end.

The built-in variants through the generic emitter are held to the hand-written graphs' tests in
test_export.py (the "traced" mode); here: the lowering of each supported layer kind against autograd,
the errors a user meets, the three user models of tests/user_models.py trained, exported, calibrated and
inspected through the CLI, and `bench --compare` of the two emitters.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
import user_models
from cli_helpers import one_line_error, run_cli
from conftest import VARIANTS
from torch import nn

from edgeproj.errors import ConfigError
from edgeproj.export.builder import GraphBuilder
from edgeproj.export.lowering import LOWERINGS, UnsupportedOperation, supported_operations
from edgeproj.export.traced_network import TracedNetwork
from edgeproj.export.tracing import ModelContractError
from edgeproj.runtime.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]


def _run_traced(net: nn.Module, channels: int, size: int, x: torch.Tensor, g: torch.Tensor):
    """f(x) and J^T g from the traced network's ONNX nodes (ONNX Runtime), for a batch of any size."""
    tn = TracedNetwork(net.eval(), channels, size)
    b = GraphBuilder("t")
    shape = ["N", channels, size, size]
    xi, gi = b.input("x", shape), b.input("g", shape)
    b.output(tn.forward(b, xi), "recon", shape)
    b.output(tn.backward(b, gi), "grad", shape)
    sess = ort.InferenceSession(b.model().SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.numpy(), "g": g.numpy()}), tn


def _autograd(net: nn.Module, x: torch.Tensor, g: torch.Tensor):
    xr = x.clone().requires_grad_(True)
    r = net(xr)
    (gx,) = torch.autograd.grad(r, xr, g)
    return r.detach().numpy(), gx.numpy()


class Small(nn.Module):
    """conv -> act -> conv -> act -> resample -> conv -> sigmoid, on 1 x 32 x 32."""

    def __init__(self, act: nn.Module, resample: nn.Module | None = None, mid: nn.Module | None = None):
        super().__init__()
        self.c1, self.act, self.c2 = nn.Conv2d(1, 4, 3, 2, 1), act, nn.Conv2d(4, 4, 3, 1, 1)
        self.mid = mid or nn.Identity()
        self.up = resample or nn.Upsample(scale_factor=2)
        self.c3 = nn.Conv2d(4, 1, 3, 1, 1)

    def forward(self, x):
        return torch.sigmoid(self.c3(self.up(self.mid(self.act(self.c2(self.act(self.c1(x))))))))


LAYERS = {
    "relu": lambda: Small(nn.ReLU()),
    "leaky_relu": lambda: Small(nn.LeakyReLU(0.1)),
    "elu": lambda: Small(nn.ELU(0.5)),
    "selu": lambda: Small(nn.SELU()),
    "gelu": lambda: Small(nn.GELU()),
    "gelu_tanh": lambda: Small(nn.GELU(approximate="tanh")),
    "silu": lambda: Small(nn.SiLU()),
    "mish": lambda: Small(nn.Mish()),
    "softplus": lambda: Small(nn.Softplus()),
    "tanh": lambda: Small(nn.Tanh()),
    "hardtanh": lambda: Small(nn.Hardtanh()),
    "relu6": lambda: Small(nn.ReLU6()),
    "prelu": lambda: Small(nn.PReLU(4)),
    "batchnorm": lambda: Small(nn.ReLU(), mid=nn.BatchNorm2d(4)),
    "avgpool": lambda: Small(nn.ReLU(), mid=nn.AvgPool2d(3, 1, 1)),
    "dropout_eval": lambda: Small(nn.ReLU(), mid=nn.Dropout(0.3)),
    "bilinear": lambda: Small(nn.ReLU(), nn.Upsample(scale_factor=2, mode="bilinear")),
    "bilinear_corners": lambda: Small(nn.ReLU(), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)),
    "pixel_shuffle": lambda: Small(nn.ReLU(), nn.Sequential(nn.Conv2d(4, 16, 1), nn.PixelShuffle(2))),
    "convtranspose_output_padding": lambda: Small(nn.ReLU(), nn.ConvTranspose2d(4, 4, 3, 2, 1, output_padding=1)),
    "grouped_dilated": lambda: Small(nn.ReLU(), mid=nn.Conv2d(4, 4, 3, 1, 2, dilation=2, groups=2)),
    "same_padding_even_kernel": lambda: Small(nn.ReLU(), mid=nn.Conv2d(4, 4, 4, padding="same")),
    "constant_pad": lambda: Small(nn.ReLU(), mid=nn.Sequential(nn.ConstantPad2d((2, 1, 0, 3), 0.5), nn.Conv2d(4, 4, (4, 4)))),
}


class Elementwise(nn.Module):
    """Arithmetic a model may do between its layers: scalars, powers, roots, logs, min/max, clamps, selections."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3, 1, 1)

    def forward(self, x):
        h = self.c(x) * 2.0 + 0.5
        a, b = h[:, :1], h[:, 1:]
        y = torch.maximum(a, b) - torch.minimum(a, -b) / 3.0 + (a - 1).abs() * 0.1
        y = y + torch.sqrt(a * a + 1.0) - torch.rsqrt(b * b + 1.0) + torch.log1p(a.exp()) - torch.expm1(-b.abs())
        y = y + torch.log(b * b + 1) * torch.reciprocal(a * a + 2.0) + a.pow(3) * 0.01 + torch.clamp(b, -0.5, 0.5)
        y = torch.where(a > b, y, -y) + torch.erf(a) - torch.sign(b) * 0.1 + b.clamp(min=0) - b.clamp(max=0.2)
        y = y + torch.clamp_min(a, -0.3) * torch.clamp_max(b, 0.3) + (a >= 0.1).float() * (b <= 0.2).float() * 0.05
        y = y + (a.double() * 0.5).float() - 3.0 + 1 / (b.abs() + 1) - (2 - a) + b.reshape(b.shape) * (a != 0)
        return torch.sigmoid(y)


class Shapes(nn.Module):
    """Shape operations: permute, transpose, squeeze, slices, concatenation, split, sums and means, a per-channel
    scale on a channels-last view."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3, 2, 1)
        self.scale = nn.Parameter(torch.tensor([0.5, 1.0, 1.5, 2.0]))
        self.out = nn.ConvTranspose2d(4, 1, 4, 2, 1)

    def forward(self, x):
        h = torch.relu(self.c(x))  # N 4 16 16
        h = (h.permute(0, 2, 3, 1) * self.scale).permute(0, 3, 1, 2)
        h = h.transpose(2, 3).unsqueeze(1).squeeze(1).transpose(2, 3)
        left, right = h[:, :, :, :8], h[:, :, :, 8:]
        h = torch.cat([right, left], dim=3)
        p, q = torch.split(h, [1, 3], dim=1)
        h = torch.cat([p * q.mean(dim=1, keepdim=True), q + p.sum(dim=(2, 3), keepdim=True) / 256], dim=1)
        return torch.sigmoid(self.out(h))


LAYERS["elementwise"] = Elementwise
LAYERS["shapes"] = Shapes


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_supported_layer_lowers_to_its_exact_gradient(layer):
    torch.manual_seed(0)
    net = LAYERS[layer]().eval()
    if layer == "batchnorm":  # running statistics other than the defaults, or the fold is not tested
        bn = net.mid
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0), bn.weight.data.uniform_(0.5, 1.5)
    for n in (1, 3):  # one graph, any batch size
        x, g = torch.rand(n, 1, 32, 32), torch.randn(n, 1, 32, 32)
        (recon, grad), _ = _run_traced(net, 1, 32, x, g)
        r_ref, g_ref = _autograd(net, x, g)
        assert np.abs(recon - r_ref).max() < 1e-5
        assert np.abs(grad - g_ref).max() / np.abs(g_ref).max() < 1e-4


def test_a_wrong_lowering_is_caught_by_that_test(monkeypatch):
    """The layer test can fail: a LeakyReLU backward with the wrong slope is off by far more than float32."""
    import edgeproj.export.lowering as lowering

    right = LOWERINGS["aten.leaky_relu_backward.default"]
    monkeypatch.setitem(lowering.LOWERINGS, "aten.leaky_relu_backward.default",
                        lambda lw, node, g, x, slope, res: right(lw, node, g, x, slope * 2, res))  # fmt: skip
    torch.manual_seed(0)
    net = LAYERS["leaky_relu"]().eval()
    x, g = torch.rand(2, 1, 32, 32), torch.randn(2, 1, 32, 32)
    (_, grad), _ = _run_traced(net, 1, 32, x, g)
    _, g_ref = _autograd(net, x, g)
    assert np.abs(grad - g_ref).max() / np.abs(g_ref).max() > 1e-3


def test_the_traced_graphs_are_plain_onnx():
    """Only the plain operator set: no autograd, no control flow, no custom domain."""
    plain = {"Conv", "ConvTranspose", "MatMul", "Gather", "AveragePool", "Reshape", "Transpose", "Concat", "Split",
             "Slice", "Shape", "Expand", "Unsqueeze", "Squeeze", "Identity", "Where", "Greater", "GreaterOrEqual",
             "LessOrEqual", "Or", "And", "Add", "Sub", "Mul", "Div", "Neg", "Exp", "Log", "Erf", "Tanh", "Sigmoid",
             "Relu", "LeakyRelu", "Elu", "Clip", "Cast", "Max", "Min", "Abs", "Sqrt", "Reciprocal", "Sign", "Pow",
             "ReduceSum", "ReduceMean", "Equal", "Less", "Not", "Resize", "Pad"}  # fmt: skip
    for name, make in LAYERS.items():
        _, tn = _run_traced(make(), 1, 32, torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
        assert set(tn.op_types) <= plain, (name, set(tn.op_types) - plain)


def test_a_batch_folded_into_another_dimension_is_refused_with_what_to_do():
    class ChannelsLastLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.mix = nn.Conv2d(1, 4, 3, 1, 1), nn.Linear(4, 1)

        def forward(self, x):
            return torch.sigmoid(self.mix(torch.relu(self.c(x)).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))

    with pytest.raises(ConfigError, match=r"layer mix \(Linear\) uses aten.bmm.*1x1 Conv2d"):
        TracedNetwork(ChannelsLastLinear().eval(), 1, 32, "ChannelsLastLinear")


def test_a_value_handed_to_the_backward_with_the_batch_folded_in_is_refused():
    class FoldedBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 4, 3, 1, 1), nn.Conv2d(4, 1, 3, 1, 1)

        def forward(self, x):
            h = self.c1(x)
            n, c, hh, ww = h.shape
            h = torch.relu(h.reshape(n * c, 1, hh, ww)).reshape(n, c, hh, ww)  # the ReLU's mask is N*4 x 1 x H x W
            return torch.sigmoid(self.c2(h))

    with pytest.raises(ConfigError, match="folds the batch into another dimension"):
        TracedNetwork(FoldedBatch().eval(), 1, 32, "FoldedBatch")


class TwoPools(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.ok, self.bad = nn.Conv2d(1, 4, 3, 1, 1), nn.AvgPool2d(2), nn.AvgPool2d(3, ceil_mode=True)
        self.up, self.out = nn.Upsample(size=32), nn.Conv2d(4, 1, 3, 1, 1)

    def forward(self, x):
        return torch.sigmoid(self.out(self.up(self.bad(self.ok(self.c(x))))))


class Reflect(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 1, 3, 1, 1, padding_mode="reflect")

    def forward(self, x):
        return torch.sigmoid(self.c(x))


class Strided(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 1, 3, 1, 1)

    def forward(self, x):
        h = self.c(x)
        return torch.sigmoid(torch.cat([h[..., ::2], h[..., 1::2]], dim=3))


@pytest.mark.parametrize(
    "model,needles",
    [
        (TwoPools, ["one of the layers ok (AvgPool2d), bad (AvgPool2d)", "avg_pool2d", "floor mode"]),
        (Reflect, ["layer c (Conv2d)", "reflection_pad2d", "padding_mode='zeros'"]),
        (Strided, ["the code at `return torch.sigmoid(torch.cat([h[..., ::2]", "slice_scatter", "unit steps"]),
    ],
    ids=["ambiguous-layer", "reflect-padding", "strided-slice"],
)
def test_an_unsupported_form_names_where_it_is(model, needles):
    with pytest.raises(UnsupportedOperation) as err:
        TracedNetwork(model().eval(), 1, 32)
    for n in needles:
        assert n in str(err.value), (n, str(err.value))


def test_an_unsupported_operation_names_the_layer_and_the_operation():
    with pytest.raises(UnsupportedOperation) as err:
        TracedNetwork(user_models.MaxPoolAE().eval(), 1, 128)
    msg = str(err.value)
    assert "layer down.2 (MaxPool2d)" in msg and "aten.max_pool2d_with_indices" in msg and "stride-2 convolution" in msg


@pytest.mark.parametrize(
    "forward,needle",
    [
        (lambda self, x: torch.sigmoid(self.c(x) + torch.randn_like(x)), "not a pure function of its input"),
        (lambda self, x: torch.sigmoid(self.c(x) - x.mean()), "must not depend on the others"),
        (lambda self, x: torch.sigmoid(self.c(x))[:, :, :10], "reconstruction of x's shape"),
        (lambda self, x: (torch.sigmoid(self.c(x)), x), "as one tensor"),
        (lambda self, x: torch.sigmoid(self.c(x)) if x.mean() > 0.5 else x, "depend on the values of its input"),
        (lambda self, x: torch.sigmoid(self.c(x)).reshape(int(x.shape[0]), 1, 32, 32), "fixes the batch size"),
    ],
    ids=["noise", "batch-statistics", "shape", "tuple", "data-dependent-branch", "fixed-batch"],
)
def test_a_model_breaking_the_contract_is_one_clear_error(forward, needle):
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 1, 3, 1, 1)

    Broken.forward = forward
    with pytest.raises(ModelContractError, match=re.escape(needle)):
        TracedNetwork(Broken().eval(), 1, 32, "Broken")


def test_docs_list_every_supported_operation():
    text = (ROOT / "docs" / "byo-model.md").read_text()
    missing = [op for op in supported_operations() if f"`{op}`" not in text]
    assert not missing, missing
    assert "docs/byo-model.md" in (ROOT / "README.md").read_text()


# --- user models end to end -------------------------------------------------------------------------
USER_MODELS = {
    "BatchNormAE": ("user_models:BatchNormAE", 1, "gray"),
    "UpsampleAE": ("user_models:UpsampleAE", 1, "gray"),
    "DeepRGBAE": ("user_models:deep_rgb", 3, "rgb"),
}


@pytest.fixture(scope="module")
def rgb_grid(demo_root, tmp_path_factory) -> Path:
    """The demo grid in colour (MVTec layout, masks unchanged): a data set for an RGB model."""
    src, dst = demo_root / "grid", tmp_path_factory.mktemp("rgb") / "grid"
    for p in src.rglob("*.png"):
        out = dst / p.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        im = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if "ground_truth" not in p.parts:
            f = im.astype(np.float32) / 255
            im = (np.clip(np.stack([1 - 0.7 * f, 0.3 + 0.6 * f, f], -1), 0, 1) * 255).astype(np.uint8)
        cv2.imwrite(str(out), im)
    return dst


@pytest.fixture(scope="module")
def user_bundles(demo_root, rgb_grid, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each user model trained briefly (CLI), exported with parity on and calibrated: name -> (bundle, data)."""
    base = tmp_path_factory.mktemp("user")
    out = {}
    for name, (path, _, data_kind) in USER_MODELS.items():
        data = rgb_grid if data_kind == "rgb" else demo_root / "grid"
        run, bundle = base / f"run-{name}", base / f"b-{name}"
        res = run_cli("train", data, "--model", path, "--steps", 40, "--until", "steps", "--batch", 8, "--out", run, "-q")
        assert res.exit_code == 0, res.output
        res = run_cli("export", run, "--out", bundle, "--parity-steps", 20, "-q")
        assert res.exit_code == 0, res.output
        res = run_cli("calibrate", bundle, data, "-q")
        assert res.exit_code == 0, res.output
        out[name] = (bundle, data)
    return out


@pytest.mark.parametrize("name", sorted(USER_MODELS))
def test_a_user_model_trains_exports_with_parity_calibrates_and_inspects(user_bundles, name, tmp_path):
    bundle, data = user_bundles[name]
    path, channels, _ = USER_MODELS[name]
    m = load_manifest(bundle)
    assert m.versions["emitter"] == "traced" and m.training["model"]["architecture"] == path
    assert m.channels == channels and m.size == 128 and m.variant == "l2ae"
    p = m.parity
    assert p["measured"] and p["passed"] and not p["failures"], p["failures"]
    assert p["gradient"]["batch7"]["grad_rel_max_err"] < 1e-4
    assert m.has_split_step and p["split"]["max_err"] <= 1e-6
    assert m.calibration.calibrated
    res = run_cli("inspect", bundle, "--source", f"{data}/test/*/*.png", "--out", tmp_path / "o", "--json")
    assert res.exit_code in (0, 1), res.output  # 1: some part judged NG
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    frames, summary = rows[:-1], rows[-1]
    assert summary["summary"] and summary["processed"] == len(frames) == len(list(data.glob("test/*/*.png")))
    assert all(r["verdict"] in ("OK", "NG", "FAULT") and np.isfinite(r["score"]) for r in frames)


def test_a_user_model_of_another_input_size_runs_end_to_end(demo_root, tmp_path):
    """A 64x64 model: texture tiles of 64 with a stride of 32, parity probes at 64, and the line."""
    grid, run, bundle = demo_root / "grid", tmp_path / "run", tmp_path / "b"
    res = run_cli("train", grid, "--model", "user_models:UpsampleAE", "--size", 64, "--steps", 10, "--until", "steps",
                  "--batch", 4, "--out", run, "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert run_cli("export", run, "--out", bundle, "--parity-steps", 5, "-q").exit_code == 0
    m = load_manifest(bundle)
    assert m.size == 64 and m.preprocess.patch == 64 and m.parity["passed"]
    assert run_cli("calibrate", bundle, grid, "-q").exit_code == 0
    res = run_cli("inspect", bundle, "--source", f"{grid}/test/*/*.png", "--out", tmp_path / "o", "--json")
    assert res.exit_code in (0, 1) and json.loads(res.stdout.splitlines()[-1])["processed"] == len(
        list(grid.glob("test/*/*.png"))
    )


def test_export_from_weights_with_the_dssim_loss(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "ae.safetensors"
    from safetensors.torch import save_file

    save_file(user_models.UpsampleAE().state_dict(), str(weights))
    out = tmp_path / "b"
    res = run_cli("export", "--model", "user_models:UpsampleAE", "--weights", weights, "--input", "1x128x128",
                  "--loss", "dssim", "--parity-steps", 5, "--out", out, "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    m = load_manifest(out)
    assert m.variant == "dsae" and m.training["weights"] == str(weights.resolve()) and "run" not in m.training
    assert m.parity["passed"] and m.preprocess.mode == "object" and m.preprocess.patch == 128


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--model", "user_models:MaxPoolAE", "--weights", "{mp}", "--input", "1x128x128"], ["down.2 (MaxPool2d)", "max_pool2d"]),
        (["--model", "user_models:NoisyAE", "--weights", "{up}", "--input", "1x128x128"], ["not a pure function"]),
        (["--model", "user_models:BatchNormAE", "--weights", "{up}", "--input", "1x128x128"], ["does not fit the model"]),
        (["--model", "no_such_module:X", "--weights", "{up}", "--input", "1x128x128"], ["cannot import 'no_such_module'"]),
        (["--model", "user_models:Nope", "--weights", "{up}", "--input", "1x128x128"], ["has no 'Nope'"]),
        (["--model", "user_models", "--weights", "{up}", "--input", "1x128x128"], ["package.module:Name"]),
        (["--model", "user_models:UpsampleAE", "--weights", "{up}", "--input", "2x128x128"], ["channels must be 1 or 3"]),
        (["--model", "user_models:UpsampleAE", "--weights", "{up}", "--input", "1x128x64"], ["square"]),
        (["--model", "user_models:UpsampleAE", "--weights", "{up}"], ["needs --weights and --input"]),
        (
            ["--model", "user_models:UpsampleAE", "--weights", "{up}", "--input", "1x128x128", "--emitter", "hand"],
            ["--emitter traced"],
        ),
        (["{run}", "--model", "user_models:UpsampleAE"], ["not both"]),
        (["{run}", "--weights", "{up}"], ["go with --model"]),
        ([], ["a training run folder, or --model"]),
    ],
    ids=[
        "unsupported-op",
        "contract",
        "weights-mismatch",
        "no-module",
        "no-name",
        "bad-path",
        "channels",
        "not-square",
        "no-input",
        "hand-emitter",
        "run-and-model",
        "weights-without-model",
        "nothing",
    ],  # fmt: skip
)
def test_export_errors_are_one_line_before_any_folder(tmp_path, runs, args, needles):
    torch.save(user_models.MaxPoolAE().state_dict(), tmp_path / "mp.pt")
    torch.save(user_models.UpsampleAE().state_dict(), tmp_path / "up.pt")
    subs = {"{mp}": str(tmp_path / "mp.pt"), "{up}": str(tmp_path / "up.pt"), "{run}": str(runs["l2ae"])}
    out = tmp_path / "b"
    res = run_cli("export", *[subs.get(a, a) for a in args], "--out", out)
    one_line_error(res, *needles)
    assert not out.exists()


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--model", "user_models:UpsampleAE", "--variant", "dsae"], ["--variant", "--loss"]),
        (["--model", "user_models:UpsampleAE", "--width", "8"], ["--width"]),
        (["--loss", "dssim"], ["go with --model"]),
        (["--model", "user_models:MaxPoolAE"], ["down.2 (MaxPool2d)"]),
        (["--model", "user_models:NoisyAE"], ["not a pure function"]),
    ],
    ids=["variant", "width", "loss-without-model", "unsupported-op", "contract"],
)
def test_train_refuses_a_model_that_will_not_export_before_any_work(demo_root, tmp_path, args, needles):
    out = tmp_path / "run"
    one_line_error(run_cli("train", demo_root / "grid", *args, "--steps", 1, "--out", out), *needles)
    assert not out.exists()


def test_bench_compares_the_two_emitters_in_the_same_rounds(runs, tmp_path):
    from edgeproj.export.bundle import ExportOptions, export_bundle

    hand, traced = tmp_path / "hand", tmp_path / "traced"
    export_bundle(runs["l2ae"], hand, ExportOptions(parity=False, emitter="hand"))
    export_bundle(runs["l2ae"], traced, ExportOptions(parity=False, emitter="traced"))
    assert load_manifest(hand).versions["emitter"] == "hand" and load_manifest(traced).versions["emitter"] == "traced"
    res = run_cli("bench", traced, "--compare", hand, "--backends", "ort-cpu", "--batches", "1", "--iterations", 2,
                  "--warmup", 1, "--repeats", 4, "--no-torch", "--no-line", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = doc["compare"]["rows"]
    assert doc["compare"]["bundle"] == str(hand) and rows
    measured = {r["backend"] for r in doc["results"]}
    assert {f"{r['backend']} [compared]" for r in rows} <= measured
    for r in rows:
        assert r["ratio_vs_compared"] is None or r["ratio_vs_compared"] > 0
        assert r["spread"]["rounds"] == 2  # 4 rounds: 2 pairs, each timed in both orders


def test_bench_compare_refuses_a_bundle_of_another_model(bundles, tmp_path):
    other = tmp_path / "rgb"
    shutil.copytree(bundles["l2ae"], other)
    doc = json.loads((other / "manifest.json").read_text())
    doc["channels"] = 3
    (other / "manifest.json").write_text(json.dumps(doc))
    res = run_cli("bench", bundles["l2ae"], "--compare", other, "--no-torch", "--no-line")
    assert res.exit_code == 2


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_builtins_go_through_the_generic_path_export_calibrate_inspect(runs, demo_root, tmp_path, variant):
    bundle = tmp_path / "b"
    res = run_cli("export", runs[variant], "--out", bundle, "--emitter", "traced", "--parity-steps", 10, "-q")
    assert res.exit_code == 0, res.output
    m = load_manifest(bundle)
    assert m.versions["emitter"] == "traced" and m.versions["convtranspose"] is None
    assert m.parity["passed"], m.parity["failures"]
    assert m.has_split_step
    grid = demo_root / "grid"
    assert run_cli("calibrate", bundle, grid, "-q").exit_code == 0
    res = run_cli("inspect", bundle, "--source", f"{grid}/test/*/*.png", "--out", tmp_path / "o", "--json")
    assert res.exit_code in (0, 1), res.output
    summary = json.loads(res.stdout.splitlines()[-1])
    assert (
        summary["processed"] == len(list(grid.glob("test/*/*.png")))
        and summary["ok"] + summary["ng"] + summary["fault"] == summary["processed"]
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_generic_graphs_match_the_hand_written_ones_within_float32_noise(runs, variant):
    """Measured on briefly trained runs: energy and L_r within 2e-7, f(x) 5e-7, the gradient's median sample
    4e-7 of max|g| (one sample 1.3e-5, a LeakyReLU input within rounding of zero)."""
    from edgeproj.export.bundle import _training_patches, model_spec
    from edgeproj.export.energy import build_gradient_graph
    from edgeproj.export.network import NetworkEmitter, plan_from_model
    from edgeproj.export.parity import probe_inputs
    from edgeproj.training.run import load_run

    model, cfg, _ = load_run(runs[variant])
    spec = model_spec(model)
    x0, x, _ = probe_inputs(_training_patches(cfg)[0], 7, 1, seed=7)
    outs = []
    for net in (NetworkEmitter(plan_from_model(model)), TracedNetwork(model, 1, 128)):
        sess = ort.InferenceSession(build_gradient_graph(net, spec).SerializeToString(), providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {"x": x, "x0": x0, "lam": np.array([0.05], np.float32)}))
    (e_h, r_h, g_h, f_h), (e_t, r_t, g_t, f_t) = outs
    assert np.abs(e_t - e_h).max() / np.abs(e_h).max() < 1e-6
    assert np.abs(f_t - f_h).max() < 1e-5
    per_sample = np.abs(g_t - g_h).reshape(7, -1).max(axis=1) / np.abs(g_h).max()
    assert np.median(per_sample) < 1e-5 and per_sample.max() < 1e-4, per_sample


def test_convtranspose_forms_belong_to_the_hand_written_graphs(runs, tmp_path):
    res = run_cli("export", runs["l2ae"], "--out", tmp_path / "b", "--emitter", "traced", "--convtranspose", "phase3")
    one_line_error(res, "--convtranspose phase3", "--emitter traced")


def test_unknown_emitter_is_a_config_error():
    from edgeproj.export.bundle import ExportOptions

    with pytest.raises(ConfigError, match="unknown emitter"):
        ExportOptions(emitter="magic")
