"""Element-wise operators: arithmetic, comparisons, selections and clamps."""

from __future__ import annotations

from edgeproj.export.lowering.core import (
    LOWERINGS,
    Lowering,
    Value,
    lowers,
)


def _binary(onnx_op: str):
    def emit(lw: Lowering, node, a, b_, *rest, alpha=1):
        like = a if isinstance(a, Value) else (b_ if isinstance(b_, Value) else None)
        a_v, b_v = lw.tensor(a, like), lw.tensor(b_, like)
        if a_v.dtype != b_v.dtype:  # PyTorch promotes (a mask times an image): ONNX wants one type
            a_v, b_v = (lw.cast(v, "float") for v in (a_v, b_v))
        if alpha != 1:
            b_v = Value(lw.b.mul(b_v.name, lw.scalar(alpha)), b_v.shape, b_v.dtype)
        return lw.out(lw.b.op(onnx_op, [a_v.name, b_v.name], onnx_op.lower()), node.meta["val"])

    return emit


for _aten, _onnx in (
    ("add", "Add"),
    ("sub", "Sub"),
    ("mul", "Mul"),
    ("div", "Div"),
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
for _aten, _onnx in (("maximum", "Max"), ("minimum", "Min"), ("logical_and", "And")):
    LOWERINGS[f"aten.{_aten}.default"] = _binary(_onnx)


@lowers("aten.ne.Scalar", "aten.ne.Tensor")
def _ne(lw, node, a, b_):
    eq = _binary("Equal")(lw, node, a, b_)
    return lw.out(lw.b.op("Not", [eq.name], "ne"), node.meta["val"])


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
    return lw.out(lw.b.sub(lw.b.op("Exp", [a.name]), lw.scalar(1), "expm1"), node.meta["val"])


@lowers("aten.log1p.default")
def _log1p(lw, node, a):
    return lw.out(lw.b.op("Log", [lw.b.add(a.name, lw.scalar(1))], "log1p"), node.meta["val"])


@lowers("aten.pow.Tensor_Scalar")
def _pow(lw, node, a, e):
    if e == 2:
        return lw.out(lw.b.mul(a.name, a.name, "sq"), node.meta["val"])
    return lw.out(lw.b.op("Pow", [a.name, lw.scalar(e)], "pow"), node.meta["val"])


@lowers("aten.where.self")
def _where(lw, node, c, a, b_):
    like = a if isinstance(a, Value) else b_
    return lw.out(
        lw.b.op("Where", [lw.tensor(c).name, lw.tensor(a, like).name, lw.tensor(b_, like).name], "where"), node.meta["val"]
    )


def _clip(lw, node, a, lo, hi):
    ins = [a.name, "" if lo is None else lw.scalar(lo), "" if hi is None else lw.scalar(hi)]
    return lw.out(lw.b.op("Clip", ins, "clip"), node.meta["val"])


@lowers("aten.clamp.default")
def _clamp(lw, node, a, lo=None, hi=None):
    return _clip(lw, node, a, lo, hi)


@lowers("aten.clamp_min.default")
def _clamp_min(lw, node, a, lo):
    return _clip(lw, node, a, lo, None)


@lowers("aten.clamp_max.default")
def _clamp_max(lw, node, a, hi):
    return _clip(lw, node, a, None, hi)


@lowers("aten.hardtanh.default")
def _hardtanh(lw, node, a, lo=-1.0, hi=1.0):
    return _clip(lw, node, a, lo, hi)
