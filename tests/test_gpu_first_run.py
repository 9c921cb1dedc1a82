"""A first run on a GPU device must work or say exactly why (issue 25): what can be checked without a GPU,
with fake modules standing in for cuda-python, onnxruntime-gpu and TensorRT where the real ones cannot
load here."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.backends import backend_options

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["trt", "ort-trt"])
def test_the_tensorrt_profile_follows_the_batch(bundles, name):
    """--batch above 16 on trt / ort-trt builds a profile that holds it (there is no max_batch flag to pass)."""
    m = load_manifest(bundles["l2ae"])
    assert Projector(m, backend=name, batch=32).runner.options.max_batch == 32
    assert Projector(m, backend=name, batch=4).runner.options.max_batch == 16  # never below the default
    assert Projector(m, backend=name, options=backend_options(name), batch=24).runner.options.max_batch == 24
    assert Projector(m, backend="ort-cpu", batch=32).runner.options.lanes is None  # backends without a profile: untouched


# ------------------------------------------------------------------ 1. the Jetson's cuda-python


def test_jetson_cuda_python_is_pinned_to_jetpacks_cuda_and_the_doctor_says_so(monkeypatch):
    """cuda-bindings 12.9 carries the CUDA 12.9 runtime; JetPack 6's driver is CUDA 12.6: error 35. The image
    pins cuda-python to 12.6, and the doctor names the pin instead of advising a driver update."""

    from edgeproj.runtime.backends import cuda_mem

    docker = (REPO / "Dockerfile.jetson").read_text()
    assert "cuda-python>=12.6,<12.7" in docker and "cuda-python>=12.6,<13" not in docker
    from gpu_fakes import insufficient_driver_cudart

    rt = insufficient_driver_cudart(driver=12060, runtime=12090)
    monkeypatch.setattr(cuda_mem, "cudart", lambda: rt)
    monkeypatch.setattr(cuda_mem, "_on_jetson", lambda: True)
    monkeypatch.setattr("edgeproj.runtime.backends.nvlibs.dist_version", lambda *names: "12.9.4")
    problem = cuda_mem.cuda_status()["problem"]
    assert problem.startswith("this cuda-python (12.9.4) was built for CUDA 12.9, the driver supports CUDA 12.6: ")
    assert "pip install 'cuda-python>=12.6,<12.7'" in problem and "JetPack" in problem
    assert "update the driver" not in problem and "install an NVIDIA driver" not in problem


# ------------------------------------------------------------------ 2-3. clean JSON, the real cause

# onnxruntime-gpu as it behaves with pip's CUDA libraries present and no usable driver: preload_dlls()
# prints what it failed to load (Python print and a native write to fd 1), and the CUDA session fails
# with "CUDA failure 35", which the fallback hides behind "Conflicting session configuration".
_FAKE_ORT = """
import os
__version__ = "1.31.1"

class GraphOptimizationLevel:
    ORT_ENABLE_ALL = 99

class SessionOptions:
    def add_session_config_entry(self, k, v):
        pass

def get_available_providers():
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]

def preload_dlls():
    print("Failed to load /site-packages/nvidia/cu13/lib/libcublasLt.so.13: cannot open shared object file")
    os.write(1, b"native loader line on fd 1\\n")

class _Node:
    def __init__(self):
        self.ep_name = "CPUExecutionProvider"
    def get_nodes(self):
        return [object()]

class InferenceSession:
    def __init__(self, model, so=None, providers=None):
        name = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if name != "CPUExecutionProvider":
            print("*************** EP Error ***************")
            print(f"EP Error CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version when using {providers}")
            print("Falling back to ['CPUExecutionProvider'] and retrying.")
            try:
                raise RuntimeError("CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version ; GPU=0")
            except RuntimeError as e:
                raise RuntimeError("Conflicting session configuration: disabled fallback to CPU") from e
        self._providers = providers
    def run(self, names, feed):
        return [feed["x"] * 2]
    def get_providers(self):
        return ["CPUExecutionProvider"]
    def get_provider_graph_assignment_info(self):
        return [_Node()]
    def disable_fallback(self):
        pass
