"""ATen graph -> plain ONNX: the lowering of a traced reconstruction and its vector-Jacobian product.

`edgeproj.export.tracing` traces x, g -> (f(x), J_f(x)^T g) into an ATen FX graph whose backward part holds
autograd's own backward operators (convolution_backward, leaky_relu_backward, native_batch_norm_backward,
...). This package lowers that graph, node by node, to the operator set the hand-written emitter uses:
Conv, ConvTranspose, MatMul, Resize, AveragePool and element-wise nodes; no autograd, no control flow.
Everything that depends on neither x nor g (weights, index tables, shapes) is evaluated here in PyTorch
and becomes an initializer, so the graph holds only the arithmetic on the image.

LOWERINGS maps each supported ATen operator to its emitter; `supported_operations()` lists them (docs/byo-model.md).
An operator outside it is an UnsupportedOperation naming the operator, raised before any graph is written.
"""

from edgeproj.export.lowering import activations, elementwise, layers, shapes  # noqa: F401 (registers the operators)
from edgeproj.export.lowering.core import HINTS, LOWERINGS, UnsupportedOperation, Value, supported_operations
from edgeproj.export.lowering.graph import lower_graph, op_name

__all__ = ["HINTS", "LOWERINGS", "UnsupportedOperation", "Value", "lower_graph", "op_name", "supported_operations"]
