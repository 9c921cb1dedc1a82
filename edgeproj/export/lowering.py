"""ATen graph -> plain ONNX: the lowering of a traced reconstruction and its vector-Jacobian product.

`edgeproj.export.tracing` traces x, g -> (f(x), J_f(x)^T g) into an ATen FX graph whose backward part holds
autograd's own backward operators (convolution_backward, leaky_relu_backward, native_batch_norm_backward,
...). This module lowers that graph, node by node, to the operator set the hand-written emitter uses:
Conv, ConvTranspose, MatMul, Gather, AveragePool and element-wise nodes; no autograd, no control flow.
Everything that depends on neither x nor g (weights, index tables, shapes) is evaluated here in PyTorch
and becomes an initializer, so the graph holds only the arithmetic on the image.

LOWERINGS maps each supported ATen operator to its emitter; `supported_operations()` lists them (README).
An operator outside it is an UnsupportedOperation naming the operator, raised before any graph is written.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from edgeproj.errors import ConfigError
from edgeproj.export.builder import GraphBuilder

# What to use instead, for operators users meet most.
HINTS = {
    "aten.max_pool2d_with_indices.default": "use a stride-2 convolution or AvgPool2d",
    "aten.native_group_norm.default": "use BatchNorm2d (folded into a per-channel scale in eval mode)",
    "aten.native_layer_norm.default": "use BatchNorm2d (folded into a per-channel scale in eval mode)",
    "aten.upsample_bicubic2d.default": "use nearest or bilinear upsampling",
}


class UnsupportedOperation(ConfigError):
    """An ATen operator (or a form of it) that edgeproj cannot lower to plain ONNX."""

    def __init__(self, op: str, why: str = "", where: str = ""):
        self.op, self.why, self.where = op, why, where
        who = f"{where} uses " if where else ""
        hint = f"; {HINTS[op]}" if op in HINTS else ""
        super().__init__(
            f"cannot export: {who}{op}: {why}{hint} (the operations edgeproj lowers are listed in docs/byo-model.md)"
        )


@dataclass(frozen=True)
class Value:
    """An ONNX value: its name, per-sample-aware shape (None for the batch dimension) and dtype."""

    name: str
    shape: tuple
    dtype: str  # "float", "bool" or "int64"

    @property
    def rank(self) -> int:
        return len(self.shape)


class _Batch:
    """The symbolic batch size, as a size argument (view, expand, new_zeros)."""

    def __repr__(self):
        return "N"


BATCH = _Batch()


@dataclass(frozen=True)
class _BatchMultiple(_Batch):
    """A size that is the batch times a constant (the batch folded into another dimension, as a Linear layer
    applied to a 4-D tensor does): a reshape may take it as -1."""

    factor: int


@dataclass(frozen=True)
class _Zeros:
    """`new_zeros(...)`: kept symbolic, consumed by an accumulating index_put."""

    shape: tuple


_DTYPES = {"float": np.float32, "bool": np.bool_, "int64": np.int64}


def _np(t) -> np.ndarray:
    """A folded constant as numpy (float tensors as float32)."""
    import torch

    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        if t.is_floating_point():
            return t.to(torch.float32).numpy()
        if t.dtype == torch.bool:
            return t.numpy()
        return t.to(torch.int64).numpy()
    arr = np.asarray(t)
    return arr.astype(np.float32) if arr.dtype.kind == "f" else arr


class Lowering:
    """Lowers one traced FX graph (x, g) -> (f(x), grad) into a GraphBuilder with inputs `x` and `g`."""

    def __init__(self, b: GraphBuilder):
        self.b = b
        self._lrelu: dict[str, tuple[str, float]] = {}  # LeakyReLU input -> (its output, slope)
        self.values: dict[str, Value] = {}  # every value emitted, by name (shapes for the split graphs)
        self.batch_source = ""  # the graph input whose first dimension is the batch

    # --- values ------------------------------------------------------------------------------------
    def const(self, value, hint: str = "c") -> Value:
        arr = _np(value)
        dtype = {"f": "float", "b": "bool"}.get(arr.dtype.kind, "int64")
        arr = arr.astype(_DTYPES[dtype])
        return Value(self.b.const(arr, hint, _DTYPES[dtype]), tuple(arr.shape), dtype)

    def tensor(self, v, like: Value | None = None) -> Value:
        """A Value for an argument that may be a Python number, a folded tensor or symbolic zeros."""
        if isinstance(v, Value):
            return v
        if isinstance(v, _Zeros):
            return self.zeros(v.shape, like)
        if isinstance(v, (bool, int, float)) and not isinstance(v, bool) and like is not None and like.dtype == "float":
            return self.const(np.float32(v), "s")
        return self.const(v, "k")

    def zeros(self, shape: tuple, like: Value | None = None) -> Value:
        """Zeros of `shape`; a leading None is the batch, read from `like` (a value beside it, so that the
        zeros stay on its side of the forward/backward split) or else from the graph input x."""
        if shape and shape[0] is None:
            src = like.name if like is not None and like.shape and like.shape[0] is None else self.batch_source
            n = self.b.op("Shape", [src], "batch", start=0, end=1)
            dims = self.b.op("Concat", [n, self.const(np.array(shape[1:], np.int64), "dims").name], "zeros_shape", axis=0)
            z = self.b.op("Expand", [self.const(np.zeros((1,) * len(shape), np.float32), "zero").name, dims], "zeros")
        else:
            z = self.const(np.zeros(shape, np.float32), "zeros").name
        v = Value(z, shape, "float")
        self.values[z] = v
        return v

    def out(self, name: str, meta) -> Value:
        v = Value(name, _shape(meta), _dtype(meta))
        self.values[name] = v
        return v

    def ints(self, values) -> list[int]:
        """Reshape sizes: the batch as 0 (ONNX Reshape: copy the input's first dimension) when it leads, a
        multiple of the batch as -1 (inferred; at most one)."""
        out = []
        for i, v in enumerate(values):
            if v is BATCH and i == 0:
                out.append(0)
            elif isinstance(v, _Batch):
                out.append(-1)
            else:
                out.append(int(v))
        if out.count(-1) > 1:
            raise UnsupportedOperation("aten.view.default", "a reshape with more than one size computed from the batch")
        return out


def _shape(meta) -> tuple:
    """A traced tensor's shape: ints, None for the batch, a _BatchMultiple where the batch is folded in."""
    import torch

    dims = []
    for d in meta.shape:
        if isinstance(d, torch.SymInt):
            size = _concrete_size(d)
            dims.append(None if size is BATCH else size)
        else:
            dims.append(int(d))
    return tuple(dims)


def _dtype(meta) -> str:
    import torch

    if meta.dtype == torch.bool:
        return "bool"
    if meta.dtype.is_floating_point:
        return "float"
    return "int64"


# --- the operators -------------------------------------------------------------------------------
LOWERINGS: dict[str, object] = {}


def lowers(*names: str):
    """Register the emitter of ATen operators `names` (overload names, e.g. 'aten.add.Tensor')."""

    def deco(fn):
        for n in names:
            LOWERINGS[n] = fn
        return fn

    return deco


def supported_operations() -> list[str]:
    """Every ATen operator the lowering accepts, sorted (the README lists them)."""
    return sorted(LOWERINGS)


def _binary(onnx_op: str):
    def emit(lw: Lowering, node, a, b_, *rest, alpha=1):
        x = lw.tensor(a) if isinstance(a, Value) else None
        like = x or (b_ if isinstance(b_, Value) else None)
        a_v, b_v = lw.tensor(a, like), lw.tensor(b_, like)
        if alpha != 1:
            b_v = Value(lw.b.mul(b_v.name, lw.const(np.float32(alpha)).name), b_v.shape, b_v.dtype)
        return lw.out(lw.b.op(onnx_op, [a_v.name, b_v.name], onnx_op.lower()), node.meta["val"])

    return emit


for _aten, _onnx in (
    ("add", "Add"),
    ("sub", "Sub"),
    ("mul", "Mul"),
    ("div", "Div"),
    ("maximum", "Max"),
    ("minimum", "Min"),
    ("gt", "Greater"),
    ("lt", "Less"),
    ("ge", "GreaterOrEqual"),
    ("le", "LessOrEqual"),
    ("eq", "Equal"),
    ("bitwise_or", "Or"),
    ("bitwise_and", "And"),
):
    for _ov in ("Tensor", "Scalar"):
        LOWERINGS[f"aten.{_aten}.{_ov}"] = _binary(_onnx)
LOWERINGS["aten.maximum.default"] = _binary("Max")
LOWERINGS["aten.logical_and.default"] = _binary("And")


@lowers("aten.ne.Scalar", "aten.ne.Tensor")
def _ne(lw, node, a, b_):
    eq = _binary("Equal")(lw, node, a, b_)
    return lw.out(lw.b.op("Not", [eq.name], "ne"), node.meta["val"])
LOWERINGS["aten.minimum.default"] = _binary("Min")
del LOWERINGS["aten.maximum.Tensor"], LOWERINGS["aten.maximum.Scalar"]
del LOWERINGS["aten.minimum.Tensor"], LOWERINGS["aten.minimum.Scalar"]


def _unary(onnx_op: str):
    def emit(lw: Lowering, node, a):
        return lw.out(lw.b.op(onnx_op, [a.name], onnx_op.lower()), node.meta["val"])

    return emit


for _aten, _onnx in (
    ("neg", "Neg"),
    ("exp", "Exp"),
    ("log", "Log"),
    ("sqrt", "Sqrt"),
    ("reciprocal", "Reciprocal"),
    ("abs", "Abs"),
    ("tanh", "Tanh"),
    ("sigmoid", "Sigmoid"),
    ("relu", "Relu"),
    ("erf", "Erf"),
    ("sign", "Sign"),
):
    LOWERINGS[f"aten.{_aten}.default"] = _unary(_onnx)


@lowers("aten.rsqrt.default")
def _rsqrt(lw, node, a):
    return lw.out(lw.b.op("Reciprocal", [lw.b.op("Sqrt", [a.name])], "rsqrt"), node.meta["val"])


@lowers("aten.expm1.default")
def _expm1(lw, node, a):
    return lw.out(lw.b.sub(lw.b.op("Exp", [a.name]), lw.const(np.float32(1)).name, "expm1"), node.meta["val"])


@lowers("aten.log1p.default")
def _log1p(lw, node, a):
    return lw.out(lw.b.op("Log", [lw.b.add(a.name, lw.const(np.float32(1)).name)], "log1p"), node.meta["val"])


@lowers("aten.pow.Tensor_Scalar")
def _pow(lw, node, a, e):
    if e == 2:
        return lw.out(lw.b.mul(a.name, a.name, "sq"), node.meta["val"])
    return lw.out(lw.b.op("Pow", [a.name, lw.const(np.float32(e)).name], "pow"), node.meta["val"])


@lowers("aten.where.self")
def _where(lw, node, c, a, b_):
    like = a if isinstance(a, Value) else b_
    return lw.out(
        lw.b.op("Where", [lw.tensor(c).name, lw.tensor(a, like).name, lw.tensor(b_, like).name], "where"), node.meta["val"]
    )


@lowers("aten.clamp.default", "aten.clamp_min.default", "aten.clamp_max.default", "aten.hardtanh.default")
def _clamp(lw, node, a, lo=None, hi=None):
    name = node.target.name() if hasattr(node.target, "name") else ""
    if "clamp_max" in name:
        lo, hi = None, lo
    if "hardtanh" in name:
        lo = -1.0 if lo is None else lo
        hi = 1.0 if hi is None else hi
    lo_n = lw.const(np.float32(lo)).name if lo is not None else ""
    hi_n = lw.const(np.float32(hi)).name if hi is not None else ""
    return lw.out(lw.b.op("Clip", [a.name, lo_n, hi_n], "clip"), node.meta["val"])


@lowers("aten.leaky_relu.default")
def _leaky_relu(lw, node, a, slope=0.01):
    y = lw.b.op("LeakyRelu", [a.name], "lrelu", alpha=float(slope))
    lw._lrelu[a.name] = (y, float(slope))
    return lw.out(y, node.meta["val"])


@lowers("aten.leaky_relu_backward.default")
def _leaky_relu_backward(lw, node, g, x, slope, self_is_result):
    # The sign of LeakyReLU's output equals its input's for a slope >= 0: reading it from the output
    # leaves the convolution before it one consumer, which ONNX Runtime fuses with the activation.
    src = x.name
    if not self_is_result and x.name in lw._lrelu and lw._lrelu[x.name][1] >= 0:
        src = lw._lrelu[x.name][0]
    mask = lw.b.op("Greater", [src, lw.const(np.float32(0)).name], "lrelu_pos")
    factor = lw.b.op("Where", [mask, lw.const(np.float32(1)).name, lw.const(np.float32(slope)).name], "lrelu_mask")
    return lw.out(lw.b.mul(g.name, factor, "lrelu_grad"), node.meta["val"])


@lowers("aten.threshold_backward.default")
def _threshold_backward(lw, node, g, x, threshold):
    mask = lw.b.op("Greater", [x.name, lw.const(np.float32(threshold)).name], "relu_pos")
    return lw.out(lw.b.op("Where", [mask, g.name, lw.const(np.float32(0)).name], "relu_grad"), node.meta["val"])


@lowers("aten.sigmoid_backward.default")
def _sigmoid_backward(lw, node, g, y):
    d = lw.b.mul(y.name, lw.b.sub(lw.const(np.float32(1)).name, y.name))
    return lw.out(lw.b.mul(g.name, d, "sigmoid_grad"), node.meta["val"])


@lowers("aten.tanh_backward.default")
def _tanh_backward(lw, node, g, y):
    d = lw.b.sub(lw.const(np.float32(1)).name, lw.b.mul(y.name, y.name))
    return lw.out(lw.b.mul(g.name, d, "tanh_grad"), node.meta["val"])


@lowers("aten.elu.default")
def _elu(lw, node, a, alpha=1.0, scale=1.0, input_scale=1.0):
    b = lw.b
    x = a.name if input_scale == 1 else b.mul(a.name, lw.const(np.float32(input_scale)).name)
    y = b.op("Elu", [x], "elu", alpha=float(alpha))
    if scale != 1:  # SELU: scale * ELU
        y = b.mul(y, lw.const(np.float32(scale)).name, "selu")
    return lw.out(y, node.meta["val"])


@lowers("aten.elu_backward.default")
def _elu_backward(lw, node, g, alpha, scale, input_scale, is_result, v):
    b = lw.b
    c = lambda value: lw.const(np.float32(value)).name  # noqa: E731
    pos = b.op("Greater", [v.name, c(0)], "elu_pos")
    # Below zero d/dx = input_scale * alpha * scale * exp(input_scale x) = input_scale * (y + alpha * scale).
    if is_result:
        neg = b.mul(b.add(v.name, c(alpha * scale)), c(input_scale))
    else:
        neg = b.mul(c(input_scale * alpha * scale), b.op("Exp", [b.mul(v.name, c(input_scale))]))
    return lw.out(b.mul(g.name, b.op("Where", [pos, c(scale), neg]), "elu_grad"), node.meta["val"])


_SQRT_2_PI = float(np.sqrt(2.0 / np.pi))


@lowers("aten.gelu.default")
def _gelu(lw, node, a, approximate="none"):
    b = lw.b
    c = lambda value: lw.const(np.float32(value)).name  # noqa: E731
    if approximate == "tanh":
        inner = b.mul(c(_SQRT_2_PI), b.add(a.name, b.mul(c(0.044715), b.mul(a.name, b.mul(a.name, a.name)))))
        phi2 = b.add(c(1), b.op("Tanh", [inner]))
    else:
        phi2 = b.add(c(1), b.op("Erf", [b.mul(a.name, c(1 / np.sqrt(2.0)))]))
    return lw.out(b.mul(b.mul(c(0.5), a.name), phi2, "gelu"), node.meta["val"])


@lowers("aten.gelu_backward.default")
def _gelu_backward(lw, node, g, a, approximate="none"):
    b = lw.b
    c = lambda value: lw.const(np.float32(value)).name  # noqa: E731
    x = a.name
    if approximate == "tanh":
        x2 = b.mul(x, x)
        t = b.op("Tanh", [b.mul(c(_SQRT_2_PI), b.add(x, b.mul(c(0.044715), b.mul(x, x2))))])
        dinner = b.mul(c(_SQRT_2_PI), b.add(c(1), b.mul(c(3 * 0.044715), x2)))
        d = b.add(b.mul(c(0.5), b.add(c(1), t)), b.mul(b.mul(c(0.5), x), b.mul(b.sub(c(1), b.mul(t, t)), dinner)))
    else:
        cdf = b.mul(c(0.5), b.add(c(1), b.op("Erf", [b.mul(x, c(1 / np.sqrt(2.0)))])))
        pdf = b.mul(c(1 / np.sqrt(2 * np.pi)), b.op("Exp", [b.mul(c(-0.5), b.mul(x, x))]))
        d = b.add(cdf, b.mul(x, pdf))
    return lw.out(b.mul(g.name, d, "gelu_grad"), node.meta["val"])


def _pool_checks(op, ceil_mode, count_include_pad, padding, divisor_override):
    if ceil_mode or divisor_override is not None or (any(padding) and not count_include_pad):
        raise UnsupportedOperation(op, "only floor mode, no divisor override, padding counted in the average")


@lowers("aten.avg_pool2d.default")
def _avg_pool(lw, node, x, kernel, stride=(), padding=(0, 0), ceil_mode=False, count_include_pad=True, divisor_override=None):
    _pool_checks("aten.avg_pool2d.default", ceil_mode, count_include_pad, padding, divisor_override)
    k = list(kernel) * (2 // len(kernel))
    st = list(stride or k) * (2 // len(stride or k))
    pad = list(padding) * (2 // len(padding))
    y = lw.b.op("AveragePool", [x.name], "avgpool", kernel_shape=k, strides=st, pads=pad * 2, count_include_pad=1)
    return lw.out(y, node.meta["val"])


@lowers("aten.avg_pool2d_backward.default")
def _avg_pool_backward(lw, node, g, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    # The adjoint of an average pooling: each output's gradient spread evenly over its window, a depthwise
    # transposed convolution with a constant 1 / (kh kw) kernel.
    _pool_checks("aten.avg_pool2d_backward.default", ceil_mode, count_include_pad, padding, divisor_override)
    k = list(kernel) * (2 // len(kernel))
    st = list(stride or k) * (2 // len(stride or k))
    pad = list(padding) * (2 // len(padding))
    ch = x.shape[1]
    w = np.full((ch, 1, k[0], k[1]), 1.0 / (k[0] * k[1]), np.float32)
    extra = [int(x.shape[2 + i]) - ((int(g.shape[2 + i]) - 1) * st[i] - 2 * pad[i] + k[i]) for i in range(2)]
    attrs = {"kernel_shape": k, "strides": st, "pads": pad * 2, "group": int(ch)}
    if any(extra):
        attrs["output_padding"] = extra
    y = lw.b.op("ConvTranspose", [g.name, lw.const(w, "avg_w").name], "avgpool_grad", **attrs)
    return lw.out(y, node.meta["val"])


def _conv_attrs(w_shape, stride, padding, dilation, groups) -> dict:
    if len(w_shape) != 4:
        raise UnsupportedOperation("aten.convolution.default", f"only 2-D convolutions ({len(w_shape) - 2}-D here)")
    return {
        "kernel_shape": list(w_shape[2:]),
        "strides": list(stride),
        "pads": list(padding) * 2,
        "dilations": list(dilation),
        "group": int(groups),
    }


@lowers("aten.convolution.default")
def _convolution(lw, node, x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    if isinstance(w, Value):
        raise UnsupportedOperation("aten.convolution.default", "the weights must not depend on the input")
    wa = _np(w)
    attrs = _conv_attrs(wa.shape, stride, padding, dilation, groups)
    ins = [x.name, lw.const(wa, "w").name]
    if bias is not None:
        ins.append(lw.const(bias, "b").name)
    if transposed:
        if any(output_padding):
            attrs["output_padding"] = list(output_padding)
        return lw.out(lw.b.op("ConvTranspose", ins, "convT", **attrs), node.meta["val"])
    return lw.out(lw.b.op("Conv", ins, "conv", **attrs), node.meta["val"])


@lowers("aten.convolution_backward.default")
def _convolution_backward(lw, node, g, x, w, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, mask):
    if mask[1] or mask[2]:
        raise UnsupportedOperation("aten.convolution_backward.default", "a weight gradient (parameters must be constants)")
    wa = _np(w)
    attrs = _conv_attrs(wa.shape, stride, padding, dilation, groups)
    in_hw = x.shape[2:]
    k = wa.shape[2:]
    b = lw.b
    if transposed:
        # The input gradient of a transposed convolution is the convolution with the same weights.
        gin = b.op("Conv", [g.name, lw.const(wa, "w").name], "convT_grad", **attrs)
    elif list(stride) == [1, 1] and list(dilation) == [1, 1] and groups == 1 and all(p <= kk - 1 for p, kk in zip(padding, k)):
        # Stride 1: a plain Conv with flipped, transposed weights (faster than ConvTranspose on ORT's CPU).
        wf = np.ascontiguousarray(wa[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        pads = [k[0] - 1 - padding[0], k[1] - 1 - padding[1]] * 2
        gin = b.op("Conv", [g.name, lw.const(wf, "w_flip").name], "conv_grad", kernel_shape=list(k), pads=pads)
    else:
        out_hw = g.shape[2:]
        extra = [
            int(in_hw[i]) - ((int(out_hw[i]) - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k[i] - 1) + 1) for i in range(2)
        ]
        if any(e < 0 or e >= max(stride[i], dilation[i]) for i, e in enumerate(extra)):
            raise UnsupportedOperation("aten.convolution_backward.default", f"output padding {extra} out of range")
        if any(extra):
            attrs["output_padding"] = extra
        gin = b.op("ConvTranspose", [g.name, lw.const(wa, "w").name], "conv_grad", **attrs)
    return (lw.out(gin, node.meta["val"][0]), None, None)


def _bn_scale(weight, mean, var, eps):
    import torch

    scale = torch.rsqrt(var.to(torch.float64) + eps)
    if weight is not None:
        scale = scale * weight.to(torch.float64)
    return scale


def _per_channel(arr: np.ndarray, rank: int) -> np.ndarray:
    return arr.reshape((-1,) + (1,) * (rank - 2)).astype(np.float32)


@lowers("aten._native_batch_norm_legit_no_training.default")
def _batch_norm(lw, node, x, weight, bias, mean, var, momentum, eps):
    import torch

    scale = _bn_scale(weight, mean, var, eps)
    shift = -mean.to(torch.float64) * scale + (bias.to(torch.float64) if bias is not None else 0)
    b = lw.b
    y = b.add(
        b.mul(x.name, lw.const(_per_channel(scale.numpy(), x.rank), "bn_scale").name),
        lw.const(_per_channel(shift.numpy(), x.rank), "bn_shift").name,
        "bn",
    )
    return (lw.out(y, node.meta["val"][0]), None, None)


@lowers("aten.native_batch_norm_backward.default")
def _batch_norm_backward(lw, node, g, x, weight, mean, var, save_mean, save_invstd, train, eps, mask):
    if train:
        raise UnsupportedOperation("BatchNorm in training mode", "the model must be in eval mode (running statistics)")
    scale = _bn_scale(weight, mean, var, eps)
    gin = lw.b.mul(g.name, lw.const(_per_channel(scale.numpy(), g.rank), "bn_scale").name, "bn_grad")
    return (lw.out(gin, node.meta["val"][0]), None, None)


@lowers("aten.addmm.default")
def _addmm(lw, node, bias, a, m, beta=1, alpha=1):
    if beta != 1 or alpha != 1:
        raise UnsupportedOperation("aten.addmm.default", "only beta = alpha = 1")
    mm = lw.b.op("MatMul", [lw.tensor(a).name, lw.tensor(m).name], "mm")
    return lw.out(lw.b.add(mm, lw.tensor(bias).name, "linear"), node.meta["val"])


@lowers("aten.mm.default")
def _mm(lw, node, a, m):
    return lw.out(lw.b.op("MatMul", [lw.tensor(a).name, lw.tensor(m).name], "mm"), node.meta["val"])


@lowers("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default")
def _view(lw, node, x, shape):
    dims = lw.ints(shape)
    if x.shape and x.shape[0] is not None and dims and dims[0] == 0:
        if -1 in dims:
            raise UnsupportedOperation("aten.view.default", "a reshape that moves the batch out of a folded dimension and another")
        dims[0] = -1  # the input does not lead with the batch: infer it
    return lw.out(lw.b.op("Reshape", [x.name, lw.const(np.array(dims, np.int64), "shape").name], "reshape"), node.meta["val"])


@lowers("aten.expand.default")
def _expand(lw, node, x, sizes, implicit=False):
    v = lw.tensor(x)
    if any(isinstance(d, _BatchMultiple) for d in sizes):
        raise UnsupportedOperation("aten.expand.default", "an expansion to a size computed from the batch")
    dims = [1 if d is BATCH or d == -1 else int(d) for d in sizes]
    shape = lw.const(np.array(dims, np.int64), "shape").name
    if sizes and sizes[0] is BATCH and not (v.rank == len(sizes) and v.shape[0] is None):
        # A tensor without the batch (a constant) expanded to one: the batch size comes from the input.
        n = lw.b.op("Shape", [lw.batch_source], "batch", start=0, end=1)
        rest = lw.const(np.array(dims[1:], np.int64), "dims").name
        shape = lw.b.op("Concat", [n, rest], "expand_shape", axis=0)
    return lw.out(lw.b.op("Expand", [v.name, shape], "expand"), node.meta["val"])


@lowers("aten.permute.default")
def _permute(lw, node, x, dims):
    perm = [d % x.rank for d in dims]
    return lw.out(lw.b.op("Transpose", [x.name], "transpose", perm=perm), node.meta["val"])


@lowers("aten.t.default")
def _t(lw, node, x):
    return lw.out(lw.b.op("Transpose", [x.name], "transpose", perm=[1, 0]), node.meta["val"])


@lowers("aten.transpose.int")
def _transpose(lw, node, x, d0, d1):
    perm = list(range(x.rank))
    perm[d0 % x.rank], perm[d1 % x.rank] = perm[d1 % x.rank], perm[d0 % x.rank]
    return lw.out(lw.b.op("Transpose", [x.name], "transpose", perm=perm), node.meta["val"])


@lowers("aten.unsqueeze.default")
def _unsqueeze(lw, node, x, dim):
    axis = dim % (x.rank + 1)
    return lw.out(lw.b.op("Unsqueeze", [x.name, lw.const(np.array([axis], np.int64), "axes").name], "unsq"), node.meta["val"])


@lowers("aten.squeeze.dim")
def _squeeze(lw, node, x, dims):
    dims = [dims] if isinstance(dims, int) else list(dims)
    axes = [d % x.rank for d in dims if x.shape[d % x.rank] == 1]
    if not axes:
        return x
    return lw.out(lw.b.op("Squeeze", [x.name, lw.const(np.array(axes, np.int64), "axes").name], "sq"), node.meta["val"])


@lowers("aten.cat.default")
def _cat(lw, node, xs, dim=0):
    like = next(v for v in xs if isinstance(v, Value))
    vals = [lw.tensor(v, like) for v in xs]
    return lw.out(lw.b.op("Concat", [v.name for v in vals], "cat", axis=dim % vals[0].rank), node.meta["val"])


@lowers("aten.split_with_sizes.default", "aten.split.Tensor")
def _split(lw, node, x, sizes, dim=0):
    axis = dim % x.rank
    total = x.shape[axis]
    if isinstance(sizes, int):
        sizes = [sizes] * (total // sizes) + ([total % sizes] if total % sizes else [])
    outs = lw.b.op("Split", [x.name, lw.const(np.array(sizes, np.int64), "split").name], "split", n_out=len(sizes), axis=axis)
    outs = [outs] if isinstance(outs, str) else outs
    return tuple(lw.out(o, m) for o, m in zip(outs, node.meta["val"]))


@lowers("aten.slice.Tensor")
def _slice(lw, node, x, dim=0, start=None, end=None, step=1):
    axis = dim % x.rank
    size = x.shape[axis]
    start = 0 if start is None else start
    end = (size if size is not None else 2**62) if end is None else min(end, size if size is not None else end)
    parts = [np.array([v], np.int64) for v in (start, end, axis, step)]
    ins = [x.name] + [lw.const(p, "slice").name for p in parts]
    return lw.out(lw.b.op("Slice", ins, "slice"), node.meta["val"])


@lowers("aten.sum.dim_IntList", "aten.mean.dim")
def _reduce(lw, node, x, dims, keepdim=False, dtype=None):
    axes = np.array([d % x.rank for d in dims], np.int64)
    if "mean" in str(node.target):
        y = lw.b.op("ReduceMean", [x.name], "mean", axes=axes.tolist(), keepdims=int(keepdim))
    else:
        y = lw.b.op("ReduceSum", [x.name, lw.const(axes, "axes").name], "sum", keepdims=int(keepdim))
    return lw.out(y, node.meta["val"])


@lowers("aten._to_copy.default")
def _to_copy(lw, node, x, **kw):
    want = _dtype(node.meta["val"])
    if want == x.dtype:
        return x
    to = {"float": 1, "bool": 9, "int64": 7}[want]
    return lw.out(lw.b.op("Cast", [x.name], "cast", to=to), node.meta["val"])


@lowers(
    "aten.clone.default", "aten.detach.default", "aten.alias.default", "aten.lift_fresh_copy.default", "aten.contiguous.default"
)
def _identity(lw, node, x, *a, **kw):
    return x


@lowers("aten.slice_scatter.default")
def _slice_scatter(lw, node, base, src, dim=0, start=None, end=None, step=1):
    # base with src written into base[start:end] along dim (a slice's backward writes into zeros).
    out = _shape(node.meta["val"])
    axis = dim % len(out)
    size = out[axis]
    like = src if isinstance(src, Value) else None
    if size is None and step == 1 and (start or 0) == 0 and (end is None or end >= 2**31):
        return lw.out(lw.tensor(src, like).name, node.meta["val"])  # the whole batch axis: src itself
    if step != 1 or not isinstance(size, int):
        raise UnsupportedOperation("aten.slice_scatter.default", "only unit steps along a static axis")
    start = 0 if start is None else max(0, start if start >= 0 else start + size)
    end = size if end is None else min(size, end if end >= 0 else end + size)
    src_v = lw.tensor(src, like)
    parts = []
    if start > 0:
        parts.append(_slice_of(lw, base, out, axis, 0, start, like))
    parts.append(src_v.name)
    if end < size:
        parts.append(_slice_of(lw, base, out, axis, end, size, like))
    y = parts[0] if len(parts) == 1 else lw.b.op("Concat", parts, "slice_scatter", axis=axis)
    return lw.out(y, node.meta["val"])


def _slice_of(lw, base, shape: tuple, axis: int, start: int, end: int, like) -> str:
    if isinstance(base, _Zeros):
        part = list(shape)
        part[axis] = end - start
        return lw.zeros(tuple(part), like).name
    v = lw.tensor(base, like)
    ins = [v.name] + [lw.const(np.array([n], np.int64), "slice").name for n in (start, end, axis)]
    return lw.b.op("Slice", ins, "slice")


@lowers("aten.copy.default")
def _copy(lw, node, dst, src, non_blocking=False):
    # The functional form of dst.copy_(src): src, broadcast to dst's shape and cast to its dtype.
    out = _shape(node.meta["val"])
    v = lw.tensor(src, dst if isinstance(dst, Value) else None)
    name = v.name
    if v.shape != out:
        dims = [1 if d is None else d for d in out]
        name = lw.b.op("Expand", [name, lw.const(np.array(dims, np.int64), "shape").name], "copy")
    want = _dtype(node.meta["val"])
    if want != v.dtype:
        name = lw.b.op("Cast", [name], "cast", to={"float": 1, "bool": 9, "int64": 7}[want])
    return lw.out(name, node.meta["val"])


@lowers("aten.new_zeros.default", "aten.zeros.default", "aten.zeros_like.default")
def _zeros(lw, node, *a, **kw):
    return _Zeros(_shape(node.meta["val"]))


def _index_axes(indices) -> list[tuple[int, np.ndarray]]:
    """(axis, flat index table) for indices of the nearest-neighbour form [None, ..., I (H x 1), J (W)]."""
    taken = [(i, _np(t)) for i, t in enumerate(indices) if t is not None]
    if any(isinstance(t, Value) for _, t in taken):
        raise UnsupportedOperation("aten._unsafe_index.Tensor", "index tables that depend on the input")
    if len(taken) == 1 and taken[0][1].ndim == 1:
        return [(taken[0][0], taken[0][1].astype(np.int64))]
    if (
        len(taken) == 2
        and taken[0][1].ndim == 2
        and taken[0][1].shape[1] == 1
        and taken[1][1].ndim == 1
        and taken[1][0] == taken[0][0] + 1
    ):
        return [(taken[0][0], taken[0][1][:, 0].astype(np.int64)), (taken[1][0], taken[1][1].astype(np.int64))]
    raise UnsupportedOperation(
        "aten._unsafe_index.Tensor", "only separable row/column index tables (as nearest or bilinear resizing uses)"
    )


@lowers("aten._unsafe_index.Tensor")
def _index(lw, node, x, indices):
    y = x.name
    for axis, idx in _index_axes(indices):
        y = lw.b.op("Gather", [y, lw.const(idx % x.shape[axis], "idx").name], "gather", axis=axis)
    return lw.out(y, node.meta["val"])


@lowers("aten._unsafe_index_put.default")
def _index_put(lw, node, base, indices, values, accumulate=False):
    # The adjoint of a constant gather: scatter-add as products with one-hot matrices (R^T g C), or an
    # average pooling times the factor when the table is the integer-factor nearest-neighbour upsampling.
    if not accumulate:
        raise UnsupportedOperation("aten._unsafe_index_put.default", "only accumulating index_put (a gather's backward)")
    out_shape = _shape(node.meta["val"])
    axes = _index_axes(indices)
    b = lw.b
    y = values.name
    factors = [len(idx) // out_shape[a] if len(idx) % out_shape[a] == 0 else 0 for a, idx in axes]
    nearest = (
        len(axes) == 2
        and [a for a, _ in axes] == [2, 3]
        and all(f >= 1 and np.array_equal(idx, np.arange(len(idx)) // f) for f, (_, idx) in zip(factors, axes))
    )
    if nearest:
        k = factors
        y = b.op("AveragePool", [y], "unpool", kernel_shape=k, strides=k)
        y = b.mul(y, lw.const(np.float32(k[0] * k[1]), "pool_area").name, "unpool_sum")
    else:
        rank = values.rank
        for axis, idx in axes:
            onehot = np.zeros((len(idx), out_shape[axis]), np.float32)
            onehot[np.arange(len(idx)), idx % out_shape[axis]] = 1.0
            if axis == rank - 1:
                y = b.op("MatMul", [y, lw.const(onehot, "scatter").name], "scatter")
            elif axis == rank - 2:
                y = b.op("MatMul", [lw.const(np.ascontiguousarray(onehot.T), "scatter").name, y], "scatter")
            else:
                raise UnsupportedOperation("aten._unsafe_index_put.default", "only the last two axes")
    if isinstance(base, _Zeros):
        return lw.out(y, node.meta["val"])
    return lw.out(b.add(lw.tensor(base).name, y, "scatter_acc"), node.meta["val"])


def _op_name(target) -> str:
    return str(target) if not hasattr(target, "_schema") else f"aten.{target._schema.name.split('::')[-1]}.{target._overloadname}"


def _has(v, kinds) -> bool:
    if isinstance(v, (list, tuple)):
        return any(_has(x, kinds) for x in v)
    if isinstance(v, dict):
        return any(_has(x, kinds) for x in v.values())
    return isinstance(v, kinds)


def _is_size(meta) -> bool:
    import torch

    scalars = (int, float, torch.SymInt, torch.SymFloat)
    if isinstance(meta, (list, tuple)):
        return bool(meta) and all(isinstance(m, scalars) and not isinstance(m, bool) for m in meta)
    return isinstance(meta, scalars) and not isinstance(meta, bool)


def _concrete_size(meta):
    """A size argument: the batch symbol, or a plain int (every other dimension is static)."""
    import torch

    if isinstance(meta, (torch.SymInt, torch.SymFloat)):
        expr = meta.node.expr
        if expr.is_number:
            return int(expr) if isinstance(meta, torch.SymInt) else float(expr)
        if len(expr.free_symbols) == 1:
            sym = next(iter(expr.free_symbols))
            if expr == sym:
                return BATCH
            factor = expr / sym
            if factor.is_Integer and int(factor) > 0:
                return _BatchMultiple(int(factor))
        raise UnsupportedOperation("a size computed from the batch size", f"{expr}: keep the batch dimension as it is")
    return meta


def lower_graph(gm, b: GraphBuilder, x: str, g: str, owner=None) -> tuple[Value, Value, dict[str, Value]]:
    """Lower the traced (x, g) -> (f(x), J^T g) graph into `b` (inputs `x`, `g` already declared).

    `owner(node)` names the layer a node comes from, for the error of an unsupported operation.
    Returns the ONNX values of f(x) and of the input gradient, and every value emitted by name.
    """
    import torch
    from torch.fx.node import map_aggregate

    lw = Lowering(b)
    lw.batch_source = x
    env: dict = {}
    placeholders = iter((x, g))
    result = None

    def arg(a):
        return map_aggregate(a, lambda n: env[n] if isinstance(n, torch.fx.Node) else n)

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = lw.out(next(placeholders), node.meta["val"])
            continue
        if node.op == "get_attr":
            env[node] = getattr(gm, node.target)
            continue
        if node.op == "output":
            result = arg(node.args[0])
            break
        args, kwargs = arg(node.args), arg(node.kwargs)
        if node.target is operator.getitem:
            env[node] = args[0][args[1]]
            continue
        try:
            env[node] = _lower_node(lw, node, _op_name(node.target), args, kwargs)
        except UnsupportedOperation as exc:
            raise UnsupportedOperation(exc.op, exc.why, _where_from(owner, node)) from None
    recon, grad = result
    return recon, grad, lw.values


def _lower_node(lw: Lowering, node, name: str, args, kwargs):
    """The value of one call_function node: a size, a folded constant, or the lowering's ONNX value."""
    meta = node.meta.get("val")
    if _is_size(meta):  # Python arithmetic on sizes: static, or the batch passed on unchanged
        return [_concrete_size(m) for m in meta] if isinstance(meta, (list, tuple)) else _concrete_size(meta)
    if not any(_has(a, (Value, _Zeros, _Batch)) for a in (args, kwargs)):
        return node.target(*args, **kwargs)  # weights, index tables, shapes: folded here
    emit = LOWERINGS.get(name)
    if emit is None:
        raise UnsupportedOperation(name, "no lowering to plain ONNX")
    return emit(lw, node, *args, **kwargs)


def _where_from(owner, node) -> str:
    where = owner(node) if owner is not None else None
    if not where:
        return ""
    return f"the code {where}" if where.startswith("at ") else f"layer {where}"
