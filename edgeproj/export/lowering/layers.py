"""Layers and their input gradients: convolutions, BatchNorm in eval mode, dense products, pooling, resampling.

The input gradient of a convolution is a transposed convolution with the same weights and vice versa; BatchNorm
in eval mode is a per-channel scale; the backward of a gather with constant index tables (nearest or bilinear
resizing) is an average pooling or products with constant one-hot matrices.
"""

from __future__ import annotations

import numpy as np

from edgeproj.export.lowering.core import (
    UnsupportedOperation,
    Value,
    Zeros,
    as_numpy,
    lowers,
    shape_of,
)


def _pool_checks(op, ceil_mode, count_include_pad, padding, divisor_override):
    if ceil_mode or divisor_override is not None or (any(padding) and not count_include_pad):
        raise UnsupportedOperation(op, "only floor mode, no divisor override, padding counted in the average")


def _pool_geometry(kernel, stride, padding) -> tuple[list[int], list[int], list[int]]:
    """Kernel, strides and pads as two values each (PyTorch allows one for both axes; no stride = the kernel)."""
    k = list(kernel) * (2 // len(kernel))
    st = list(stride or k) * (2 // len(stride or k))
    return k, st, list(padding) * (2 // len(padding))


@lowers("aten.avg_pool2d.default")
def _avg_pool(lw, node, x, kernel, stride=(), padding=(0, 0), ceil_mode=False, count_include_pad=True, divisor_override=None):
    _pool_checks("aten.avg_pool2d.default", ceil_mode, count_include_pad, padding, divisor_override)
    k, st, pad = _pool_geometry(kernel, stride, padding)
    y = lw.b.op("AveragePool", [x.name], "avgpool", kernel_shape=k, strides=st, pads=pad * 2, count_include_pad=1)
    return lw.out(y, node.meta["val"])


@lowers("aten.avg_pool2d_backward.default")
def _avg_pool_backward(lw, node, g, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    # The adjoint of an average pooling: each output's gradient spread evenly over its window, a depthwise
    # transposed convolution with a constant 1 / (kh kw) kernel.
    _pool_checks("aten.avg_pool2d_backward.default", ceil_mode, count_include_pad, padding, divisor_override)
    k, st, pad = _pool_geometry(kernel, stride, padding)
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
    wa = as_numpy(w)
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
    wa = as_numpy(w)
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


def _index_axes(indices) -> list[tuple[int, np.ndarray]]:
    """(axis, flat index table) for indices of the nearest-neighbour form [None, ..., I (H x 1), J (W)]."""
    taken = [(i, as_numpy(t)) for i, t in enumerate(indices) if t is not None]
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


def _nearest_factors(axes, sizes: list[int]) -> list[int] | None:
    """The integer factors when the index tables are nearest-neighbour upsampling of the last two axes
    (table = arange(size * f) // f), else None."""
    if [a for a, _ in axes] != [2, 3]:
        return None
    factors = [len(idx) // n if n and len(idx) % n == 0 else 0 for (_, idx), n in zip(axes, sizes)]
    ok = all(f >= 1 and np.array_equal(idx, np.arange(len(idx)) // f) for f, (_, idx) in zip(factors, axes))
    return factors if ok else None


@lowers("aten._unsafe_index.Tensor")
def _index(lw, node, x, indices):
    # A gather with constant tables along the last two axes. Nearest upsampling by integer factors is an ONNX
    # Resize (nearest, asymmetric, floor: PyTorch's rule); other tables (a bilinear resize's corners) are
    # products with one-hot matrices. ONNX Runtime's Gather on an inner axis measured far slower: 7.2 ms of a
    # 21 ms step where Resize takes 1.1 ms (UpsampleAE), 16 ms of a 36 ms step before the products (DeepRGBAE).
    axes = _index_axes(indices)
    b = lw.b
    factors = _nearest_factors(axes, [x.shape[2], x.shape[3]]) if x.rank == 4 else None
    if factors:
        scales = lw.const(np.array([1, 1, *factors], np.float32), "scales").name
        y = b.op("Resize", [x.name, "", scales], "upsample", mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")  # fmt: skip
        return lw.out(y, node.meta["val"])
    y = x.name
    for axis, idx in axes:
        size = x.shape[axis]
        onehot = np.zeros((size, len(idx)), np.float32)  # in x out
        onehot[idx % size, np.arange(len(idx))] = 1.0
        if axis == x.rank - 1:
            y = b.op("MatMul", [y, lw.const(onehot, "gather").name], "gather")
        elif axis == x.rank - 2:
            y = b.op("MatMul", [lw.const(np.ascontiguousarray(onehot.T), "gather").name, y], "gather")
        else:
            y = b.op("Gather", [y, lw.const(idx % size, "idx").name], "gather", axis=axis)
    return lw.out(y, node.meta["val"])


@lowers("aten._unsafe_index_put.default")
def _index_put(lw, node, base, indices, values, accumulate=False):
    # The adjoint of a constant gather: scatter-add as products with one-hot matrices (R^T g C), or an
    # average pooling times the factor when the table is the integer-factor nearest-neighbour upsampling.
    if not accumulate:
        raise UnsupportedOperation("aten._unsafe_index_put.default", "only accumulating index_put (a gather's backward)")
    out_shape = shape_of(node.meta["val"])
    axes = _index_axes(indices)
    b = lw.b
    y = values.name
    k = _nearest_factors(axes, [out_shape[a] for a, _ in axes])
    if k:
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
    if isinstance(base, Zeros):
        return lw.out(y, node.meta["val"])
    return lw.out(b.add(lw.tensor(base).name, y, "scatter_acc"), node.meta["val"])
