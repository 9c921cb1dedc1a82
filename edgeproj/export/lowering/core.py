"""The lowering's values (ONNX values, the symbolic batch, symbolic zeros), its state and the operator registry."""

from __future__ import annotations

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
    "aten.reflection_pad2d.default": "use padding_mode='zeros' (or F.pad with a constant)",
    "aten.empty.memory_format": "a tensor written in place after it is made (circular padding does this); use "
    "padding_mode='zeros' (or F.pad with a constant)",
    "aten.replication_pad2d.default": "use padding_mode='zeros' (or F.pad with a constant)",
    "aten.bmm.default": "nn.Linear or matmul on a tensor of more than two dimensions: flatten to N x features first, "
    "or mix channels with a 1x1 Conv2d",
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


class BatchSize:
    """The symbolic batch size, as a size argument (view, expand, new_zeros)."""

    def __repr__(self):
        return "N"


BATCH = BatchSize()


@dataclass(frozen=True)
class BatchMultiple(BatchSize):
    """A size that is the batch times a constant (the batch folded into another dimension, as a Linear layer
    applied to a 4-D tensor does): a reshape may take it as -1."""

    factor: int


@dataclass(frozen=True)
class Zeros:
    """`new_zeros(...)`: kept symbolic (an accumulating index_put or a slice_scatter writes into it), made
    concrete only where another operator reads it."""

    shape: tuple


_DTYPES = {"float": np.float32, "bool": np.bool_, "int64": np.int64}
# The ONNX element type (TensorProto's code) of each dtype a Value may have.
ONNX_TYPES = {"float": 1, "bool": 9, "int64": 7}


def as_numpy(t) -> np.ndarray:
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
        arr = as_numpy(value)
        dtype = {"f": "float", "b": "bool"}.get(arr.dtype.kind, "int64")
        arr = arr.astype(_DTYPES[dtype])
        return Value(self.b.const(arr, hint, _DTYPES[dtype]), tuple(arr.shape), dtype)

    def scalar(self, value: float) -> str:
        """A float32 scalar initializer (shared by value), by name."""
        return self.const(np.float32(value)).name

    def tensor(self, v, like: Value | None = None) -> Value:
        """A Value for an argument that may be a Python number, a folded tensor or symbolic zeros."""
        if isinstance(v, Value):
            return v
        if isinstance(v, Zeros):
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

    def cast(self, v: Value, dtype: str) -> Value:
        """`v` as `dtype` (a Cast node, or `v` itself)."""
        if v.dtype == dtype:
            return v
        return Value(self.b.op("Cast", [v.name], "cast", to=ONNX_TYPES[dtype]), v.shape, dtype)

    def out(self, name: str, meta) -> Value:
        v = Value(name, shape_of(meta), dtype_of(meta))
        self.values[name] = v
        return v

    def ints(self, values) -> list[int]:
        """Reshape sizes: the batch as 0 (ONNX Reshape: copy the input's first dimension) when it leads, a
        multiple of the batch as -1 (inferred; at most one)."""
        out = []
        for i, v in enumerate(values):
            if v is BATCH and i == 0:
                out.append(0)
            elif isinstance(v, BatchSize):
                out.append(-1)
            else:
                out.append(int(v))
        if out.count(-1) > 1:
            raise UnsupportedOperation("aten.view.default", "a reshape with more than one size computed from the batch")
        return out


def shape_of(meta) -> tuple:
    """A traced tensor's shape: ints, None for the batch, a BatchMultiple where the batch is folded in."""
    import torch

    dims = []
    for d in meta.shape:
        if isinstance(d, torch.SymInt):
            size = size_value(d)
            dims.append(None if size is BATCH else size)
        else:
            dims.append(int(d))
    return tuple(dims)


def dtype_of(meta) -> str:
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


def is_size(meta) -> bool:
    import torch

    scalars = (int, float, torch.SymInt, torch.SymFloat)
    if isinstance(meta, (list, tuple)):
        return bool(meta) and all(isinstance(m, scalars) and not isinstance(m, bool) for m in meta)
    return isinstance(meta, scalars) and not isinstance(meta, bool)


def size_value(meta):
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
                return BatchMultiple(int(factor))
        raise UnsupportedOperation("a size computed from the batch size", f"{expr}: keep the batch dimension as it is")
    return meta
