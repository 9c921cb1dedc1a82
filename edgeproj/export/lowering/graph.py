"""The walk over the traced FX graph: each node folded (no dependence on x or g), a size, or lowered."""

from __future__ import annotations

import operator

from edgeproj.export.builder import GraphBuilder
from edgeproj.export.lowering.core import (
    LOWERINGS,
    BatchSize,
    Lowering,
    UnsupportedOperation,
    Value,
    Zeros,
    is_size,
    size_value,
)


def op_name(target) -> str:
    return str(target) if not hasattr(target, "_schema") else f"aten.{target._schema.name.split('::')[-1]}.{target._overloadname}"


def _has(v, kinds) -> bool:
    if isinstance(v, (list, tuple)):
        return any(_has(x, kinds) for x in v)
    if isinstance(v, dict):
        return any(_has(x, kinds) for x in v.values())
    return isinstance(v, kinds)


def lower_graph(gm, b: GraphBuilder, x: str, g: str, owner=None) -> tuple[Value, Value, dict[str, Value]]:
    """Lower the traced (x, g) -> (f(x), J^T g) graph into `b` (inputs `x`, `g` already declared).

    `owner(node)` names the layer a node comes from, for the error of an unsupported operation.
    Returns the ONNX values of f(x) and of the input gradient, and every value emitted by name.
    """
    import torch
    from torch.fx.node import map_aggregate

    lw = Lowering(b)
    lw.batch_source = x
    env: dict = {}
    placeholders = iter((x, g))
    result = None

    def arg(a):
        return map_aggregate(a, lambda n: env[n] if isinstance(n, torch.fx.Node) else n)

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = lw.out(next(placeholders), node.meta["val"])
            continue
        if node.op == "get_attr":
            env[node] = getattr(gm, node.target)
            continue
        if node.op == "output":
            result = arg(node.args[0])
            break
        args, kwargs = arg(node.args), arg(node.kwargs)
        if node.target is operator.getitem:
            env[node] = args[0][args[1]]
            continue
        try:
            env[node] = _lower_node(lw, node, op_name(node.target), args, kwargs)
        except UnsupportedOperation as exc:
            raise UnsupportedOperation(exc.op, exc.why, _where_from(owner, node)) from None
        except Exception as exc:  # an argument form a lowering does not handle: one error naming it, no traceback
            detail = str(exc).strip().splitlines()
            why = f"a form the lowering does not handle ({type(exc).__name__}: {detail[0][:200] if detail else ''})"
            raise UnsupportedOperation(op_name(node.target), why, _where_from(owner, node)) from None
    recon, grad = result
    return recon, grad, lw.values


def _lower_node(lw: Lowering, node, name: str, args, kwargs):
    """The value of one call_function node: a size, a folded constant, or the lowering's ONNX value."""
    meta = node.meta.get("val")
    if is_size(meta):  # Python arithmetic on sizes: static, or the batch passed on unchanged
        return [size_value(m) for m in meta] if isinstance(meta, (list, tuple)) else size_value(meta)
    if not any(_has(a, (Value, Zeros, BatchSize)) for a in (args, kwargs)):
        return node.target(*args, **kwargs)  # weights, index tables, shapes: folded here
    emit = LOWERINGS.get(name)
    if emit is None:
        raise UnsupportedOperation(name, "no lowering to plain ONNX")
    return emit(lw, node, *args, **kwargs)


def _where_from(owner, node) -> str:
    where = owner(node) if owner is not None else None
    if not where:
        return ""
    if where.startswith("at "):
        return f"the code {where}"
    return where if where.startswith("one of") else f"layer {where}"