"""


@pytest.fixture
def fake_ort(tmp_path, monkeypatch):
    """A broken-GPU onnxruntime importable as `onnxruntime` (first on sys.path and PYTHONPATH)."""
    import importlib
    import sys

    pkg = tmp_path / "fake" / "onnxruntime"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(_FAKE_ORT)
    monkeypatch.syspath_prepend(str(pkg.parent))
    for mod in [m for m in sys.modules if m == "onnxruntime" or m.startswith("onnxruntime.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr("edgeproj.runtime.backends.nvlibs._PRELOADED", {})
    return importlib.import_module("onnxruntime"), pkg.parent


def test_doctor_json_stays_json_on_a_broken_gpu_install_and_names_the_real_cause(fake_ort):
    import json
    import os
    import subprocess
    import sys

    _, path = fake_ort
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(
        [sys.executable, "-m", "edgeproj", "doctor", "--json"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # nothing before or after the JSON
    row = doc["backends"]["ort-cuda"]
    assert row["state"] == "broken"
    assert "CUDA failure 35" in row["reason"] and "Conflicting session configuration" not in row["reason"]
    assert "driver is older than the" in row["reason"] and "CUDA/cuDNN libraries missing" not in row["reason"]
    session = row["session"]
    assert any("EP Error" in ln for ln in session["printed"])
    preload = session["preload"]["ort"]
    assert any("Failed to load" in ln and "libcublasLt.so.13" in ln for ln in preload["output"])
    assert any("native loader line" in ln for ln in preload["output"])
    assert preload["summary"].startswith("onnxruntime.preload_dlls() loaded nothing") and preload["loaded"] == []


def test_a_gpu_session_error_reports_the_cause_and_keeps_stdout_clean(fake_ort, tmp_path, capfd):
    from edgeproj.errors import BackendError
    from edgeproj.runtime.backends import ort_session

    rt, _ = fake_ort
    with pytest.raises(BackendError) as exc:
        ort_session.make_session(tmp_path / "step.onnx", "step", [("CUDAExecutionProvider", {})])
    msg = str(exc.value)
    assert "CUDA failure 35: CUDA driver version is insufficient" in msg and "Conflicting" not in msg
    assert "driver is older than the" in msg and "edgeproj[gpu-cu12]" in msg
    out, _ = capfd.readouterr()
    assert out == ""  # neither preload_dlls' lines nor the EP Error banner reached stdout


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("CUDA failure 100: no CUDA-capable device is detected", "no CUDA device is visible"),
        (
            'Error loading "libonnxruntime_providers_cuda.so" which depends on "libcudnn.so.9" which is missing.',
            "libcudnn.so.9 is missing",
        ),
        ("libnvinfer.so.10: cannot open shared object file: No such file or directory", "install TensorRT"),
        ("something else entirely", "edgeproj doctor"),
    ],
)
def test_gpu_failure_hints_match_the_error(text, needle):
    from edgeproj.runtime.backends.ort_session import gpu_failure_hint

    assert needle in gpu_failure_hint(text, 13)


def test_on_linux_a_missing_library_is_named_from_the_preload_record():
    """On Linux onnxruntime only logs the library it could not open and raises about nodes on the default
    CPU EP: the preload record's libraries still not loaded name the cause."""
    from edgeproj.runtime.backends.ort_session import gpu_failure_hint

    text = "This session contains graph nodes that are assigned to the default CPU EP, but fallback to CPU EP has been explicitly disabled by the user."
    hint = gpu_failure_hint(text, 13, ["libcublasLt.so.13"])
    assert "libcublasLt.so.13 not loaded after preloading" in hint and "edgeproj[gpu]" in hint
    assert "dropped the GPU provider" in gpu_failure_hint(text, 13, [])


