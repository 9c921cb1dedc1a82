"""The device runtime: masked-Adam projection on ONNX Runtime or TensorRT. Imports neither torch nor onnx."""

from edgeproj.runtime.manifest import Manifest, load_manifest
from edgeproj.runtime.projector import ImageResult, Projector

__all__ = ["Manifest", "load_manifest", "Projector", "ImageResult"]
