"""NVIDIA libraries seen from Python: process-start settings, what is loaded, versions, compatible pairs.

Nothing here needs a GPU or imports a CUDA library by itself: the checks read package metadata, ELF
headers of ONNX Runtime's provider libraries and `/proc/self/maps`, so `edgeproj doctor` and the tests
run on any machine.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import struct
from pathlib import Path

TF32_ENV = "NVIDIA_TF32_OVERRIDE"

# Libraries whose presence in the process tells what a GPU backend really loaded.
_WATCHED = re.compile(
    r"lib(cuda|cudart|cublas|cublasLt|cudnn|cufft|curand|nvrtc|nvinfer|nvinfer_plugin|nvonnxparser|onnxruntime_providers_\w+)"
    r"\.so[.\d]*$"
)
# The CUDA libraries an ONNX Runtime GPU provider links, by soname (what preloading must bring in).
_CUDA_SONAME = re.compile(r"lib(cudart|cublas|cublasLt|cudnn|cufft|curand|nvrtc)\.so\.\d+$")

# Set by `init_process_env`: CUDA libraries already in the process before NVIDIA_TF32_OVERRIDE was set
# (they may have read the variable already: onnxruntime #26029).
TF32_SET_LATE: list[str] = []


def loaded_libraries() -> list[str]:
    """File names of the watched NVIDIA / ONNX Runtime provider libraries mapped into this process."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                name = os.path.basename(path)
                if _WATCHED.search(name):
                    found.add(name)
    except OSError:
        return []
    return sorted(found)


def init_process_env() -> None:
    """Turn TF32 off for every CUDA library before any of them loads (a user's own setting wins).

    Called when a backend module loads (`Backend.load`: probes and runners), by `create_runner` and by the
    doctor, before onnxruntime, TensorRT or cuda-python is imported for the runtime; never by training
    (TF32 is a training speed-up there, not a parity hazard).
    """
    if TF32_ENV in os.environ:
        return
    TF32_SET_LATE[:] = [n for n in loaded_libraries() if not n.startswith("libonnxruntime_providers_shared")]
    os.environ[TF32_ENV] = "0"


def tf32_tag() -> str:
    """The TF32 state that cached engines are keyed on ("tf32-0" unless the user set it otherwise)."""
    return f"tf32-{os.environ.get(TF32_ENV, 'unset')}"


# ----------------------------------------------------------------------------- versions


def dist_version(*names: str) -> str | None:
    """Version of the first installed distribution among `names` (package metadata; nothing imported)."""
    for n in names:
        try:
            return importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def major(version: str | None) -> int | None:
    m = re.match(r"\s*(\d+)", version or "")
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------- ELF


def elf_needed(path: Path) -> list[str]:
    """DT_NEEDED entries of a 64-bit little-endian ELF shared library (what the loader will look for)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return []
        phoff, phentsize, phnum = struct.unpack_from("<Q", head, 32)[0], *struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
        loads, dynamic = [], None
        for i in range(phnum):
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", ph, i * phentsize)
            if p_type == 1:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == 2:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return []
        f.seek(dynamic[0])
        dyn = f.read(dynamic[1])
        needed, strtab, strsz = [], None, 0
        for off in range(0, len(dyn) - 15, 16):
            tag, val = struct.unpack_from("<qQ", dyn, off)
            if tag == 0:
                break
            if tag == 1:
                needed.append(val)
            elif tag == 5:
                strtab = val
            elif tag == 10:
                strsz = val
        if strtab is None:
            return []
        for vaddr, offset, size in loads:  # DT_STRTAB is an address: map it to a file offset
            if vaddr <= strtab < vaddr + size:
                strtab = strtab - vaddr + offset
                break
        f.seek(strtab)
        table = f.read(strsz)
    return [table[i : table.index(b"\0", i)].decode(errors="replace") for i in needed if i < len(table)]


def ort_provider_library(provider: str) -> Path | None:
    """Path of onnxruntime's `libonnxruntime_providers_<provider>.so`, found without importing onnxruntime."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(next(iter(spec.submodule_search_locations))) / "capi" / f"libonnxruntime_providers_{provider}.so"
    return lib if lib.is_file() else None


