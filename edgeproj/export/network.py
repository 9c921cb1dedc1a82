"""The autoencoder as ONNX nodes: forward pass and its hand-written vector-Jacobian product.

The backward ops are written the way ONNX Runtime's CPU kernels run fastest (edge-facts.md):
LeakyReLU's backward is a multiply by a precomputed 1/0.2 mask, and a stride-1 convolution's input
gradient is a plain Conv with flipped, transposed weights. Stride-2 transposed convolutions (decoder
forward, encoder backward) stay ConvTranspose by default; they can also be emitted as phase
convolutions and a DepthToSpace ("phase": four 2x2 Convs, "phase3": one 3x3 Conv). Measured on ONNX
Runtime 1.32, 2 CPU cores, batch 1: native 4.9 ms, phase3 6.3 ms, phase 7.8 ms per step, so native
is the default; the phase forms remain for runtimes whose ConvTranspose is weak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeproj.export.builder import GraphBuilder

CONVTRANSPOSE_MODES = ("native", "phase", "phase3")
# What the backward of a layer kind needs from its forward, and its dtype.
_KEEPS = {"lrelu": "bool", "sigmoid": "float"}


@dataclass(frozen=True)
class Layer:
    """One layer of the plan: kind in conv, convT, lrelu, sigmoid, dense_in, dense_out."""

    kind: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: int = 1
    pad: int = 0
    slope: float = 0.2
    shape: tuple = ()  # dense_out: (channels, h, w) of the reshaped output


def plan_from_model(model) -> list[Layer]:
    """The deterministic reconstruction x -> f(x) of a ConvAutoencoder as a flat layer list (float32)."""
    from torch import nn

    def np32(t):
        return t.detach().cpu().numpy().astype(np.float32)

    def convert(mod) -> Layer:
        if isinstance(mod, nn.Conv2d):
            return Layer("conv", np32(mod.weight), np32(mod.bias), mod.stride[0], mod.padding[0])
        if isinstance(mod, nn.ConvTranspose2d):
            return Layer("convT", np32(mod.weight), np32(mod.bias), mod.stride[0], mod.padding[0])
        if isinstance(mod, nn.LeakyReLU):
            return Layer("lrelu", slope=float(mod.negative_slope))
        if isinstance(mod, nn.Sigmoid):
            return Layer("sigmoid")
        raise TypeError(f"no ONNX emitter for layer {type(mod).__name__}")

    z = model.config.latent
    layers = [convert(m) for m in model.encoder]
    # 8x8 latent conv on an 8x8 map is a dense layer; VAEs keep only the mean half.
    w_lat, b_lat = np32(model.to_latent.weight)[:z], np32(model.to_latent.bias)[:z]
    layers.append(Layer("dense_in", w_lat.reshape(z, -1).T.copy(), b_lat))
    first, *rest = list(model.decoder)
    wd = np32(first.weight)  # (z, w, 8, 8)
    layers.append(
        Layer("dense_out", wd.reshape(z, -1).copy(), np.repeat(np32(first.bias), wd.shape[2] * wd.shape[3]), shape=wd.shape[1:])
    )
    layers += [convert(m) for m in rest]
    return layers


def _phase_weights(w: np.ndarray) -> list[tuple[np.ndarray, list[int]]]:
    """Split a k4 s2 p1 ConvTranspose weight (Cin, Cout, 4, 4) into four 2x2 Conv weights and pads.

    Output pixel (2i+r, 2j+s) sees input rows i-1, i (r = 0: kernel rows 3, 1) or i, i+1
    (r = 1: kernel rows 2, 0); likewise for columns. Order (r, s) = 00, 01, 10, 11 matches
    DepthToSpace's DCR layout.
    """
    taps = {0: ([3, 1], (1, 0)), 1: ([2, 0], (0, 1))}  # kernel indices for offsets, (pad before, after)
    out = []
    for r in (0, 1):
        for s in (0, 1):
            rows, (pt, pb) = taps[r]
            cols, (pl, pr) = taps[s]
            k = w[:, :, rows][:, :, :, cols]  # Cin, Cout, 2, 2
            out.append((np.ascontiguousarray(k.transpose(1, 0, 2, 3)), [pt, pl, pb, pr]))
    return out


def _phase3_weight(w: np.ndarray) -> np.ndarray:
    """The four phase kernels of a k4 s2 p1 ConvTranspose packed into one 3x3 Conv (4 * Cout outputs).

    Output channel (r * 2 + s) * Cout + co holds phase (r, s); offsets -1, 0, +1 map to 3x3 taps 0, 1, 2.
    """
    cin, cout = w.shape[:2]
    taps = {0: {0: 3, 1: 1}, 1: {1: 2, 2: 0}}  # phase -> {3x3 tap: kernel index}
    out = np.zeros((4, cout, cin, 3, 3), np.float32)
    for r in (0, 1):
        for s in (0, 1):
            for ty, ky in taps[r].items():
                for tx, kx in taps[s].items():
                    out[r * 2 + s, :, :, ty, tx] = w[:, :, ky, kx].T
    return out.reshape(4 * cout, cin, 3, 3)


def conv_transpose(
    b: GraphBuilder, h: str, w: np.ndarray, bias: np.ndarray | None, stride: int, pad: int, mode: str, hint: str
) -> str:
    """ConvTranspose as an ONNX ConvTranspose, or (k4 s2 p1) as phase convolutions + DepthToSpace:
    'phase' = four 2x2 Convs, 'phase3' = one 3x3 Conv with the four phases as output channels."""
    if mode == "phase3" and stride == 2 and pad == 1 and w.shape[2:] == (4, 4):
        ins = [h, b.const(_phase3_weight(w), f"{hint}_ph3")]
        if bias is not None:
            ins.append(b.const(np.tile(bias, 4), f"{hint}_b4"))
        y = b.op("Conv", ins, f"{hint}_ph3", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        return b.op("DepthToSpace", [y], hint, blocksize=2, mode="DCR")
    if mode == "phase" and stride == 2 and pad == 1 and w.shape[2:] == (4, 4):
        parts = []
        for i, (k, pads) in enumerate(_phase_weights(w)):
            ins = [h, b.const(k, f"{hint}_ph{i}")]
            if bias is not None:
                ins.append(b.const(bias, f"{hint}_b"))
            parts.append(b.op("Conv", ins, f"{hint}_ph", kernel_shape=[2, 2], pads=pads))
        cat = b.op("Concat", parts, f"{hint}_cat", axis=1)
        return b.op("DepthToSpace", [cat], hint, blocksize=2, mode="DCR")
    ins = [h, b.const(w, f"{hint}_w")]
    if bias is not None:
        ins.append(b.const(bias, f"{hint}_b"))
    k = list(w.shape[2:])
    return b.op("ConvTranspose", ins, hint, kernel_shape=k, strides=[stride] * 2, pads=[pad] * 4)


class NetworkEmitter:
    """Emits f(x) and, after it, J_f(x)^T g for a layer plan."""

    def __init__(self, layers: list[Layer], convtranspose: str = "native"):
        if convtranspose not in CONVTRANSPOSE_MODES:
            raise ValueError(f"convtranspose must be one of {CONVTRANSPOSE_MODES}")
        self.layers = layers
        self.mode = convtranspose
        self._saved: list = []

    def forward(self, b: GraphBuilder, x: str) -> str:
        self._saved = []
        h = x
        for i, L in enumerate(self.layers):
            tag = f"f{i}"
            saved = None
            if L.kind == "conv":
                k = list(L.weight.shape[2:])
                h = b.op(
                    "Conv",
                    [h, b.const(L.weight, f"{tag}_w"), b.const(L.bias, f"{tag}_b")],
                    tag,
                    kernel_shape=k,
                    strides=[L.stride] * 2,
                    pads=[L.pad] * 4,
                )
            elif L.kind == "convT":
                h = conv_transpose(b, h, L.weight, L.bias, L.stride, L.pad, self.mode, tag)
            elif L.kind == "lrelu":
                # The mask is what the backward needs: 1 where the input was positive, else the slope.
                # The mask is read from the output, not the input: the conv's only consumer is then the
                # LeakyRelu, which ONNX Runtime fuses into it (y > 0 iff h > 0 needs slope >= 0).
                if L.slope < 0:
                    raise ValueError(f"LeakyReLU slope {L.slope} < 0: the backward mask needs a non-negative slope")
                h = b.op("LeakyRelu", [h], tag, alpha=L.slope)
                saved = b.op("Greater", [h, b.const(0.0, "zero")], f"{tag}_pos")  # bool: 4x less to hand over
            elif L.kind == "sigmoid":
                h = b.op("Sigmoid", [h], tag)
                saved = h
            elif L.kind == "dense_in":
                flat = b.op("Flatten", [h], f"{tag}_flat", axis=1)
                h = b.add(b.op("MatMul", [flat, b.const(L.weight, f"{tag}_w")], f"{tag}_mm"), b.const(L.bias, f"{tag}_b"), tag)
            elif L.kind == "dense_out":
                mm = b.add(b.op("MatMul", [h, b.const(L.weight, f"{tag}_w")], f"{tag}_mm"), b.const(L.bias, f"{tag}_b"))
                h = b.op("Reshape", [mm, b.const([-1, *L.shape], f"{tag}_shape", np.int64)], tag)
            else:
                raise ValueError(f"unknown layer kind {L.kind}")
            self._saved.append(saved)
        return h

    def kept(self) -> list[tuple[int, str]]:
        """The layers whose forward value the backward needs, with its dtype: (layer index, "bool" for a
        LeakyReLU's output sign, "float" for a sigmoid's output)."""
        return [(i, _KEEPS[L.kind]) for i, L in enumerate(self.layers) if L.kind in _KEEPS]

    def is_recon(self, layer: int) -> bool:
        """Whether the value kept at `layer` is f(x) itself (a final sigmoid's output)."""
        return layer == len(self.layers) - 1 and self.layers[layer].kind == "sigmoid"

    def saved(self, layer: int) -> str:
        """The value the last `forward` kept for the backward at `layer` (one of `kept`)."""
        return self._saved[layer]

    def use_saved(self, values: dict[int, str]) -> None:
        """Take the kept values from elsewhere (the update graph's inputs) instead of a `forward` here."""
        missing = [i for i, _ in self.kept() if i not in values]
        if missing:
            raise ValueError(f"no saved value for layers {missing}")
        self._saved = [values.get(i) for i in range(len(self.layers))]

    def saved_shapes(self, channels: int, size: int) -> dict[int, list]:
        """The per-sample shape of each layer's output (what `saved` holds), from an input C x size x size."""
        shape: tuple = (channels, size, size)
        shapes = {}
        for i, L in enumerate(self.layers):
            if L.kind == "conv":
                k = L.weight.shape[2]
                hw = (shape[1] + 2 * L.pad - k) // L.stride + 1
                shape = (L.weight.shape[0], hw, hw)
            elif L.kind == "convT":
                k = L.weight.shape[2]
                hw = (shape[1] - 1) * L.stride - 2 * L.pad + k
                shape = (L.weight.shape[1], hw, hw)
            elif L.kind == "dense_in":
                shape = (L.weight.shape[1],)
            elif L.kind == "dense_out":
                shape = tuple(L.shape)
            shapes[i] = ["N", *shape]
        return shapes

    def backward(self, b: GraphBuilder, g: str) -> str:
        """Vector-Jacobian product of the last `forward`: returns J^T g with the input's shape."""
        for i in reversed(range(len(self.layers))):
            L, saved, tag = self.layers[i], self._saved[i], f"b{i}"
            if L.kind == "conv":
                k = L.weight.shape[2]
                if L.stride == 1:
                    w_flip = np.ascontiguousarray(L.weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
                    g = b.op("Conv", [g, b.const(w_flip, f"{tag}_w")], tag, kernel_shape=[k, k], pads=[k - 1 - L.pad] * 4)
                else:
                    g = conv_transpose(b, g, L.weight, None, L.stride, L.pad, self.mode, tag)
            elif L.kind == "convT":
                k = L.weight.shape[2]
                g = b.op(
                    "Conv", [g, b.const(L.weight, f"{tag}_w")], tag, kernel_shape=[k, k], strides=[L.stride] * 2, pads=[L.pad] * 4
                )
            elif L.kind == "lrelu":
                mask = b.op("Where", [saved, b.const(1.0, "one"), b.const(L.slope, "slope")], f"{tag}_mask")
                g = b.mul(g, mask, tag)
            elif L.kind == "sigmoid":
                g = b.mul(g, b.mul(saved, b.sub(b.const(1.0, "one"), saved)), tag)
            elif L.kind == "dense_in":
                mm = b.op("MatMul", [g, b.const(np.ascontiguousarray(L.weight.T), f"{tag}_wt")], f"{tag}_mm")
                g = b.op("Reshape", [mm, b.const(self._flat_shape, f"{tag}_shape", np.int64)], tag)
            elif L.kind == "dense_out":
                flat = b.op("Flatten", [g], f"{tag}_flat", axis=1)
                g = b.op("MatMul", [flat, b.const(np.ascontiguousarray(L.weight.T), f"{tag}_wt")], tag)
        return g

    @property
    def _flat_shape(self) -> list[int]:
        dense_in = next(L for L in self.layers if L.kind == "dense_in")
        c = next(L for L in reversed(self.layers[: self.layers.index(dense_in)]) if L.kind == "conv").weight.shape[0]
        hw = int(round((dense_in.weight.shape[0] / c) ** 0.5))
        return [-1, c, hw, hw]
