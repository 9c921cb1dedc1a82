"""Shape operators, copies and zeros: reshapes keep the batch first (0 in ONNX Reshape), or infer it (-1)."""

from __future__ import annotations

import numpy as np

from edgeproj.export.lowering.core import (
    BATCH,
    BatchMultiple,
    UnsupportedOperation,
    Value,
    Zeros,
    dtype_of,
    lowers,
    shape_of,
)


@lowers("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default")
def _view(lw, node, x, shape):
    dims = lw.ints(shape)
    if x.shape and x.shape[0] is not None and dims and dims[0] == 0:
        if -1 in dims:
            raise UnsupportedOperation(
                "aten.view.default", "a reshape that moves the batch out of a folded dimension and another"
            )
        dims[0] = -1  # the input does not lead with the batch: infer it
    return lw.out(lw.b.op("Reshape", [x.name, lw.const(np.array(dims, np.int64), "shape").name], "reshape"), node.meta["val"])


@lowers("aten.expand.default")
def _expand(lw, node, x, sizes, implicit=False):
    v = lw.tensor(x)
    if any(isinstance(d, BatchMultiple) for d in sizes):
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
    v = lw.cast(x, dtype_of(node.meta["val"]))
    return x if v is x else lw.out(v.name, node.meta["val"])


@lowers(
    "aten.clone.default", "aten.detach.default", "aten.alias.default", "aten.lift_fresh_copy.default", "aten.contiguous.default"
)
def _identity(lw, node, x, *a, **kw):
    return x


@lowers("aten.slice_scatter.default")
def _slice_scatter(lw, node, base, src, dim=0, start=None, end=None, step=1):
    # base with src written into base[start:end] along dim (a slice's backward writes into zeros).
    out = shape_of(node.meta["val"])
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
    if isinstance(base, Zeros):
        part = list(shape)
        part[axis] = end - start
        return lw.zeros(tuple(part), like).name
    v = lw.tensor(base, like)
    ins = [v.name] + [lw.const(np.array([n], np.int64), "slice").name for n in (start, end, axis)]
    return lw.b.op("Slice", ins, "slice")


@lowers("aten.copy.default")
def _copy(lw, node, dst, src, non_blocking=False):
    # The functional form of dst.copy_(src): src, broadcast to dst's shape and cast to its dtype.
    out = shape_of(node.meta["val"])
    v = lw.tensor(src, dst if isinstance(dst, Value) else None)
    name = v.name
    if v.shape != out:
        dims = [1 if d is None else d for d in out]
        name = lw.b.op("Expand", [name, lw.const(np.array(dims, np.int64), "shape").name], "copy")
    return lw.out(lw.cast(Value(name, v.shape, v.dtype), dtype_of(node.meta["val"])).name, node.meta["val"])


@lowers("aten.new_zeros.default", "aten.zeros.default", "aten.zeros_like.default")
def _zeros(lw, node, *a, **kw):
    return Zeros(shape_of(node.meta["val"]))


@lowers("aten.constant_pad_nd.default")
def _constant_pad(lw, node, x, pad, value=0.0):
    # torch lists (begin, end) from the last axis backwards; ONNX all begins then all ends. Negative pads crop
    # (the backward of a padding is the padding with its signs flipped).
    rank = x.rank
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):
        axis = rank - 1 - i
        begins[axis], ends[axis] = int(pad[2 * i]), int(pad[2 * i + 1])
    pads = lw.const(np.array(begins + ends, np.int64), "pads").name
    y = lw.b.op("Pad", [x.name, pads, lw.const(np.float32(value), "pad_value").name], "pad", mode="constant")
    return lw.out(y, node.meta["val"])