def test_preload_records_what_really_loaded(monkeypatch):
    """ "preload_dlls() called" is not a result: the record says which libraries came in and which the CUDA
    provider needs that are still not loaded."""
    from types import SimpleNamespace

    from edgeproj.runtime.backends import nvlibs

    loaded = ["libcudart.so.13.0.96"]
    monkeypatch.setattr(nvlibs, "_PRELOADED", {})
    monkeypatch.setattr(nvlibs, "loaded_libraries", lambda: list(loaded))
    monkeypatch.setattr(nvlibs, "provider_cuda_needs", lambda provider="cuda": ["libcudart.so.13", "libcublasLt.so.13"])
    nothing = SimpleNamespace(preload_dlls=lambda: None)
    rec = nvlibs.preload_cuda_libraries(nothing)["ort"]
    assert rec["loaded"] == [] and rec["needed_not_loaded"] == ["libcublasLt.so.13"]
    assert rec["summary"] == (
        "onnxruntime.preload_dlls() loaded nothing new; not loaded: libcublasLt.so.13 (onnxruntime's CUDA provider links them)"
    )
    monkeypatch.setattr(nvlibs, "_PRELOADED", {})
    loads = SimpleNamespace(preload_dlls=lambda: loaded.append("libcublasLt.so.13"))
    rec = nvlibs.preload_cuda_libraries(loads)["ort"]
    assert rec["loaded"] == ["libcublasLt.so.13"] and rec["needed_not_loaded"] == []
    assert rec["summary"] == "onnxruntime.preload_dlls() loaded libcublasLt.so.13"


# ------------------------------------------------------------------ 4. extras that resolve to a working pair


def test_gpu_extras_resolve_to_builds_that_load_their_libraries():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "onnxruntime-gpu[cuda,cudnn]>=1.31" in extras["gpu"]  # 1.27-1.30 miss the CUDA 13 wheels' layout
    assert "onnxruntime-gpu[cuda,cudnn]>=1.23,<1.27" in extras["gpu-cu12"]  # the CUDA 12 builds
    assert any(d.startswith("tensorrt-cu13") for d in extras["tensorrt"])
    assert any(d.startswith("tensorrt-cu12") for d in extras["tensorrt-cu12"])


def test_a_tensorrt_wheel_of_another_cuda_major_is_refused_with_the_fix(monkeypatch):
    from edgeproj.runtime.backends import nvlibs

    problem = nvlibs.trt_pair_problem("1.31.1", 10, "10.13.3", 13, 12)
    assert "CUDA 13 build" in problem and "tensorrt-cu12" in problem and "pip install 'tensorrt-cu13>=10.0,<11'" in problem
    assert nvlibs.trt_pair_problem("1.31.1", 10, "10.13.3", 13, 13) is None
    assert nvlibs.trt_pair_problem("1.31.1", 10, "10.3.0", 13, None) is None  # JetPack's TensorRT: CUDA unknown
    monkeypatch.setattr(nvlibs, "dist_version", lambda *names: "10.13.3" if "tensorrt-cu12" in names else None)
    assert nvlibs.installed_tensorrt_cuda_major() == 12


# ------------------------------------------------------------------ 7. one activation block for every context


class _FakeCtx:
    def __init__(self):
        self.memory = None

    def set_device_memory(self, ptr, size):
        self.memory = (ptr, size)


class _FakeEngine:
    device_memory_size_v2 = 4096

    def __init__(self):
        self.strategies = []

    def create_execution_context(self, strategy=None):
        self.strategies.append(strategy)
        return _FakeCtx()


def test_trt_contexts_share_one_user_managed_activation_block(bundles, monkeypatch):
    """`trt --cuda-graph` makes one context per captured graph (12 at chunk 5); on an 8 GB Orin Nano each
    holding its own activation memory adds up. Every context of a runner binds the same block."""
    from types import SimpleNamespace

    from edgeproj.runtime.backends import trt as trt_mod

    allocations = []

    class FakeBuffer:
        def __init__(self, nbytes):
            allocations.append(nbytes)
            self.nbytes, self.ptr = nbytes, 0x1000 * len(allocations)

        def free(self):
            pass

    monkeypatch.setattr(trt_mod, "DeviceBuffer", FakeBuffer)
    fake_trt = SimpleNamespace(ExecutionContextAllocationStrategy=SimpleNamespace(USER_MANAGED="USER_MANAGED"))
    runner = trt_mod.TrtRunner(load_manifest(bundles["l2ae"]), backend_options("trt", cuda_graph=True))
    engine = _FakeEngine()
    contexts = [trt_mod.shared_memory_context(fake_trt, engine, runner._scratch_block) for _ in range(12)]
    assert allocations == [4096]  # one block, not twelve
    assert {c.memory for c in contexts} == {(0x1000, 4096)}
    assert engine.strategies == ["USER_MANAGED"] * 12
    assert runner.device_memory_bytes == 4096


