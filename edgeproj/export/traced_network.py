"""Any PyTorch autoencoder as ONNX nodes: forward pass and input vector-Jacobian product, traced, not hand-written.

`TracedNetwork` is the generic counterpart of `edgeproj.export.network.NetworkEmitter` with the same
interface, so the energy, the heads and the optimizer tail (edgeproj.export.energy) emit the same graph
family from it. The traced graph (edgeproj.export.tracing) is lowered once (edgeproj.export.lowering)
into a scratch graph with inputs x and g; its nodes are split by whether they depend on g:
  forward side:  f(x), and whatever the backward reads that depends on x only (activation signs, ...)
  backward side: J_f(x)^T g
`forward` and `backward` copy the two sides into the graph being built. The forward-side values the
backward reads are what the forward graph hands to the update graph (`kept`).
"""

from __future__ import annotations

import numpy as np

from edgeproj.errors import ConfigError
from edgeproj.export.builder import GraphBuilder


class TracedNetwork:
    """Emits f(x) and J_f(x)^T g for a traced model (eval mode; the contract in edgeproj.export.tracing)."""

    def __init__(self, model, channels: int, size: int, name: str = "the model"):
        import onnx

        from edgeproj.export.lowering import lower_graph
        from edgeproj.export.tracing import check_contract, layer_names, trace_vjp

        model = model.eval()
        check_contract(model, channels, size, name)
        gm = trace_vjp(model, channels, size)
        scratch = GraphBuilder("traced")
        shape = ["N", channels, size, size]
        x, g = scratch.input("x", shape), scratch.input("g", shape)
        # Layers are named as in the user's own module (not under edgeproj's wrapper).
        named = getattr(model, "net", model)
        recon, grad, values = lower_graph(gm, scratch, x, g, layer_names(named, channels, size))
        self._x, self._g = x, g
        self._recon, self._grad = recon.name, grad.name
        self._consts = {t.name: onnx.numpy_helper.to_array(t) for t in scratch.initializers}
        nodes = _live(scratch.nodes, {recon.name, grad.name})
        on_g = {g}
        for node in nodes:
            if on_g.intersection(node.input):
                on_g.update(node.output)
        self._fwd = [n for n in nodes if not on_g.intersection(n.output)]
        self._bwd = [n for n in nodes if on_g.intersection(n.output)]
        fwd_values = {x} | {o for n in self._fwd for o in n.output}
        read = []
        for node in self._bwd:
            for i in node.input:
                if i in fwd_values and i not in read:
                    read.append(i)
        self._kept_names = read
        self._kept = _value_types(scratch, read, values)
        if any(not self._kept[n][0] or self._kept[n][0][0] is not None for n in read):
            # The runtime hands kept values over row by row (a batch finishes sample by sample).
            raise ConfigError(
                f"cannot export {name}: it folds the batch into another dimension between its forward pass and its "
                "backward (e.g. nn.Linear applied to an N x H x W x C tensor); keep the batch as the first dimension "
                "(a 1x1 Conv2d mixes channels)"
            )
        self.op_types = sorted({n.op_type for n in nodes})
        self._saved: dict[int, str] = {}

    # --- the NetworkEmitter interface -------------------------------------------------------------
    def forward(self, b: GraphBuilder, x: str) -> str:
        rename = _replay(b, self._fwd, {self._x: x}, self._consts)
        self._saved = {i: rename[name] for i, name in enumerate(self._kept_names)}
        return rename[self._recon]

    def backward(self, b: GraphBuilder, g: str) -> str:
        rename = {self._g: g, **{name: self._saved[i] for i, name in enumerate(self._kept_names)}}
        return _replay(b, self._bwd, rename, self._consts)[self._grad]

    def kept(self) -> list[tuple[int, str]]:
        """The forward-side values the backward reads, as (key, dtype)."""
        return [(i, self._kept[name][1]) for i, name in enumerate(self._kept_names)]

    def is_recon(self, key: int) -> bool:
        """Whether kept value `key` is f(x) itself (the update graph reads it from `recon`)."""
        return self._kept_names[key] == self._recon

    def saved(self, key: int) -> str:
        return self._saved[key]

    def use_saved(self, values: dict[int, str]) -> None:
        missing = [i for i, _ in self.kept() if i not in values]
        if missing:
            raise ValueError(f"no saved value for {missing}")
        self._saved = dict(values)

    def saved_shapes(self, channels: int, size: int) -> dict[int, list]:
        return {i: ["N", *self._kept[name][0][1:]] for i, name in enumerate(self._kept_names)}


def _value_types(scratch: GraphBuilder, names: list[str], known: dict) -> dict[str, tuple[tuple, str]]:
    """(shape, dtype) of each of `names`: from the lowering where it named the value, else from ONNX's
    shape inference over the scratch graph (values inside one operator's lowering)."""
    import onnx

    from edgeproj.export.lowering.core import ONNX_TYPES

    out = {n: (known[n].shape, known[n].dtype) for n in names if n in known}
    rest = [n for n in names if n not in out]
    if rest:
        graph = onnx.helper.make_graph(
            scratch.nodes,
            "scratch",
            scratch.inputs,
            [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in rest],
            scratch.initializers,
        )
        # The lowering's own shapes seed the inference (an op such as Resize would otherwise lose the batch's name).
        graph.value_info.extend(
            onnx.helper.make_tensor_value_info(v.name, ONNX_TYPES[v.dtype], ["N" if d is None else d for d in v.shape])
            for v in known.values()
            if all(d is None or isinstance(d, int) for d in v.shape) and v.name not in {i.name for i in scratch.inputs}
        )
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        except Exception as exc:  # a lowering that wrote inconsistent nodes: name it, no traceback
            raise ConfigError(f"the lowered graph does not check ({str(exc).splitlines()[0][:300]})") from None
        types = {v.name: v.type.tensor_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        kinds = {code: dtype for dtype, code in ONNX_TYPES.items()}
        for n in rest:
            t = types[n]
            # "N" is the batch; any other unknown dimension (a reshape that folded the batch in) is "?".
            dims = tuple(d.dim_value if d.HasField("dim_value") else (None if d.dim_param == "N" else "?") for d in t.shape.dim)
            out[n] = (dims, kinds[t.elem_type])
    return out


def _live(nodes: list, needed: set[str]) -> list:
    out = []
    needed = set(needed)
    for node in reversed(nodes):
        if needed.intersection(node.output):
            out.append(node)
            needed.update(node.input)
    return out[::-1]


def _replay(b: GraphBuilder, nodes: list, rename: dict[str, str], consts: dict[str, np.ndarray]) -> dict[str, str]:
    """Copy `nodes` into `b`, inputs renamed (constants re-declared there); returns the name map."""
    import onnx

    rename = dict(rename)
    for node in nodes:
        ins = []
        for i in node.input:
            if i in rename:
                ins.append(rename[i])
            elif i in consts:
                arr = consts[i]
                rename[i] = b.const(arr, i.removeprefix("v_"), arr.dtype)
                ins.append(rename[i])
            else:
                ins.append(i)  # "" (an omitted optional input)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        hint = node.output[0].removeprefix("v_").rstrip("0123456789_") or node.op_type.lower()
        outs = b.op(node.op_type, ins, hint, n_out=len(node.output), **attrs)
        for old, new in zip(node.output, [outs] if isinstance(outs, str) else outs):
            rename[old] = new
    return rename