def soname_major(needed: list[str], stem: str) -> int | None:
    """The major version in a `<stem>.so.<N>` entry of `needed` (e.g. libnvinfer.so.10 -> 10)."""
    for n in needed:
        m = re.fullmatch(re.escape(stem) + r"\.so\.(\d+)(\.[\d.]+)?", n)
        if m:
            return int(m.group(1))
    return None


def ort_gpu_build() -> dict:
    """What the installed onnxruntime's GPU providers link: TensorRT (libnvinfer) and CUDA majors."""
    out = {"onnxruntime": dist_version("onnxruntime-gpu", "onnxruntime"), "package": None}
    for pkg in ("onnxruntime-gpu", "onnxruntime"):
        if dist_version(pkg):
            out["package"] = pkg
            break
    for provider, stem, key in (("tensorrt", "libnvinfer", "tensorrt_major"), ("cuda", "libcudart", "cuda_major")):
        lib = ort_provider_library(provider)
        out[f"{provider}_provider_library"] = lib.name if lib else None
        try:
            out[key] = soname_major(elf_needed(lib), stem) if lib else None
        except OSError:
            out[key] = None
    if out.get("cuda_major") is None and (lib := ort_provider_library("cuda")):
        try:
            out["cuda_major"] = soname_major(elf_needed(lib), "libcublasLt")
        except OSError:
            pass
    return out


def provider_cuda_needs(provider: str = "cuda") -> list[str]:
    """Sonames of the CUDA libraries onnxruntime's `provider` library links (libcudart.so.13, ...)."""
    lib = ort_provider_library(provider)
    try:
        return [n for n in elf_needed(lib) if _CUDA_SONAME.match(n)] if lib else []
    except OSError:
        return []


def is_loaded(soname: str, loaded: list[str]) -> bool:
    """`soname` (libcudart.so.13) is among the loaded file names (libcudart.so.13 or libcudart.so.13.0.96)."""
    return any(name == soname or name.startswith(soname + ".") for name in loaded)


def installed_tensorrt_cuda_major() -> int | None:
    """The CUDA major of the installed TensorRT wheel (tensorrt-cu12 / -cu13 and their -libs), None when
    unknown (JetPack's system TensorRT, or none installed)."""
    for cu in (13, 12, 11):
        if dist_version(f"tensorrt-cu{cu}", f"tensorrt_cu{cu}", f"tensorrt-cu{cu}-libs", f"tensorrt_cu{cu}_libs"):
            return cu
    return None


def installed_tensorrt() -> str | None:
    """Version of TensorRT's Python package from metadata (pip wheels, or JetPack's python3-libnvinfer)."""
    return dist_version("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11", "tensorrt_cu13", "tensorrt_cu12")


def trt_pair_problem(
    ort_version: str | None,
    ep_trt_major: int | None,
    trt_version: str | None,
    cuda_major: int | None,
    trt_cuda_major: int | None = None,
) -> str | None:
    """None when ONNX Runtime's TensorRT provider can load the installed TensorRT, else what to install.

    The provider links `libnvinfer.so.<ep_trt_major>` and CUDA `cuda_major`'s libraries; a TensorRT of
    another major, or a TensorRT wheel built for another CUDA major (`trt_cuda_major`), cannot serve it.
    """
    if ep_trt_major is None:
        return None  # no TensorRT provider in this build: ort-trt's own probe says so
    cu = f"cu{cuda_major}" if cuda_major else "cu13"
    want = f"pip install 'tensorrt-{cu}>={ep_trt_major}.0,<{ep_trt_major + 1}'"
    if trt_version is not None and cuda_major and trt_cuda_major and trt_cuda_major != cuda_major:
        extras = "edgeproj[gpu,tensorrt]" if cuda_major >= 13 else "edgeproj[gpu-cu12,tensorrt-cu12]"
        return (
            f"onnxruntime {ort_version} is a CUDA {cuda_major} build but the installed TensorRT {trt_version} is the CUDA "
            f"{trt_cuda_major} wheel (tensorrt-cu{trt_cuda_major}): pip uninstall tensorrt-cu{trt_cuda_major} "
            f"tensorrt-cu{trt_cuda_major}-libs tensorrt-cu{trt_cuda_major}-bindings && {want} (or install the pair "
            f"'{extras}')"
        )
    if trt_version is None:
        return (
            f"onnxruntime {ort_version}'s TensorRT provider needs TensorRT {ep_trt_major}.x (libnvinfer.so.{ep_trt_major}) "
            f"and none is installed: {want} (on a Jetson: JetPack's python3-libnvinfer)"
        )
    have = major(trt_version)
    if have != ep_trt_major:
        return (
            f"onnxruntime {ort_version}'s TensorRT provider links libnvinfer.so.{ep_trt_major} (TensorRT {ep_trt_major}.x) "
            f"but TensorRT {trt_version} is installed: {want}, or pip install 'edgeproj[tensorrt]' "
            f"(which pins TensorRT {ep_trt_major}.x); the native `trt` backend works with either"
        )
    return None


