"""Activations and their backward operators (what autograd writes for them)."""

from __future__ import annotations

import numpy as np

from edgeproj.export.lowering.core import (
    lowers,
)


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
    mask = lw.b.op("Greater", [src, lw.scalar(0)], "lrelu_pos")
    factor = lw.b.op("Where", [mask, lw.scalar(1), lw.scalar(slope)], "lrelu_mask")
    return lw.out(lw.b.mul(g.name, factor, "lrelu_grad"), node.meta["val"])


@lowers("aten.threshold_backward.default")
def _threshold_backward(lw, node, g, x, threshold):
    mask = lw.b.op("Greater", [x.name, lw.scalar(threshold)], "relu_pos")
    return lw.out(lw.b.op("Where", [mask, g.name, lw.scalar(0)], "relu_grad"), node.meta["val"])


@lowers("aten.sigmoid_backward.default")
def _sigmoid_backward(lw, node, g, y):
    d = lw.b.mul(y.name, lw.b.sub(lw.scalar(1), y.name))
    return lw.out(lw.b.mul(g.name, d, "sigmoid_grad"), node.meta["val"])


@lowers("aten.tanh_backward.default")
def _tanh_backward(lw, node, g, y):
    d = lw.b.sub(lw.scalar(1), lw.b.mul(y.name, y.name))
    return lw.out(lw.b.mul(g.name, d, "tanh_grad"), node.meta["val"])


@lowers("aten.elu.default")
def _elu(lw, node, a, alpha=1.0, scale=1.0, input_scale=1.0):
    # PyTorch: scale * x above zero, scale * alpha * (exp(input_scale * x) - 1) below (SELU, CELU's form).
    b = lw.b
    c = lw.scalar
    if input_scale == 1:
        y = b.op("Elu", [a.name], "elu", alpha=float(alpha))
    else:
        neg = b.mul(c(alpha), b.sub(b.op("Exp", [b.mul(a.name, c(input_scale))]), c(1)))
        y = b.op("Where", [b.op("Greater", [a.name, c(0)]), a.name, neg], "elu")
    if scale != 1:
        y = b.mul(y, c(scale), "selu")
    return lw.out(y, node.meta["val"])


@lowers("aten.elu_backward.default")
def _elu_backward(lw, node, g, alpha, scale, input_scale, is_result, v):
    b = lw.b
    c = lw.scalar
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
    c = lw.scalar
    if approximate == "tanh":
        inner = b.mul(c(_SQRT_2_PI), b.add(a.name, b.mul(c(0.044715), b.mul(a.name, b.mul(a.name, a.name)))))
        phi2 = b.add(c(1), b.op("Tanh", [inner]))
    else:
        phi2 = b.add(c(1), b.op("Erf", [b.mul(a.name, c(1 / np.sqrt(2.0)))]))
    return lw.out(b.mul(b.mul(c(0.5), a.name), phi2, "gelu"), node.meta["val"])


@lowers("aten.gelu_backward.default")
def _gelu_backward(lw, node, g, a, approximate="none"):
    b = lw.b
    c = lw.scalar
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
