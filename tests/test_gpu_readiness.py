"""GPU readiness without a GPU: version pairs, FP16 layer pinning, caches and checksums, library
preloading, node placement, the doctor, and gpu_check's refusal to pass when nothing ran."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeproj.errors import BackendError, ConfigError
from edgeproj.runtime.backends import backend_options, cache, names, nvlibs, ort_session, trt_engine

REPO = Path(__file__).resolve().parents[1]


def _run(*args, env=None, timeout=120):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def _doctor() -> dict:
    out = _run(sys.executable, "-m", "edgeproj", "doctor", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# ------------------------------------------------------------------ ONNX Runtime / TensorRT pair


def test_trt_pair_needs_the_major_the_provider_links():
    msg = nvlibs.trt_pair_problem("1.31.1", 10, "11.4.0.106", 13)
    assert "libnvinfer.so.10" in msg and "TensorRT 11.4.0.106 is installed" in msg
    assert "pip install 'tensorrt-cu13>=10.0,<11'" in msg
    assert nvlibs.trt_pair_problem("1.31.1", 10, "10.13.3.9", 13) is None
    assert nvlibs.trt_pair_problem("1.31.1", 10, "10.3.0", 12) is None
    none = nvlibs.trt_pair_problem("1.23.0", 10, None, 12)
    assert "none is installed" in none and "tensorrt-cu12>=10.0,<11" in none
    assert nvlibs.trt_pair_problem("1.32.0", None, "11.4.0", None) is None  # no TensorRT provider: its own probe says so


def test_soname_majors_and_elf_needed_on_a_real_library():
    assert nvlibs.soname_major(["libc.so.6", "libnvinfer.so.10"], "libnvinfer") == 10
    assert nvlibs.soname_major(["libnvinfer.so.10.3.0"], "libnvinfer") == 10
    assert nvlibs.soname_major(["libnvinfer_plugin.so.10"], "libnvinfer") is None
    assert nvlibs.soname_major(["libcudart.so.13"], "libcudart") == 13
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    lib = next(p for p in capi.iterdir() if p.name.startswith("libonnxruntime.so"))
    needed = nvlibs.elf_needed(lib)
    assert "libc.so.6" in needed and all(n.endswith(tuple("0123456789")) or ".so" in n for n in needed)
    assert nvlibs.elf_needed(REPO / "README.md") == []


def test_cpu_onnxruntime_build_links_no_tensorrt():
    build = nvlibs.ort_gpu_build()
    if "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers():
        pytest.skip("a GPU build of onnxruntime is installed here")
    assert build["tensorrt_major"] is None and build["cuda_major"] is None
    assert ort_session.tensorrt_pair_problem() is None


# ------------------------------------------------------------------ FP16: layer selection and refusals


LAYERS = [
    ("enc/conv1", ["FLOAT"]),
    ("adam/Mul_3", ["FLOAT"]),
    ("adam/Greater_1", ["BOOL"]),
    ("adam/Greater_2", ["BOOL"]),
    ("adam/Shape_0", ["INT64"]),
    ("adam/shape_gather", ["INT32"]),
    ("adam/Sqrt", ["HALF"]),
    ("adam/Split", ["FLOAT", "INT32"]),
    ("adam/Cast_to_float", ["FLOAT"]),
    ("adam/empty", []),
]


def test_fp32_pin_selection_takes_only_float_adam_layers():
    assert trt_engine.fp32_pin_selection(LAYERS) == ["adam/Mul_3", "adam/Sqrt", "adam/Cast_to_float"]
    assert trt_engine.fp32_pin_selection(LAYERS, scope="enc/") == ["enc/conv1"]
    assert trt_engine.fp32_pin_selection([]) == []


class _DType:
    def __init__(self, name):
        self.name = name


class _Layer:
    def __init__(self, name, dtypes):
        self.name, self._dtypes = name, dtypes
        self.num_outputs = len(dtypes)
        self.precision = None
        self.output_types = {}

    def get_output(self, j):
        return SimpleNamespace(dtype=_DType(self._dtypes[j]))

    def set_output_type(self, j, t):
        self.output_types[j] = t


def _fake_trt(fp16: bool):
    flags = SimpleNamespace(OBEY_PRECISION_CONSTRAINTS="obey", **({"FP16": "fp16"} if fp16 else {}))
    return SimpleNamespace(__version__="10.3.0" if fp16 else "11.4.0.106", float32="f32", BuilderFlag=flags)


def test_pin_fp32_on_a_parsed_network_leaves_bool_and_shape_layers_alone(monkeypatch):
    monkeypatch.setattr(trt_engine, "tensorrt", lambda: _fake_trt(True))
    layers = [_Layer(n, d) for n, d in LAYERS]
    network = SimpleNamespace(num_layers=len(layers), get_layer=lambda i: layers[i])
    flags = []
    config = SimpleNamespace(set_flag=flags.append)
    assert trt_engine.pin_fp32(network, config) == 3
    pinned = {lay.name for lay in layers if lay.precision == "f32"}
    assert pinned == {"adam/Mul_3", "adam/Sqrt", "adam/Cast_to_float"}
    assert all(lay.output_types == {} for lay in layers if lay.name not in pinned)
    assert flags == ["obey"]


def test_fp16_is_unavailable_on_tensorrt_11(monkeypatch):
    monkeypatch.setattr(trt_engine, "tensorrt", lambda: _fake_trt(False))
    why = trt_engine.fp16_unavailable_reason()
    assert why.startswith("FP16 unavailable on this TensorRT (11.4.0.106)") and "BuilderFlag.FP16" in why
    monkeypatch.setattr(trt_engine, "tensorrt", lambda: _fake_trt(True))
    assert trt_engine.fp16_unavailable_reason() is None


def test_bench_leaves_out_trt_fp16_and_says_why(monkeypatch):
    from edgeproj.bench import runner
    from edgeproj.runtime.backends import trt

    monkeypatch.setattr(runner, "probe_all", lambda: {"ort-cpu": None, "ort-cuda": "no", "ort-trt": "no", "trt": None})
    monkeypatch.setattr(trt, "fp16_probe", lambda: "FP16 unavailable on this TensorRT (11.4.0.106): ...")
    opts = runner.BenchOptions(backends=("ort-cpu", "ort-cuda", "ort-trt", "trt"))
    names = [v.name for v in runner.configurations(opts) if v.name != "ort-cpu-threads"]  # that one: multi-core hosts
    assert names == ["ort-cpu", "trt-fp32"]
    unavailable = runner.unavailable_configurations(opts)
    assert unavailable["trt-fp16"].startswith("FP16 unavailable") and set(unavailable) == {"ort-cuda", "ort-trt", "trt-fp16"}
    monkeypatch.setattr(trt, "fp16_probe", lambda: None)
    assert [v.name for v in runner.configurations(opts) if v.name != "ort-cpu-threads"] == ["ort-cpu", "trt-fp32", "trt-fp16"]


def test_precision_check_records_fp16_unavailable(monkeypatch):
    from edgeproj.calibration.precision import measure_fp16
    from edgeproj.runtime.backends import ort_trt, trt

    monkeypatch.setattr(trt, "probe", lambda: None)
    monkeypatch.setattr(trt, "fp16_probe", lambda: "FP16 unavailable on this TensorRT (11.4.0.106): no flag")
    assert measure_fp16(None, [], "trt") == "FP16 unavailable: FP16 unavailable on this TensorRT (11.4.0.106): no flag"
    monkeypatch.setattr(ort_trt, "probe", lambda: None)
    assert measure_fp16(None, [], backend="ort-trt").startswith("FP16 unavailable: ort-trt does not run FP16")
    monkeypatch.setattr(trt, "probe", lambda: "TensorRT's Python package is not installed")
    with pytest.raises(BackendError, match="needs trt, which is unavailable here: TensorRT's Python"):
        measure_fp16(None, [], "trt")


def test_ort_trt_refuses_fp16_and_cuda_graphs():
    with pytest.raises(ConfigError, match="Adam tail in FP32"):
        backend_options("ort-trt", fp16=True)
    with pytest.raises(ConfigError, match="CUDA graphs"):
        backend_options("ort-trt", cuda_graph=True)
    assert backend_options("ort-trt").fp16 is False


# ------------------------------------------------------------------ caches: XDG, 0700, checksums


def test_cache_root_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "edgeproj"
    assert trt_engine.default_cache_dir() == tmp_path / "xdg" / "edgeproj" / "trt"
    from edgeproj.runtime.backends import ort_trt

    assert ort_trt.default_cache_dir() == tmp_path / "xdg" / "edgeproj" / "ort-trt"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the spec says: ignore a relative value
    assert cache.cache_root() == Path.home() / ".cache" / "edgeproj"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_root() == Path.home() / ".cache" / "edgeproj"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_cache_folders_are_private(tmp_path):
    d = cache.private_dir(tmp_path / "a" / "b")
    assert _mode(d) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    assert _mode(cache.private_dir(loose)) == 0o700
    cache.write_private(d / "f.bin", b"data")
    assert _mode(d / "f.bin") == 0o600 and (d / "f.bin").read_bytes() == b"data"


def test_ort_trt_cache_is_keyed_and_under_xdg(monkeypatch, tmp_path):
    from edgeproj.runtime.backends.ort_trt import OrtTensorRTRunner

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    manifest = SimpleNamespace(
        graphs={"step": SimpleNamespace(sha256="ab" * 32)},
        projection=SimpleNamespace(stop=SimpleNamespace(check_every=10)),
    )
    runner = OrtTensorRTRunner(manifest, backend_options("ort-trt"))
    assert runner.cache_dir.parent == tmp_path / "edgeproj" / "ort-trt"
    assert runner.cache_dir.name.startswith("abababababababab-ort") and runner.cache_dir.name.endswith(nvlibs.tf32_tag())
    assert "-trtnone-" in runner.cache_dir.name  # no TensorRT here
    # A TensorRT upgrade moves the engines to another folder (ONNX Runtime's own key omits the version).
    from edgeproj.runtime.backends import ort_trt

    monkeypatch.setattr(ort_trt, "installed_tensorrt", lambda: "10.3.0")
    old = OrtTensorRTRunner(manifest, backend_options("ort-trt")).cache_dir
    monkeypatch.setattr(ort_trt, "installed_tensorrt", lambda: "10.13.3")
    new = OrtTensorRTRunner(manifest, backend_options("ort-trt")).cache_dir
    assert "-trt10.3.0-" in old.name and "-trt10.13.3-" in new.name and old != new


KEY = {"graph": "0" * 64, "trt": "10.3.0", "gpu": "Orin", "precision": "fp32", "tf32": "tf32-0", "profile": [1, 8, 16]}


def test_engine_checksum_refuses_a_tampered_cache_file(tmp_path):
    d = tmp_path / "trt"
    path = trt_engine.store_engine(d, KEY, b"serialized engine")
    assert _mode(d) == 0o700 and _mode(path) == 0o600
    assert trt_engine.load_cached_engine(d, KEY) == b"serialized engine"
    assert trt_engine.load_cached_engine(d, KEY | {"tf32": "tf32-1"}) is None  # keyed on TF32
    path.write_bytes(b"serialized enginX")
    with pytest.raises(BackendError, match="does not match the checksum"):
        trt_engine.load_cached_engine(d, KEY)
    # An engine without a recorded checksum is never loaded: deleted, to be rebuilt.
    path.with_suffix(".json").unlink()
    assert trt_engine.load_cached_engine(d, KEY) is None and not path.exists()


def test_timing_cache_with_a_wrong_checksum_is_ignored(tmp_path):
    p = tmp_path / "timing.cache"
    cache.write_private(p, b"timing")
    cache.write_private(p.with_suffix(".sha256"), cache.sha256_bytes(b"timing").encode())
    assert trt_engine._timing_bytes(p) == b"timing"
    p.write_bytes(b"timinG")
    assert trt_engine._timing_bytes(p) == b""


def test_ort_trt_ledger_verifies_before_loading(tmp_path):
    d = cache.private_dir(tmp_path / "ort-trt")
    (d / "TensorrtExecutionProvider_TRTKernel_1.engine").write_bytes(b"engine")
    ledger = cache.ChecksumLedger(d)
    ledger.record()
    assert ledger.verify() == []
    (d / "dropped.engine").write_bytes(b"unknown")
    assert ledger.verify() == ["dropped.engine"] and not (d / "dropped.engine").exists()
    (d / "TensorrtExecutionProvider_TRTKernel_1.engine").write_bytes(b"enginE")
    with pytest.raises(BackendError, match="tampered or corrupt"):
        ledger.verify()


# ------------------------------------------------------------------ library preloading, session checks


class _FakeOrt:
    """Enough of onnxruntime for make_session to reach InferenceSession."""

    __version__ = "1.31.1"

    def __init__(self, providers, with_preload=True):
        self.calls = []
        self._providers = providers
        if with_preload:
            self.preload_dlls = lambda: self.calls.append("preload_dlls")

        class SessionOptions:
            def add_session_config_entry(_self, k, v):
                self.calls.append(f"config {k}={v}")

        def session(path, so, providers):
            self.calls.append("InferenceSession")
            raise RuntimeError("libcudnn.so.9: cannot open shared object file")

        self.SessionOptions = SessionOptions
        self.GraphOptimizationLevel = SimpleNamespace(ORT_ENABLE_ALL=99)
        self.InferenceSession = session

    def get_available_providers(self):
        return self._providers


def test_preload_runs_once_before_a_cuda_session(monkeypatch, tmp_path):
    monkeypatch.setattr(nvlibs, "_PRELOADED", {})
    fake = _FakeOrt(["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort_session, "ort", lambda: fake)
    with pytest.raises(BackendError, match=r"could not create a CUDAExecutionProvider session.*edgeproj\[gpu\]"):
        ort_session.make_session(tmp_path / "step.onnx", "step", [("CUDAExecutionProvider", {})])
    assert fake.calls.index("preload_dlls") < fake.calls.index("InferenceSession")
    with pytest.raises(BackendError):
        ort_session.make_session(tmp_path / "step.onnx", "step", ["CUDAExecutionProvider"])
    assert fake.calls.count("preload_dlls") == 1  # idempotent


def test_no_preload_for_the_cpu_and_a_note_on_old_onnxruntime(monkeypatch, tmp_path):
    monkeypatch.setattr(nvlibs, "_PRELOADED", {})
    fake = _FakeOrt(["CPUExecutionProvider"])
    monkeypatch.setattr(ort_session, "ort", lambda: fake)
    with pytest.raises(BackendError):
        ort_session.make_session(tmp_path / "g.onnx", "gradient", ["CPUExecutionProvider"])
    assert "preload_dlls" not in fake.calls
    old = _FakeOrt(["CUDAExecutionProvider"], with_preload=False)
    assert "has no preload_dlls" in nvlibs.preload_cuda_libraries(old)["ort"]["summary"]


def test_tensorrt_session_refused_on_a_wrong_pair(monkeypatch, tmp_path):
    monkeypatch.setattr(nvlibs, "_PRELOADED", {"ort": "done", "tensorrt": "done"})
    fake = _FakeOrt(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort_session, "ort", lambda: fake)
    monkeypatch.setattr(ort_session, "tensorrt_pair_problem", lambda: "links libnvinfer.so.10 but TensorRT 11.4 is installed")
    with pytest.raises(BackendError, match="libnvinfer.so.10 but TensorRT 11.4"):
        ort_session.make_session(tmp_path / "s.onnx", "step", [("TensorrtExecutionProvider", {}), "CUDAExecutionProvider"])
    assert "InferenceSession" not in fake.calls


def test_assignment_problem_and_profile_parsing():
    trt, cuda = "TensorrtExecutionProvider", "CUDAExecutionProvider"
    whole = {trt: [("TRTKernel_graph_0", "TRTKernel")], cuda: [("copy_in", "MemcpyFromHost")]}
    assert ort_session.assignment_problem(whole, trt) is None
    part = {trt: [("k", "TRTKernel")], cuda: [("adam/Sqrt", "Sqrt"), ("adam/Div", "Div")]}
    msg = ort_session.assignment_problem(part, trt)
    assert "2 node(s) ran elsewhere" in msg and "adam/Sqrt (Sqrt) on CUDAExecutionProvider" in msg
    assert "took no node" in ort_session.assignment_problem({cuda: [("a", "Add")]}, trt)
    assert "cannot be confirmed" in ort_session.assignment_problem({}, trt)
    events = [
        {"cat": "Session", "name": "model_run"},
        {"cat": "Node", "name": "TRTKernel_0_kernel_time", "args": {"provider": trt, "op_name": "TRTKernel"}},
        {"cat": "Node", "name": "TRTKernel_0_kernel_time", "args": {"provider": trt, "op_name": "TRTKernel"}},
        {"cat": "Node", "name": "adam/Sqrt_kernel_time", "args": {"provider": cuda, "op_name": "Sqrt"}},
    ]
    assert ort_session.profile_assignment(events) == {trt: [("TRTKernel_0", "TRTKernel")], cuda: [("adam/Sqrt", "Sqrt")]}


def test_profiled_placement_writes_nothing_in_the_current_folder(monkeypatch, tmp_path):
    """The placement fallback of onnxruntime < 1.24 profiles one run; the profile must not land in the
    current folder (read-only on a device) and is gone afterwards."""
    from edgeproj.runtime.doctor import _TINY_MODEL

    model = tmp_path / "tiny.onnx"
    model.write_bytes(_TINY_MODEL)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    import onnxruntime as rt

    written = []

    class Spy(rt.InferenceSession):
        def end_profiling(self):
            path = super().end_profiling()
            written.append(Path(path).resolve())
            return path

    monkeypatch.setattr(rt, "InferenceSession", Spy)
    placed = ort_session.profiled_assignment(model, ["CPUExecutionProvider"], {"x": np.ones((1, 8), np.float32)})
    assert placed == {"CPUExecutionProvider": [("doctor_add", "Add")]}
    assert len(written) == 1 and cwd.resolve() not in written[0].parents, written
    assert not written[0].exists() and not list(cwd.iterdir())


def test_node_assignment_on_a_real_cpu_session():
    from edgeproj.runtime.doctor import tiny_session

    got = tiny_session("CPUExecutionProvider")
    assert got["ok"] and got["activated"][0] == "CPUExecutionProvider", got
    if "placement" in got:  # onnxruntime >= 1.24 reports node placement
        assert got["placement"] == {"CPUExecutionProvider": 1}


# ------------------------------------------------------------------ CUDA status, TF32


def test_insufficient_driver_is_named_not_silent(monkeypatch):
    from gpu_fakes import insufficient_driver_cudart

    from edgeproj.runtime.backends import cuda_mem

    rt = insufficient_driver_cudart(driver=12020, runtime=13000)
    monkeypatch.setattr(cuda_mem, "cudart", lambda: rt)
    monkeypatch.setattr(cuda_mem, "_on_jetson", lambda: False)
    st = cuda_mem.cuda_status()
    assert st["devices"] == 0 and st["driver_cuda"] == "12.2" and st["runtime_cuda"] == "13.0"
    assert "was built for CUDA 13.0, the driver supports CUDA 12.2" in st["problem"]
    assert "pip install 'cuda-python>=12.2,<12.3'" in st["problem"]
    # the TensorRT advice keeps the pin (the tensorrt-cu12 extra would pull cuda-python 12.9 back in)
    assert "edgeproj[tensorrt-cu12]" not in st["problem"] and "'tensorrt-cu12>=10.3,<11' and this pin after it" in st["problem"]
    assert "install an NVIDIA driver for CUDA 13.0" in st["problem"]


def test_tf32_is_off_for_runners_only_and_a_user_value_wins(demo_root, tmp_path):
    """Importing the backends (every CLI verb does) leaves TF32 alone, so `train` on a GPU keeps PyTorch's
    defaults; creating a runner turns it off before its CUDA libraries load, unless the user chose."""
    code = (
        "import os, sys\n"
        "import edgeproj.runtime.backends as b, edgeproj.runtime.backends.nvlibs as n\n"
        "from typer.testing import CliRunner\n"
        "from edgeproj.cli.app import app\n"
        "r = CliRunner().invoke(app, ['train', sys.argv[1], '--out', sys.argv[2], '--steps', '2', '--batch', '2',"
        " '--mode', 'texture', '--resize', '128', '--device', 'cpu', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(os.environ.get('NVIDIA_TF32_OVERRIDE', 'unset'))\n"
        "try:\n"
        "    b.create_runner('ort-cpu', None)\n"
        "except Exception:\n"
        "    pass\n"
        "print(os.environ.get('NVIDIA_TF32_OVERRIDE', 'unset'), n.tf32_tag())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NVIDIA_TF32_OVERRIDE"}
    args = (sys.executable, "-c", code, str(demo_root / "grid"), str(tmp_path / "run"))
    plain = _run(*args, env=env, timeout=600)
    assert plain.stdout.split() == ["unset", "0", "tf32-0"], plain.stderr[-2000:]
    chosen = _run(*args[:-1], str(tmp_path / "run2"), env=env | {"NVIDIA_TF32_OVERRIDE": "1"}, timeout=600)
    assert chosen.stdout.split() == ["1", "1", "tf32-1"], chosen.stderr[-2000:]


# ------------------------------------------------------------------ doctor and gpu_check on this machine


def test_doctor_json_on_this_machine():
    doc = _doctor()
    rows = doc["backends"]
    assert list(rows) == list(names())  # every registered backend, in registry order
    cpu = rows["ort-cpu"]
    assert cpu["state"] == "available" and cpu["session"]["activated"][0] == "CPUExecutionProvider"
    for name, row in rows.items():
        assert row["state"] in ("available", "unavailable", "broken"), (name, row)
        if row["state"] != "available":
            assert isinstance(row["reason"], str) and len(row["reason"]) > 10, (name, row)
        assert row["fp16"] == "available" or len(row["fp16"]) > 10
    assert doc["onnxruntime"]["version"] and "CPUExecutionProvider" in doc["onnxruntime"]["providers_available"]
    assert doc["tf32"]["NVIDIA_TF32_OVERRIDE"] is not None
    assert "packages" in doc and "numpy" in doc["packages"] and isinstance(doc["libraries_loaded"], list)
    assert "torch" not in doc["libraries_loaded"]


def test_doctor_table_and_require():
    table = _run(sys.executable, "-m", "edgeproj", "doctor", "--no-sessions")
    assert table.returncode == 0 and "ort-cpu" in table.stdout and "available" in table.stdout
    assert _run(sys.executable, "-m", "edgeproj", "doctor", "--require", "ort-cpu", "--json").returncode == 0
    bad = _run(sys.executable, "-m", "edgeproj", "doctor", "--require", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("edgeproj: error:") and len(bad.stderr.strip().splitlines()) == 1


def _gpu_backends_missing() -> list[str]:
    return [n for n, r in _doctor()["backends"].items() if n != "ort-cpu" and r["state"] != "available"]


def test_gpu_check_refuses_to_pass_here_quickly():
    missing = _gpu_backends_missing()
    if not missing:
        pytest.skip("every GPU backend is available here: gpu_check would run for real")
    t = time.perf_counter()
    out = _run("bash", "scripts/gpu_check.sh", timeout=60)
    assert out.returncode != 0, out.stdout + out.stderr
    assert time.perf_counter() - t < 30
    assert "required backend(s) unavailable" in out.stderr
    for name in missing:
        assert f"{name}: " in out.stderr
    # Excluding every GPU backend checks nothing, so it fails too; a bad name is a usage error.
    everything = _run("bash", "scripts/gpu_check.sh", "--exclude", "ort-cuda,ort-trt,trt", timeout=30)
    assert everything.returncode == 1 and "nothing would be checked" in everything.stderr
    env = os.environ | {"EDGEPROJ_GPU_EXCLUDE": "ort-cuda,bogus"}
    assert _run("bash", "scripts/gpu_check.sh", env=env, timeout=30).returncode == 2


def test_gpu_check_counts_skipped_gpu_tests_as_failure():
    if "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers():
        pytest.skip("the GPU tests would run here")
    out = _run("bash", "scripts/gpu_check.sh", "--tests-only", "--exclude", "trt", timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "skipped" in out.stdout and "a skip is not a pass" in out.stderr