# ----------------------------------------------------------------------------- loading

_PRELOADED: dict = {}


def _record(call: str, before: list[str], needs: list[str], printed: list[str], error: str | None = None) -> dict:
    """What a preload call really did: the watched libraries it brought in, and the needed ones still missing."""
    after = loaded_libraries()
    new = sorted(set(after) - set(before))
    missing = [n for n in needs if not is_loaded(n, after)]
    if error:
        summary = f"{call} failed: {error}"
    elif new:
        summary = f"{call} loaded {', '.join(new)}"
    else:
        summary = f"{call} loaded nothing" + (" new" if any(is_loaded(n, before) for n in needs) else "")
    if missing:
        summary += f"; not loaded: {', '.join(missing)} (onnxruntime's CUDA provider links them)"
    return {"summary": summary, "loaded": new, "needed_not_loaded": missing, "output": printed}


def preload_cuda_libraries(rt, tensorrt: bool = False) -> dict:
    """Load pip's CUDA/cuDNN (and TensorRT) libraries so ONNX Runtime's GPU providers can find them.

    onnxruntime-gpu with its [cuda,cudnn] extras finds those libraries only after
    `onnxruntime.preload_dlls()` (ORT >= 1.21) or `import torch`; pip's TensorRT libraries are on the
    loader path only once `tensorrt` is imported. Idempotent. Returns, per call, what it really loaded
    (read from the process's mappings, not assumed), the provider's CUDA libraries still not loaded, and
    what it printed: that text is kept here, never on the caller's stdout.
    """
    from edgeproj.runtime.backends.captured import captured_stdout

    if "ort" not in _PRELOADED:
        before, needs = loaded_libraries(), provider_cuda_needs("cuda")
        if hasattr(rt, "preload_dlls"):
            error = None
            with captured_stdout() as printed:
                try:
                    rt.preload_dlls()
                except Exception as exc:  # noqa: BLE001 - the session creation that follows reports the real failure
                    error = f"{type(exc).__name__}: {exc}"
            _PRELOADED["ort"] = _record("onnxruntime.preload_dlls()", before, needs, printed.lines, error)
        else:
            _PRELOADED["ort"] = _record("nothing", before, needs, [])
            _PRELOADED["ort"]["summary"] = (
                f"onnxruntime {getattr(rt, '__version__', '?')} has no preload_dlls (needs >= 1.21): system CUDA libraries only"
            )
    if tensorrt and "tensorrt" not in _PRELOADED:
        before, error = loaded_libraries(), None
        with captured_stdout() as printed:
            try:
                import tensorrt as trt  # noqa: F401 - importing it loads libnvinfer for the TensorRT provider
            except Exception as exc:  # noqa: BLE001
                error = f"{type(exc).__name__}: {exc} (system libnvinfer only)"
        _PRELOADED["tensorrt"] = _record("import tensorrt", before, [], printed.lines, error)
    return dict(_PRELOADED)