def test_trt_contexts_on_a_tensorrt_without_allocation_strategies(monkeypatch):
    from types import SimpleNamespace

    from edgeproj.runtime.backends.trt import shared_memory_context

    class OldEngine:
        device_memory_size = 2048

        def create_execution_context_without_device_memory(self):
            return SimpleNamespace(device_memory=None)

    block = SimpleNamespace(ptr=0xBEEF, nbytes=2048)
    ctx = shared_memory_context(SimpleNamespace(), OldEngine(), lambda n: block)
    assert ctx.device_memory == 0xBEEF


def _fake_memory(monkeypatch, readings_mb):
    """device_memory_in_use answering from a list of readings (MB)."""
    from edgeproj.runtime import device_memory

    seq = iter(readings_mb)
    monkeypatch.setattr(device_memory, "device_memory_in_use", lambda device=0: int(next(seq) * 2**20))


def test_doctor_and_bench_report_the_device_memory_a_backend_takes(bundles, monkeypatch):
    """The figure is the driver's memory in use after a runner opened, loaded a batch and stepped it, minus
    before; where it cannot be measured the report says why instead of a number."""
    from edgeproj.bench import runner as bench_runner
    from edgeproj.runtime import device_memory

    m = load_manifest(bundles["l2ae"])
    _fake_memory(monkeypatch, [500, 500, 812.5])  # probe, before, after
    got = device_memory.backend_device_memory(m, "ort-cpu", batch=2)
    assert got == {"device_memory_mb": 312.5, "batch": 2}
    monkeypatch.setattr(device_memory, "device_memory_in_use", lambda device=0: None)
    assert "cuda-python or a CUDA device is missing" in device_memory.backend_device_memory(m, "ort-cpu")["why"]

    _fake_memory(monkeypatch, [100, 164])
    monkeypatch.setattr(bench_runner, "GPU_BACKENDS", ("ort-cpu",))
    variant = bench_runner.Variant("ort-cpu", "ort-cpu", backend_options("ort-cpu", threads=1))
    row = bench_runner.bench_runtime(m, variant, batch=1, iterations=2, warmup=1, repeats=1)
    assert row["device_memory_mb"] == 64.0


def test_doctor_bundle_option_refuses_a_bad_bundle_in_one_line(tmp_path):
    from cli_helpers import one_line_error, run_cli

    one_line_error(run_cli("doctor", "--bundle", tmp_path / "nowhere", "--no-sessions"), "manifest.json")


# ------------------------------------------------------------------ 6, 8. the GPU check's production case, FP16 judged


def test_gpu_check_runs_the_production_case_against_the_cpu_at_the_same_check_point(bundles, demo_root):
    """The check's code path, with ort-cpu in device mode standing in for a GPU configuration: stop rules on
    (the active mask changes inside and between batches, padding included) against the CPU reference
    that checks the rule at the same point; the fixed-trajectory rows alongside."""
    from edgeproj.bench.gpu_check import print_table, run_check

    report = run_check(bundles["l2ae"], demo_root, "grid", {"stand-in": ("ort-cpu", {"chunk": 3})}, tick=lambda s: None)
    fixed, prod = report.fixed["stand-in"], report.production["stand-in"]
    assert report.failed == [], report.failed
    assert fixed["ok"] and fixed["trajectory_rel_err"] < 1e-6 and fixed["map_corr_min"] > 0.9999
    assert prod["ok"] and prod["chunk"] == 3 and prod["same_iterations"] == 1.0
    assert report.reference["production_stop_threshold"] is not None
    assert prod["iterations_mean"] > 0  # tiles moved under the rule: a changing active mask was exercised
    import io

    buf = io.StringIO()
    print_table(report, buf)
    assert "stand-in" in buf.getvalue() and "ok" in buf.getvalue()


