"""A small ONNX graph builder: named inputs, initializers and nodes, with unique value names."""

from __future__ import annotations

import numpy as np

from edgeproj.errors import require

OPSET = 17


class GraphBuilder:
    """Accumulates nodes and initializers; `model()` returns a checked onnx.ModelProto."""

    def __init__(self, name: str):
        self.onnx = require("onnx", "train")
        self.name = name
        self.nodes: list = []
        self.initializers: list = []
        self.inputs: list = []
        self.outputs: list = []
        self._names: set[str] = set()
        self._consts: dict[tuple, str] = {}
        self.scope = ""  # node-name prefix; TensorRT keeps names, so a scope can pin layers to FP32

    def _unique(self, hint: str) -> str:
        # Value names carry a prefix so they never collide with graph inputs such as `step` or `lam`.
        base = f"v_{hint}"
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def _elem_type(self, dtype: str) -> int:
        return {"float": self.onnx.TensorProto.FLOAT, "bool": self.onnx.TensorProto.BOOL}[dtype]

    def input(self, name: str, shape: list, dtype: str = "float") -> str:
        """Declare a graph input (float32 or bool); string dims are symbolic (e.g. 'N')."""
        self._names.add(name)
        self.inputs.append(self.onnx.helper.make_tensor_value_info(name, self._elem_type(dtype), shape))
        return name

    def output(self, value: str, name: str, shape: list, dtype: str = "float") -> None:
        """Expose `value` as graph output `name` (through Identity when the names differ)."""
        if value != name:
            self._names.add(name)
            self.nodes.append(self.onnx.helper.make_node("Identity", [value], [name], name=f"out_{name}"))
        self.outputs.append(self.onnx.helper.make_tensor_value_info(name, self._elem_type(dtype), shape))

    def const(self, value, hint: str = "c", dtype=np.float32) -> str:
        """An initializer; small scalar/vector constants are shared by value."""
        arr = np.asarray(value, dtype=dtype)
        key = None
        if arr.size <= 8:
            key = (arr.dtype.str, arr.shape, arr.tobytes())
            if key in self._consts:
                return self._consts[key]
        name = self._unique(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        if key is not None:
            self._consts[key] = name
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, n_out: int = 1, **attrs):
        """Add a node; returns its output name (or a list when n_out > 1)."""
        outs = [self._unique(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(
            self.onnx.helper.make_node(op_type, inputs, outs, name=f"{self.scope}n{len(self.nodes)}_{op_type}", **attrs)
        )
        return outs[0] if n_out == 1 else outs

    # Shorthands for the element-wise algebra the loss heads and the optimizer are written in.
    def add(self, a, b, hint=None):
        return self.op("Add", [a, b], hint)

    def sub(self, a, b, hint=None):
        return self.op("Sub", [a, b], hint)

    def mul(self, a, b, hint=None):
        return self.op("Mul", [a, b], hint)

    def div(self, a, b, hint=None):
        return self.op("Div", [a, b], hint)

    def sum_chw(self, a, hint=None):
        """Per-sample sum over C, H, W: shape N."""
        return self.op("ReduceSum", [a, self.const([1, 2, 3], "axes_chw", np.int64)], hint, keepdims=0)

    def per_sample(self, a, hint=None):
        """Reshape an N vector to N x 1 x 1 x 1 for broadcasting against images."""
        return self.op("Unsqueeze", [a, self.const([1, 2, 3], "axes_chw", np.int64)], hint)

    def _live(self) -> tuple[list, list]:
        """The nodes and initializers the outputs depend on (the split graphs emit parts they do not use)."""
        needed = {o.name for o in self.outputs}
        nodes = []
        for node in reversed(self.nodes):
            if needed.intersection(node.output):
                nodes.append(node)
                needed.update(node.input)
        return nodes[::-1], [t for t in self.initializers if t.name in needed]

    def model(self, doc: str = ""):
        """The checked ModelProto (full check, shapes inferred), without nodes no output depends on."""
        onnx = self.onnx
        nodes, initializers = self._live()
        graph = onnx.helper.make_graph(nodes, self.name, self.inputs, self.outputs, initializers)
        model = onnx.helper.make_model(
            graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="edgeproj", doc_string=doc
        )
        model.ir_version = 8  # readable by ONNX Runtime >= 1.14 and TensorRT 10.x parsers
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(model, full_check=True)
        return model
