"""The backend registry is closed: every layer reads each backend's declaration, none switches on its name.

A backend registered here only (tests/cpu_twin.py, one registry entry added by a fixture) reaches doctor,
bench, the precision check and every projection verb: the promise that a new backend is one module and
one registry line, kept.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import cpu_twin
import pytest
from cli_helpers import one_line_error, run_cli

from edgeproj.errors import BackendError
from edgeproj.runtime import backends
from edgeproj.runtime.backends import CPU, DEVICES, GPU, REGISTRY, Backend, Configuration

PACKAGE = Path(backends.__file__).parents[3]  # the folder holding edgeproj/
SHIPPED = backends.names()  # the package's backends (read before a fixture adds one)
CHOICES = ", ".join(SHIPPED)

TWIN = Backend("cpu-twin", "cpu_twin", "TwinRunner", "TwinOptions", "ONNX Runtime's CPU provider under another name",
               device=CPU, fp16=False, fp16_check=None, provider="CPUExecutionProvider",
               bench=(Configuration("cpu-twin", {"threads": 1}),))  # fmt: skip
# The same module declared as a GPU backend: what the layers do with the device, without a GPU.
GPU_TWIN = dataclasses.replace(TWIN, name="gpu-twin", device=GPU, provider=None, bench=(Configuration("gpu-twin"),))


@pytest.fixture
def twin(monkeypatch):
    """cpu-twin registered for one test (one registry entry, nothing else)."""
    monkeypatch.setitem(REGISTRY, TWIN.name, TWIN)
    monkeypatch.setattr(cpu_twin, "OPENED", [])
    monkeypatch.setattr(cpu_twin, "UNAVAILABLE", [])
    return cpu_twin


def test_every_backend_declares_what_the_other_layers_read():
    assert {"ort-cpu", "ort-cuda", "ort-trt", "trt"} <= set(SHIPPED)
    for name, entry in REGISTRY.items():
        assert entry.name == name and entry.device in DEVICES and entry.bench and entry.summary
        assert dataclasses.is_dataclass(entry.options_type())
        assert entry.fp16_check is None or REGISTRY[entry.fp16_check].fp16, name
        assert entry.fp16 or entry.fp16_unavailable_reason() == f"{name} runs FP32 only"
    assert {"ort-cuda", "ort-trt", "trt"} <= set(backends.gpu_backends()) and "ort-cpu" not in backends.gpu_backends()
    assert "trt" in backends.ON_GPU and "ort-cpu" not in backends.ON_GPU and "nope" not in backends.ON_GPU


def test_a_backend_that_forgets_a_declaration_is_refused_where_it_is_written():
    with pytest.raises(TypeError, match="bench"):  # every declaration is required: none can be forgotten
        Backend("x", "x", "R", "O", "s", device=CPU, fp16=False, fp16_check=None, provider=None)
    with pytest.raises(ValueError, match="at least one bench configuration"):
        dataclasses.replace(TWIN, bench=())
    with pytest.raises(ValueError, match="device must be one of"):
        dataclasses.replace(TWIN, device="tpu")
    with pytest.raises(ValueError, match="without an FP16 path"):
        dataclasses.replace(TWIN, fp16_check="cpu-twin")


def _name_switches(path: Path, names: set[str], root: Path = PACKAGE) -> list[str]:
    """Comparisons, subscripts, dict keys and startswith calls on a backend name in one source file."""

    def strings(node) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [s for e in node.elts for s in strings(e)]
        return []

    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            found = [s for n in (node.left, *node.comparators) for s in strings(n)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "startswith":
            found = [s for a in node.args for s in strings(a) for n in names if s.startswith(n)]
        elif isinstance(node, ast.Subscript):
            found = strings(node.slice)
        elif isinstance(node, ast.Dict):
            found = [s for k in node.keys if k is not None for s in strings(k)]
        else:
            continue
        if set(found) & names or (isinstance(node, ast.Call) and found):
            hits.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)[:80]}")
    return hits


def test_no_layer_switches_on_a_backend_name(tmp_path):
    """Outside the backends' own modules, no code compares, indexes or prefix-matches a backend's name:
    it reads the registry, so a new backend cannot be silently left out of a layer."""
    switch = tmp_path / "switch.py"  # what the scan finds (bench's switch before the registry closed)
    switch.write_text('if b == "trt":\n    pass\nelif r["backend"].startswith(("ort-cuda", "x")):\n    pass\n')
    assert len(_name_switches(switch, set(SHIPPED), tmp_path)) == 2
    allowed: dict[str, int] = {}  # the GPU check reads the entries' `checked` configurations too
    hits: dict[str, list[str]] = {}
    for path in sorted((PACKAGE / "edgeproj").rglob("*.py")):
        if (PACKAGE / "edgeproj/runtime/backends") in path.parents:
            continue
        if found := _name_switches(path, set(SHIPPED)):
            hits[str(path.relative_to(PACKAGE))] = found
    assert {k: len(v) for k, v in hits.items()} == allowed, hits


def test_an_unknown_backend_is_an_error_listing_the_choices(tmp_path):
    with pytest.raises(BackendError, match=f"unknown backend 'nope'; choose one of {CHOICES}"):
        backends.backend("nope")
    b, img = tmp_path / "bundle", tmp_path / "x.png"
    for verb in (
        ("project", b, img, "--out", tmp_path / "o"),
        ("inspect", b, "--source", img, "--out", tmp_path / "o"),
        ("calibrate", b, img),
        ("evaluate", b, img, "--category", "grid"),
        ("inpaint", b, img, "--out", tmp_path / "o.png"),
    ):
        one_line_error(run_cli(*verb, "--backend", "nope"), "unknown backend 'nope'", CHOICES)
    one_line_error(run_cli("bench", b, "--backends", "nope"), "unknown backend", CHOICES)
    one_line_error(run_cli("doctor", "--require", "nope", "--no-sessions"), "unknown backend", CHOICES)


def test_every_projection_verb_takes_the_same_backend_flags():
    from typer.main import get_command

    from edgeproj.cli.app import app

    verbs = get_command(app).commands
    group = ("backend", "batch", "threads", "cuda_graph", "fp16", "force_fp16", "allow_fallback")
    for verb in ("project", "inspect", "calibrate", "evaluate", "inpaint"):
        params = {p.name: p for p in verbs[verb].params}
        assert set(group) <= set(params), verb
        assert {params[g].rich_help_panel for g in group} == {"Backend"}, verb
        assert params["backend"].metavar == f"<{'|'.join(SHIPPED)}>", verb  # --help lists the choices


def test_a_backend_registered_in_the_tests_reaches_doctor(twin, monkeypatch, bundles):
    from edgeproj.runtime import load_manifest
    from edgeproj.runtime.doctor import diagnose

    res = run_cli("doctor", "--require", "cpu-twin", "--json")
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)["backends"]["cpu-twin"]
    assert row["state"] == "available" and row["session"]["ok"]  # the provider it declares, proven
    assert row["fp16"] == "cpu-twin runs FP32 only"
    twin.UNAVAILABLE.append("no twin on this machine")
    res = run_cli("doctor", "--require", "cpu-twin", "--no-sessions")
    one_line_error(res, "cpu-twin: unavailable: no twin on this machine")
    twin.UNAVAILABLE.clear()
    # Device memory is reported for the backends declared on the GPU (measured, or why it cannot be).
    monkeypatch.setitem(REGISTRY, GPU_TWIN.name, GPU_TWIN)
    report = diagnose(sessions=False, bundle=load_manifest(bundles["l2ae"]))["backends"]
    assert "device_memory" in report["gpu-twin"] and "device_memory" not in report["cpu-twin"]


def test_a_backend_registered_in_the_tests_gets_bench_rows_or_a_reason(twin, monkeypatch, bundles, tmp_path):
    from edgeproj.bench import runner

    opts = runner.BenchOptions()
    assert [(v.name, v.backend, v.options) for v in runner.configurations(opts) if v.backend == "cpu-twin"] == [
        ("cpu-twin", "cpu-twin", cpu_twin.TwinOptions(threads=1))
    ]
    twin.UNAVAILABLE.append("no twin on this machine")
    assert runner.unavailable_configurations(opts)["cpu-twin"] == "no twin on this machine"
    assert "cpu-twin" not in {v.backend for v in runner.configurations(opts)}
    twin.UNAVAILABLE.clear()

    monkeypatch.setitem(REGISTRY, GPU_TWIN.name, GPU_TWIN)
    out = tmp_path / "bench.json"
    res = run_cli("bench", bundles["l2ae"], "--backends", "cpu-twin,gpu-twin", "--batches", "1", "--iterations", "2",
                  "--warmup", "1", "--repeats", "1", "--no-torch", "--no-line", "--out", out, "--quiet")  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = {r["backend"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"cpu-twin", "gpu-twin"} and all(r["iterations_per_ms"] > 0 for r in rows.values())
    # The device each entry declares decides the device-memory figure (None: no CUDA device here).
    assert "device_memory_mb" in rows["gpu-twin"] and "device_memory_mb" not in rows["cpu-twin"]
    assert twin.OPENED


def test_the_precision_check_says_it_does_not_apply_to_a_backend_without_fp16(twin, bundle_copy, demo_root):
    from edgeproj.calibration.precision import measure_fp16

    with pytest.raises(BackendError, match="cpu-twin runs FP32 only"):
        measure_fp16(None, [], backend="cpu-twin")
    res = run_cli("calibrate", bundle_copy, demo_root / "grid", "--backend", "cpu-twin", "--precision-check")
    with_fp16 = ", ".join(n for n, b in REGISTRY.items() if b.fp16)
    one_line_error(res, "does not apply to backend cpu-twin", "drop --precision-check", with_fp16)
    assert not twin.OPENED  # refused before any work
    assert backends.fp16_check_backend("ort-cpu") == "trt" and backends.fp16_check_backend("ort-trt") == "ort-trt"


def test_a_backend_registered_in_the_tests_runs_every_projection_verb(twin, bundles, bundle_copy, demo_root, tmp_path):
    good = demo_root / "grid" / "test" / "good"
    image = sorted(good.glob("*.png"))[0]
    verbs = {
        "calibrate": ("calibrate", bundle_copy, demo_root / "grid", "--holdout", "0", "--image-score", "map_max_smoothed", "--json"),
        "project": ("project", bundle_copy, image, "--out", tmp_path / "p", "--max-iterations", "3", "--json"),
        "inspect": ("inspect", bundle_copy, "--source", good, "--out", tmp_path / "i", "--max-frames", "1", "--json",
                    "--quiet"),
        "inpaint": ("inpaint", bundle_copy, image, "--out", tmp_path / "r.png", "--max-iterations", "3", "--json"),
        "evaluate": ("evaluate", bundle_copy, demo_root, "--category", "grid", "--out", tmp_path / "e", "--no-study",
                     "--json", "--quiet"),
    }  # fmt: skip
    for verb, args in verbs.items():
        twin.OPENED.clear()
        res = run_cli(*args, "--backend", "cpu-twin", "--batch", "4")
        assert res.exit_code == 0, (verb, res.stderr, res.exception)
        assert twin.OPENED, verb
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["backend"] == "cpu-twin"
    method = json.loads((bundle_copy / "manifest.json").read_text())["calibration"]["method"]
    assert method["backend"] == "cpu-twin"
