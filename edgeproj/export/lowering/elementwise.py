"""Element-wise operators: arithmetic, comparisons, selections and clamps."""

from __future__ import annotations

import numpy as np

from edgeproj.export.lowering.core import (
    LOWERINGS,
    Lowering,
    Value,
    lowers,
)


def _binary(onnx_op: str):
    def emit(lw: Lowering, node, a, b_, *rest, alpha=1):
        x = lw.tensor(a) if isinstance(a, Value) else None
        like = x or (b_ if isinstance(b_, Value) else None)
        a_v, b_v = lw.tensor(a, like), lw.tensor(b_, like)
        if a_v.dtype != b_v.dtype:  # PyTorch promotes (a mask times an image): ONNX wants one type
            a_v, b_v = (lw.cast(v, "float") for v in (a_v, b_v))
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
