"""FLOPs of one graph evaluation, counted from the ONNX graph's inferred shapes (2 FLOPs per MAC)."""

from __future__ import annotations

import numpy as np


def count_flops(model, batch: int = 1) -> dict:
    """Multiply-accumulate FLOPs of Conv, ConvTranspose and MatMul nodes, and element-wise ops, at `batch`."""
    import onnx

    m = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    conv = mm = elem = 0
    for n in m.graph.node:
        out = shapes.get(n.output[0])
        if out is None:
            continue
        if n.op_type == "Conv":
            w = inits.get(n.input[1]) or shapes.get(n.input[1])
            conv += 2 * int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type == "ConvTranspose":
            w = inits.get(n.input[1]) or shapes.get(n.input[1])
            x = shapes[n.input[0]]
            conv += 2 * int(np.prod(x)) * int(np.prod(w[1:]))
        elif n.op_type in ("MatMul", "Gemm"):
            a = shapes.get(n.input[0]) or inits.get(n.input[0])
            mm += 2 * int(np.prod(out)) * int(a[-1])
        else:
            elem += int(np.prod(out))
    return {"batch": batch, "conv": conv, "matmul": mm, "elementwise": elem, "total": conv + mm + elem}
