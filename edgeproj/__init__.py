"""edgeproj: iterative energy-based projection for anomaly localization, trained in PyTorch, run on the edge.

The package root imports nothing heavy: `edgeproj.runtime` must load on a device without torch or onnx.
"""

__version__ = "0.1.0"
