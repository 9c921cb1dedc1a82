"""A first run on a GPU device must work or say exactly why (issue 25): what can be checked without a GPU,
with fake modules standing in for cuda-python, onnxruntime-gpu and TensorRT where the real ones cannot
load here."""

from __future__ import annotations

import pytest

from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.backends import backend_options


@pytest.mark.parametrize("name", ["trt", "ort-trt"])
def test_the_tensorrt_profile_follows_the_batch(bundles, name):
    """--batch above 16 on trt / ort-trt builds a profile that holds it (there is no max_batch flag to pass)."""
    m = load_manifest(bundles["l2ae"])
    assert Projector(m, backend=name, batch=32).runner.options.max_batch == 32
    assert Projector(m, backend=name, batch=4).runner.options.max_batch == 16  # never below the default
    assert Projector(m, backend=name, options=backend_options(name), batch=24).runner.options.max_batch == 24
    assert Projector(m, backend="ort-cpu", batch=32).runner.options.lanes is None  # backends without a profile: untouched
