"""The device runtime: masked-Adam projection on ONNX Runtime or TensorRT. Imports neither torch nor onnx.

The public names are loaded on first use, so importing a submodule (the backend registry, for `--help`)
does not pull in OpenCV or numpy-heavy modules.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Manifest": "edgeproj.runtime.manifest",
    "load_manifest": "edgeproj.runtime.manifest",
    "Projector": "edgeproj.runtime.projector",
    "BackendChoice": "edgeproj.runtime.projector",
    "ImageResult": "edgeproj.runtime.projector",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgeproj.runtime' has no attribute '{name}'")
