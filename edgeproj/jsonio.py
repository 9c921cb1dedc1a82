"""Strict JSON for results: numpy values and paths made plain, NaN and Infinity written as null.

Every verb's JSON, the manifest, the live page and the MQTT messages go through `dumps_strict`, so no
consumer ever meets the non-standard NaN/Infinity tokens that Python's json writes by default.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def strict_json(obj):
    """`obj` with every non-finite float replaced by None, numpy scalars/arrays and paths made plain:
    what `json.dumps(..., allow_nan=False)` accepts (standard JSON has no NaN or Infinity)."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (int, float)):
        return strict_json(obj.tolist())
    if hasattr(obj, "item") and not isinstance(obj, (int, float)):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return obj
    if hasattr(obj, "__fspath__"):
        return os.fspath(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def dumps_strict(obj, indent: int | None = 2) -> str:
    """Standard JSON text (no NaN/Infinity tokens) of results holding numpy values and paths."""
    return json.dumps(strict_json(obj), indent=indent, allow_nan=False)
