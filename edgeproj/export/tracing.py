"""Trace an autoencoder's reconstruction and its input vector-Jacobian product into one ATen graph.

The graph computes (x, g) -> (f(x), J_f(x)^T g) for a batch of any size: PyTorch's own autograd
writes the backward part (convolution_backward, leaky_relu_backward, ...), traced with symbolic
batch size and every other dimension static. `edgeproj.export.lowering` turns it into ONNX.

The contract a model must meet (README, "Bring your own autoencoder"), checked by `check_contract`:
in eval mode `model(x)` returns f(x) with x's shape, as a pure function of x (the same input gives the
same output; one sample's output does not depend on the others in the batch), finite, without
control flow that depends on the values of x (traced once, the graph must hold for every input).
"""

from __future__ import annotations

from edgeproj.errors import ConfigError

# Batch sizes for the trace and the checks: the trace's must differ from every other input dimension,
# or PyTorch's symbolic shapes would tie them to the batch.
_TRACE_BATCHES = (7, 5, 11, 13)


class ModelContractError(ConfigError):
    """A model that does not meet the contract of the generic export (what to change is in the message)."""


def _sample(channels: int, size: int, n: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 0.6 + 0.2


def check_contract(model, channels: int, size: int, name: str = "the model") -> None:
    """Raise ModelContractError unless `model` (eval mode) is a pure, batch-independent x -> f(x)."""
    import torch

    x = _sample(channels, size, 3, seed=1)
    try:
        with torch.no_grad():
            y = model(x)
            y2 = model(x)
            y1 = model(x[1:2])
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelContractError(f"{name} fails on a batch of 3 x {channels} x {size} x {size}: {first}") from None
    if not isinstance(y, torch.Tensor):
        raise ModelContractError(f"{name} returns {type(y).__name__}; model(x) must return the reconstruction f(x) as one tensor")
    if tuple(y.shape) != tuple(x.shape):
        raise ModelContractError(
            f"{name} maps {tuple(x.shape)} to {tuple(y.shape)}; model(x) must return a reconstruction of x's shape"
        )
    if not torch.isfinite(y).all():
        raise ModelContractError(f"{name} returns non-finite values on images in [0.2, 0.8]")
    if not torch.equal(y, y2):
        raise ModelContractError(
            f"{name} is not a pure function of its input in eval mode (two calls differ by "
            f"{float((y - y2).abs().max()):.3g}): no dropout, noise or state in eval mode"
        )
    if float((y[1:2] - y1).abs().max()) > 1e-4 * max(float(y.abs().max()), 1.0):
        raise ModelContractError(
            f"{name} gives a sample another output when the rest of the batch changes: one sample's f(x) "
            "must not depend on the others (BatchNorm in training mode, or batch statistics)"
        )


def layer_names(model, channels: int, size: int):
    """A function naming the layer (module path and type) whose forward ran a given ATen operator."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    stack: list[str] = []
    seen: dict[str, list[str]] = {}  # operator -> every layer that ran it, in order

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if stack and stack[-1] not in (layers := seen.setdefault(str(func), [])):
                layers.append(stack[-1])
            return func(*args, **(kwargs or {}))

    def enter(label):
        def hook(module, args):
            stack.append(label)  # returns None: a hook's return value would replace the module's input

        return hook

    def leave(module, args, output):
        stack.pop()  # returns None: the output stays the module's

    handles = []
    for path, mod in model.named_modules():
        if path:
            handles.append(mod.register_forward_pre_hook(enter(f"{path} ({type(mod).__name__})")))
            handles.append(mod.register_forward_hook(leave))
    try:
        with Record(), torch.no_grad():
            model(_sample(channels, size, 2, seed=2))
    except Exception:  # naming is a courtesy to the error message; it must not hide the real error
        pass
    finally:
        for h in handles:
            h.remove()

    def owner(node) -> str | None:
        name = str(node.target)
        forward = _FORWARD_OF.get(name, name.replace("_backward", ""))
        for key in (name, forward, forward.replace(".default", ".Tensor")):
            if layers := seen.get(key):
                # Several layers ran the operator: the trace cannot tell which one's arguments failed.
                more = ", ..." if len(layers) > 4 else ""
                return layers[0] if len(layers) == 1 else f"one of the layers {', '.join(layers[:4])}{more}"
        # Outside any layer: the model's own line, from the node or (a backward node has none) from the first
        # forward node of the operator it differentiates.
        candidates = [node] + [n for n in node.graph.nodes if str(n.target) == forward]
        for n in candidates:
            if stack_trace := (n.meta.get("stack_trace") or "").strip().splitlines():
                return f"at `{stack_trace[-1].strip()}`"
        return None

    return owner


# The forward operator whose backward autograd writes as another one (for naming the layer).
_FORWARD_OF = {"aten.slice_scatter.default": "aten.slice.Tensor", "aten._unsafe_index_put.default": "aten._unsafe_index.Tensor"}

# Not decomposed although PyTorch could: their decompositions index with tables that depend on the input's
# values or shape, which the lowering cannot fold; left whole, the error names them and their layer.
_KEEP_WHOLE = ("reflection_pad", "replication_pad", "_pad_circular", "max_pool", "upsample_bicubic")


def _in_place(node) -> bool:
    schema = getattr(node.target, "_schema", None)
    return schema is not None and any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)


def trace_vjp(model, channels: int, size: int):
    """The ATen FX graph of (x, g) -> (f(x), J_f(x)^T g), batch symbolic, with the decompositions applied
    that turn operators without a lowering into ones with one."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    from edgeproj.export.lowering import LOWERINGS, op_name

    for p in model.parameters():
        p.requires_grad_(False)

    def vjp(x, g):
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            r = model(x)
            (gx,) = torch.autograd.grad(r, x, g)
        return r.detach(), gx

    batch = next(n for n in _TRACE_BATCHES if n not in (channels, size))
    from torch._decomp import core_aten_decompositions

    decompositions = {
        op: fn
        for op, fn in core_aten_decompositions().items()
        if op_name(op) not in LOWERINGS and not any(k in op_name(op) for k in _KEEP_WHOLE)
    }
    fake = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)
    ctx = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.DYNAMIC] + [DimDynamic.STATIC] * 3)
    x = fake.from_tensor(_sample(channels, size, batch, seed=3), symbolic_context=ctx)
    g = fake.from_tensor(_sample(channels, size, batch, seed=4), symbolic_context=ctx)
    try:
        with fake:
            gm = make_fx(vjp, decomposition_table=decompositions, tracing_mode="symbolic", record_stack_traces=True)(x, g)
            if any(_in_place(n) for n in gm.graph.nodes):
                # Traced again, functionalized: an in-place operation (autograd's own, or the model's) becomes its
                # out-of-place form, so every value is written once and the lowering may read it any time.
                functional = torch.func.functionalize(gm, remove="mutations")
                gm = make_fx(functional, decomposition_table=decompositions, tracing_mode="symbolic")(x, g)
    except Exception as exc:
        kind = type(exc).__name__
        text = str(exc).strip().splitlines()
        first = text[0] if text else kind
        if "data-dependent" in str(exc) or "GuardOnDataDependent" in kind or "DataDependent" in kind:
            raise ModelContractError(
                f"the model has control flow or shapes that depend on the values of its input ({first}); "
                "the graph is traced once and must hold for every image"
            ) from None
        raise ModelContractError(f"the model cannot be traced ({kind}: {first})") from None
    _check_batch_stays_symbolic(gm)
    return gm


def _check_batch_stays_symbolic(gm) -> None:
    """A model that reads the batch size as a Python number (int(x.shape[0]), len(x)) fixes the graph to the
    traced batch: refuse it, or the runtime's batches would fail or be misread."""
    import torch

    out = next(n for n in gm.graph.nodes if n.op == "output")
    for value in out.args[0]:
        meta = value.meta.get("val")
        if meta is not None and not isinstance(meta.shape[0], torch.SymInt):
            raise ModelContractError(
                "the model fixes the batch size while it runs (int(x.shape[0]), len(x), a reshape to a number): "
                "keep it symbolic (x.shape[0] as it is, -1 in reshapes, x.flatten(1))"
            )
