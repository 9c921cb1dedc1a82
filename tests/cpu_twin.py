"""A backend that lives in the tests: ONNX Runtime's CPU provider under another name, in one small module.

`test_backend_registry.py` adds it to the registry with one entry (a fixture) and nothing else, to prove
that a new backend reaches doctor, bench, the precision check and every projection verb.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeproj.runtime.backends.ort_cpu import OrtCpuOptions, OrtCpuRunner
from edgeproj.runtime.backends.ort_cpu import probe as cpu_probe

OPENED: list[str] = []  # the name of every runner activated, so a test sees that this backend ran
UNAVAILABLE: list[str] = []  # a test appends a reason to make the backend unavailable


@dataclass(frozen=True)
class TwinOptions(OrtCpuOptions):
    """The CPU provider's options, under this backend's own type."""


def probe() -> str | None:
    """None when usable here, else why not."""
    return UNAVAILABLE[-1] if UNAVAILABLE else cpu_probe()


class TwinRunner(OrtCpuRunner):
    """The CPU runner, counting its activations."""

    name = "cpu-twin"

    def activate(self) -> None:
        OPENED.append(self.name)
        super().activate()