def test_gpu_check_judges_fp16_and_the_production_case_instead_of_waving_them_through():
    from edgeproj.bench.gpu_check import configurations, judge_fixed, judge_production

    good = {"trajectory_rel_err": 1e-3, "map_corr_min": 0.995, "pixel_auroc_diff": 0.001, "diverged_tiles": 0}
    assert judge_fixed(good, "fp16")["ok"]
    diverged = judge_fixed(good | {"diverged_tiles": 8}, "fp16")
    assert not diverged["ok"] and "8 tile(s) diverged" in diverged["why"]  # a row whose tiles diverged fails
    assert not judge_fixed(good | {"map_corr_min": 0.95}, "fp16")["ok"]
    assert not judge_fixed(good | {"trajectory_rel_err": float("nan")}, "fp32")["ok"]  # NaN never passes
    assert not judge_fixed(good | {"map_corr_min": float("nan")}, "fp32")["ok"]  # a constant map fails
    prod = {"same_iterations": 1.0, "map_corr_min": 0.999, "pixel_auroc_diff": 0.0, "diverged_tiles": 0}
    assert judge_production(prod)["ok"]
    assert "stopped at the CPU's step" in judge_production(prod | {"same_iterations": 0.6})["why"]
    assert "trt-fp16" in configurations(["trt"], fp16=True) and "trt-fp16" not in configurations(["trt"], fp16=False)
    assert set(configurations(["ort-cuda"], fp16=True)) == {"ort-cuda", "ort-cuda+graph"}


def test_gpu_check_takes_a_bundle_made_elsewhere_and_the_jetson_image_ships_it(bundles, tmp_path):
    """`--bundle DIR` needs neither torch nor the tests (the Jetson image has neither): bad arguments are one
    line and exit 2; on this machine, which has no GPU backend, the doctor step fails it (never a pass)."""
    import subprocess

    def run(*args):
        return subprocess.run(["bash", "scripts/gpu_check.sh", *map(str, args)], capture_output=True, text=True, cwd=REPO,
                              timeout=120)  # fmt: skip

    bad = run("--bundle", tmp_path / "nowhere")
    assert bad.returncode == 2 and "is not a bundle" in bad.stderr
    bad = run("--bundle", bundles["l2ae"], "--data", tmp_path / "nodata")
    assert bad.returncode == 2 and "MVTec layout" in bad.stderr
    assert run("--bundle", bundles["l2ae"], "--tests-only").returncode == 2
    here = run("--bundle", bundles["l2ae"])
    assert here.returncode == 1 and "required backend(s) unavailable" in here.stderr
    docker = (REPO / "Dockerfile.jetson").read_text()
    assert "COPY scripts/gpu_check.sh /usr/local/bin/edgeproj-gpu-check" in docker


def test_gpu_check_keeps_a_nan_correlation_instead_of_dropping_it():
    """A configuration whose map is constant on one image (x never moved, or a dead output) has a NaN
    correlation there: the worst-image figure must be NaN, not the best of the others."""
    from types import SimpleNamespace

    import numpy as np

    from edgeproj.bench.gpu_check import _compare

    rng = np.random.default_rng(0)
    maps = [rng.random((8, 8)) for _ in range(3)]
    ref = [SimpleNamespace(projection_map=m, iterations=[1], diverged=0) for m in maps]
    got = [SimpleNamespace(projection_map=m, iterations=[1], diverged=0) for m in maps[:2]] + [
        SimpleNamespace(projection_map=np.zeros((8, 8)), iterations=[1], diverged=0)
    ]
    labels = (rng.random(3 * 64) > 0.5).astype(np.uint8)
    with np.errstate(invalid="ignore", divide="ignore"):
        row = _compare(ref, got, labels, 0.5)
    assert np.isnan(row["map_corr_min"])
